"""Progress while the crawl runs, one readable summary at the end, and the exit status."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from scrapy import signals as scrapy_signals
from scrapy.utils.asyncio import create_looping_call

from rednote_crawl import report, signals
from rednote_crawl.distributed.shared import REDIS_ERRORS, SharedCrawl, shared_crawl
from rednote_crawl.middlewares import PAGE_META, query_of
from rednote_crawl.middlewares.policy import UNEXPECTED
from rednote_crawl.middlewares.resume import job_state
from rednote_crawl.middlewares.throttle import BUDGET_SPENT
from rednote_crawl.outcome import LOSS_STATS, exit_status
from rednote_crawl.report import KeywordRow

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

RESUME_HINTS = {
    "justoneapi_invalid_token": "fix JUSTONEAPI_TOKEN (scrapy probe checks it), then run the same command again",
    "justoneapi_permission_denied": "ask the vendor to enable note search v2 for the token, then run the same command again",
    UNEXPECTED: "check JUSTONEAPI_BASE_URL (scrapy probe shows what it answers), then run the same command again",
    "shutdown": "run the same command again",
    "justoneapi_quota_exceeded": "the daily quota is used up: run the same command again tomorrow",
    "justoneapi_insufficient_balance": "top up the balance, then run the same command again",
    BUDGET_SPENT: "run the same command again (raise -s JUSTONEAPI_MAX_REQUESTS=N to go further in one run)",
}
DISTRIBUTED_HINTS = {  # what to fix before `scrapy redis resume`
    "justoneapi_invalid_token": "fix JUSTONEAPI_TOKEN on the workers (scrapy probe checks it)",
    "justoneapi_permission_denied": "ask the vendor to enable note search v2 for the token",
    UNEXPECTED: "check JUSTONEAPI_BASE_URL (scrapy probe shows what it answers)",
    "justoneapi_quota_exceeded": "wait for tomorrow's quota",
    "justoneapi_insufficient_balance": "top up the balance",
    BUDGET_SPENT: "give the workers a higher -s JUSTONEAPI_MAX_REQUESTS (the calls of all workers count)",
}
RESUMES = "it carries on where this run stopped (JUSTONEAPI_JOB_DIR={folder})"
NO_RESUME = "without -s JUSTONEAPI_JOB_DIR=DIR, a new run asks for every page again"


class CrawlSummary:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.interval = crawler.settings.getfloat("LOGSTATS_INTERVAL")
        self.rejected: list[str] = []
        self.failed: list[tuple[str, int, str]] = []  # (query, page, reason)
        self.started = time.monotonic()
        self.task: Any = None
        crawler.signals.connect(self.spider_opened, signal=scrapy_signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=scrapy_signals.spider_closed)
        crawler.signals.connect(self.engine_stopped, signal=scrapy_signals.engine_stopped)
        crawler.signals.connect(self.query_rejected, signal=signals.query_rejected)
        crawler.signals.connect(self.page_failed, signal=signals.page_failed)
        crawler.signals.connect(self.page_paid, signal=signals.page_paid)
        crawler.signals.connect(self.item_scraped, signal=scrapy_signals.item_scraped)
        crawler.signals.connect(self.item_dropped, signal=scrapy_signals.item_dropped)
        self.keywords: dict[str, KeywordRow] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlSummary:
        return cls(crawler)

    def spider_opened(self) -> None:
        self.started = time.monotonic()
        if self.interval:
            self.task = create_looping_call(self.log_progress)
            self.task.start(self.interval, now=False)

    def query_rejected(self, request: Request, message: str) -> None:
        query = query_of(request)
        self.rejected.append(
            f"{query.describe() if query else request.url} page {request.meta.get(PAGE_META)}: {message}"
        )

    def page_failed(self, request: Request, reason: str) -> None:
        query = query_of(request)
        self.failed.append((query.describe() if query else request.url, request.meta.get(PAGE_META, 0), reason))
        if query is not None:
            self._row(query.keyword).failed += 1

    def page_paid(self, request: Request) -> None:
        if (query := query_of(request)) is not None:
            self._row(query.keyword).pages += 1

    def item_scraped(self, item: Any) -> None:
        row = self._row(item["keyword"])
        row.new += 1
        row.found.add(item["note_id"])

    def item_dropped(self, item: Any) -> None:
        self._row(item["keyword"]).found.add(item["note_id"])

    def _row(self, keyword: str) -> KeywordRow:
        row = self.keywords.get(keyword)
        if row is None:
            row = self.keywords[keyword] = KeywordRow(keyword)
        return row

    def _get(self, key: str) -> Any:
        return self.stats.get_value(f"justoneapi/{key}", 0)

    def _queries_done(self) -> int:
        return sum(v for k, v in self.stats.get_stats().items() if k.startswith("justoneapi/queries/finished/"))

    def log_progress(self) -> None:
        logger.info(
            "Progress: %d of %d queries done, %d pages read, %d unique notes, %d retries, %d rate-limited",
            self._queries_done(),
            self._get("queries/total"),
            self._get("pages/read"),
            self._get("notes/unique"),
            self._get("retry/count"),
            self._get("ratelimit/retries"),
        )

    def spider_closed(self, reason: str) -> None:
        if self.task is not None and self.task.running:
            self.task.stop()
        self.reason = reason

    def engine_stopped(self) -> None:
        """The last word of the log: the feeds are stored by now, so their failures count too."""
        reason = getattr(self, "reason", None)
        if reason is None:
            return  # the crawl never opened
        logger.info("%s", self.render(reason))
        if self.keywords:
            calls = self._get("requests/sent")
            logger.info("%s", report.render("Report of this run, per keyword:", self.keywords.values(), calls))

    def render(self, reason: str) -> str:
        stats = self.stats.get_stats()
        elapsed = int(time.monotonic() - self.started)
        answers = {k.rsplit("/", 1)[1]: v for k, v in stats.items() if k.startswith("justoneapi/answers/")}
        rate_limited = sum(v for k, v in answers.items() if k == "code_302" or k.startswith("http_429"))
        skipped = sum(v for k, v in stats.items() if k.startswith("justoneapi/items/skipped/"))
        total, done = self._get("queries/total"), self._queries_done()
        incomplete = len({query for query, _, _ in self.failed})
        unfinished = total - done - len(self.rejected) - incomplete
        shared = shared_crawl(self.crawler)
        if shared is not None:  # a worker sees its own part; the crawl's totals are in Redis
            queries = (
                f"  queries:  {done} finished by this worker, {len(self.rejected)} rejected, {incomplete} incomplete"
            )
            unfinished = 0
        else:
            queries = f"  queries:  {done} of {total} done, {len(self.rejected)} rejected, {incomplete} incomplete"
        lines = [
            f"Summary of {self.crawler.spidercls.name}: {reason}, exit status {exit_status(reason, stats)}, "
            f"{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}",
            queries
            + (f", {unfinished} not finished (the crawl stopped)" if unfinished > 0 else "")
            + (
                f"; {capped} stopped at max_pages (more results may exist: raise -a max_pages)"
                if (capped := self._get("queries/finished/max_pages"))
                else ""
            ),
            f"  pages:    {self._get('pages/read')} read, {self._get('pages/failed')} failed; "
            f"{plural(self._get('requests/sent'), 'call')} sent",
            f"  notes:    {self._get('notes/unique')} unique, {self._get('notes/duplicate')} repeated ones dropped, "
            f"{plural(skipped, 'non-note item')} skipped",
            "  answers:  " + (" ".join(f"{k}={v}" for k, v in sorted(answers.items())) or "none"),
            f"  retries:  {self._get('retry/count')}, {self._get('retry/backoff_seconds'):.1f} s of backoff; "
            f"{plural(rate_limited, 'rate-limit answer')}; "
            f"held by the token's rate limit for {self._get('ratelimit/held_seconds'):.1f} s",
        ]
        if self.rejected:
            lines.append("  rejected queries (code 400, not retried):")
            lines += [f"    {line}" for line in self.rejected]
        if self.failed:
            lines.append("  failed pages:")
            lines += [f"    {query} page {page}: {why}" for query, page, why in self.failed]
        losses = {k: v for k, v in stats.items() if k.startswith(LOSS_STATS)}
        if losses:
            lost = " ".join(f"{k}={v}" for k, v in sorted(losses.items()))
            lines.append(f"  lost:     {lost} (notes may be missing: see the errors above)")
        if shared is not None:
            lines.append(_crawl_wide(shared, reason))
        elif reason in RESUME_HINTS or self.failed or unfinished > 0 or losses:
            state = job_state(self.crawler)
            how = RESUMES.format(folder=state.folder) if state else NO_RESUME
            lines.append(f"  next: {RESUME_HINTS.get(reason, 'run the same command again')}; {how}")
        return "\n".join(lines)


def _crawl_wide(shared: SharedCrawl, reason: str) -> str:
    try:
        status = shared.status()
    except REDIS_ERRORS:
        return "  crawl:    Redis is unreachable; `scrapy redis status` shows the crawl once it is back"
    line = (
        f"  crawl:    {status['queued']} requests queued, {status['in_flight']} in flight (all workers); "
        f"{status['items']} notes waiting in {shared.keys.items}"
        + (" (scrapy redis drain FILE)" if status["items"] else "")
    )
    if status["stop"] and reason in DISTRIBUTED_HINTS:
        hint = DISTRIBUTED_HINTS[reason]
        line += f"\n  next: {hint}, run `scrapy redis resume`, then start the workers again"
    elif status["queued"] or status["in_flight"]:
        line += "\n  next: the crawl goes on in Redis: start workers (scrapy redis status shows it)"
    return line


def plural(count: int, noun: str) -> str:
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"
