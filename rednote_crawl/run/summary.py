"""Progress while the crawl runs, one readable summary at the end, and the exit status.

On a terminal, a live progress line (rewritten in place every second); in a log file, a progress
line every ``LOGSTATS_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from scrapy import signals as scrapy_signals
from scrapy.utils.asyncio import create_looping_call

from rednote_crawl import signals, stops
from rednote_crawl.names import Stat
from rednote_crawl.run import report
from rednote_crawl.run.report import KeywordRow, plural
from rednote_crawl.search import DetailCall, call_of, calls_made, search_call_of, stopping
from rednote_crawl.state import Standing, crawl_state

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

LIVE_EVERY = 1.0  # seconds


def live_stream(settings: Any, stream: IO[str] | None = None) -> IO[str] | None:
    """Where the live progress line goes: stderr when it is a terminal the log is written to."""
    stream = stream if stream is not None else sys.stderr
    if settings.get("LOG_FILE") or not settings.getbool("LOG_ENABLED", True):
        return None
    return stream if stream.isatty() else None


def render_progress(done: int, total: int, pages: int, new: int, calls_per_s: float, elapsed: float) -> str:
    """``12/21 queries · 88 pages · 1204 new notes · 7.9 calls/s · about 0:00:13 left``"""
    # A distributed worker's own total is what it seeded (none, for a worker started without
    # keywords), while it finishes queries any worker seeded: then only what it did.
    known = total > 0 and done <= total
    parts = [f"{done}/{total} queries" if known else f"{done} queries done", f"{pages} pages", f"{new} new notes"]
    parts.append(f"{calls_per_s:.1f} calls/s")
    if known and 0 < done < total:
        left = int((total - done) * elapsed / done)
        parts.append(f"about {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left")
    return " · ".join(parts)


class CrawlSummary:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.state = crawl_state(crawler)
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
        self.live = live_stream(crawler.settings)
        self.log_file = bool(crawler.settings.get("LOG_FILE"))

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlSummary:
        return cls(crawler)

    def spider_opened(self) -> None:
        self.started = time.monotonic()
        self._answer_ctrl_c()
        if self.live is not None:
            self.task = create_looping_call(self.show_progress)
            self.task.start(LIVE_EVERY, now=False)
        elif self.interval:
            self.task = create_looping_call(self.log_progress)
            self.task.start(self.interval, now=False)

    def _answer_ctrl_c(self) -> None:
        """Answer the first Ctrl-C at once. Scrapy's handler stops the crawl after the calls in flight
        (up to JUSTONEAPI_TIMEOUT later) and says so only in a line of its own start-up's logger, which
        quiet.py leaves out: this one runs it, then says what happens, and its next press is Scrapy's
        (it drops the calls in flight). Only where Scrapy installed its handler (``scrapy crawl``)."""
        if threading.current_thread() is not threading.main_thread():
            return
        scrapys = signal.getsignal(signal.SIGINT)
        if not callable(scrapys) or scrapys is signal.default_int_handler:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no asyncio loop runs the crawl: Scrapy's handler stays as it is
            return

        def first_press(signum: int, frame: Any) -> None:
            scrapys(signum, frame)  # Scrapy stops gracefully, and installs its handler of a second press
            loop.call_soon_threadsafe(self.interrupted)

        signal.signal(signal.SIGINT, first_press)

    def interrupted(self) -> None:
        """The line a first Ctrl-C gets, on the terminal (and in the log)."""
        downloader = self.crawler.engine.downloader if self.crawler.engine else None
        calls = sum(len(slot.transferring) for slot in downloader.slots.values()) if downloader else 0
        line = interrupt_line(self.state.standing(), calls)
        if self.live is not None:
            self.live.write("\r\x1b[K")
            self.live.flush()
        logger.warning("%s", line)
        if self.log_file and sys.stderr.isatty():  # the log goes to a file: the terminal hears it too
            print(line, file=sys.stderr, flush=True)

    def show_progress(self) -> None:
        """The live line: rewritten in place, never logged."""
        assert self.live is not None
        self.live.write("\r\x1b[K" + self.progress_text())
        self.live.flush()

    def progress_text(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        done, total = self._queries_done(), self._get(Stat.QUERIES_TOTAL)
        calls = self._get(Stat.REQUESTS_SENT)
        return render_progress(done, total, self._get(Stat.PAGES_READ), self._get(Stat.NOTES_NEW), calls / elapsed, elapsed)

    def query_rejected(self, request: Request, message: str) -> None:
        call = call_of(request)
        self.rejected.append(f"{call.describe() if call else request.url}: {message}")
        self._charge(request)

    def page_failed(self, request: Request, reason: str) -> None:
        if isinstance(call_of(request), DetailCall):
            return  # counted apart (Stat.DETAILS_FAILED): the note went out all the same
        call = search_call_of(request)
        self.failed.append((call.query.describe() if call else request.url, call.page if call else 0, reason))
        if (row := self._charge(request)) is not None:
            row.failed += 1

    def page_paid(self, request: Request) -> None:
        if (row := self._charge(request)) is not None:
            row.pages += 1

    def _charge(self, request: Request) -> KeywordRow | None:
        """The keyword's row, charged with the calls the request took (None: not a search call)."""
        if (call := search_call_of(request)) is None:
            return None
        row = self._row(call.query.keyword)
        row.calls += calls_made(request)
        return row

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
        return self.stats.get_value(key, 0)

    def _queries_done(self) -> int:
        return sum(v for k, v in self.stats.get_stats().items() if k.startswith(Stat.QUERIES_FINISHED))

    def log_progress(self) -> None:
        """The periodic line of a log that is not a terminal: the live line's figures, and the retries."""
        logger.info(
            "Progress: %s · %s · %s",
            self.progress_text(),
            plural(self._get(Stat.RETRY_COUNT), "retry"),
            plural(self._get(Stat.RATE_LIMIT_RETRIES), "rate-limited try"),
        )

    def _held_text(self) -> str:
        """Which limit held the calls back: the token's (found by the crawl) or the ceiling, JUSTONEAPI_MAX_RPS."""
        token, ceiling = self._get(Stat.RATE_HELD_SECONDS), self._get(Stat.RATE_HELD_BY_CEILING_SECONDS)
        if ceiling < 0.05:
            return f"held by the token's rate limit for {token:.1f} s"
        text = f"held by the JUSTONEAPI_MAX_RPS ceiling ({self.state.config.max_rps:g} calls/s) for {ceiling:.1f} s"
        return text + (f", by the token's rate limit for {token:.1f} s" if token >= 0.05 else "")

    def _notes_line(self, stats: dict[str, Any]) -> str:
        """Where every note the API returned went (and the notes a resumed run put back)."""
        without_id = self._get(Stat.NOTES_WITHOUT_ID)
        others = sum(
            v for k, v in stats.items() if k.startswith(Stat.ITEMS_SKIPPED) and k != Stat.NOTES_WITHOUT_ID
        )
        replayed = self._get(Stat.RESUME_ITEMS_REPLAYED)
        parts = [
            f"{self._get(Stat.NOTES_NEW)} new",
            f"{self._get(Stat.NOTES_EARLIER)} found by an earlier crawl",
            f"{self._get(Stat.NOTES_WRITTEN)} already written by an earlier run",
            f"{self._get(Stat.NOTES_REPEATED)} repeated in this crawl",
            f"{self._get(Stat.NOTES_OLDER)} older than since",
            f"{without_id} without an id",
        ]
        total = self._get(Stat.NOTES_SEEN) + without_id
        line = f"  notes:    {total} from the API"
        line += f" and {replayed} put back from the job folder: " if replayed else ": "
        return line + ", ".join(parts) + f"; {plural(others, 'non-note item')} skipped"

    def spider_closed(self, reason: str) -> None:
        if self.task is not None and self.task.running:
            self.task.stop()
        if self.live is not None:
            self.live.write("\r\x1b[K")  # the summary follows
            self.live.flush()
        self.reason = reason

    def engine_stopped(self) -> None:
        """The last word of the log: the feeds are stored by now, so their failures count too."""
        reason = getattr(self, "reason", None)
        if reason is None:
            return  # the crawl never opened
        logger.info("%s", self.render(reason))
        figures = self.state.crawl_figures()  # with a job folder: the whole crawl, as `scrapy report` says it
        if figures is not None and figures.keywords:
            logger.info("%s", report.render_crawl(figures, this_run=True))
        elif self.keywords:
            calls = self._get(Stat.REQUESTS_SENT)
            logger.info("%s", report.render_rows("Report of this run, per keyword:", self.keywords.values(), calls))

    def _details_lines(self) -> list[str]:
        """The note detail calls (-a details=), counted apart from the search pages; calls per new
        note count both kinds."""
        if not any(key.startswith(Stat.DETAILS) for key in self.stats.get_stats()):
            return []
        sent, calls, new = self._get(Stat.DETAIL_REQUESTS_SENT), self._get(Stat.REQUESTS_SENT), self._get(Stat.NOTES_NEW)
        per_note = f"{calls / new:.2f} calls per new note, both kinds" if new else "no new note"
        return [
            f"  details:  {plural(sent, 'detail call')} of the {plural(calls, 'call')} sent "
            f"({calls - sent} for search pages); {self._get(Stat.DETAILS_FETCHED)} fetched, "
            f"{self._get(Stat.DETAILS_REUSED)} paid by an earlier run, {self._get(Stat.DETAILS_FAILED)} failed, "
            f"{self._get(Stat.DETAILS_NOTE_GONE)} notes gone, {self._get(Stat.DETAILS_NOT_ASKED)} not asked, "
            f"{self._get(Stat.DETAILS_HELD)} held for the next run; {per_note}"
        ]

    def render(self, reason: str) -> str:
        stats = self.stats.get_stats()
        elapsed = int(time.monotonic() - self.started)
        answers = {k.rsplit("/", 1)[1]: v for k, v in stats.items() if k.startswith(Stat.ANSWERS)}
        rate_limited = sum(v for k, v in answers.items() if k == "code_302" or k.startswith("http_429"))
        total, done = self._get(Stat.QUERIES_TOTAL), self._queries_done()
        incomplete = len({query for query, _, _ in self.failed})
        unfinished = total - done - len(self.rejected) - incomplete
        standing = self.state.standing()
        if standing.shared is None:
            queries = f"  queries:  {done} of {total} done, {len(self.rejected)} rejected, {incomplete} incomplete"
        else:  # a worker sees its own part; the crawl's totals are in Redis
            queries = (
                f"  queries:  {done} finished by this worker, {len(self.rejected)} rejected, {incomplete} incomplete"
            )
            unfinished = 0
        lines = [
            f"Summary of {self.crawler.spidercls.name}: {reason}, exit status {stops.exit_status(reason, stats)}, "
            f"{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}",
            queries
            + (f", {unfinished} not finished (the crawl stopped)" if unfinished > 0 else "")
            + (
                f"; {capped} stopped at max_pages (more results may exist: raise -a max_pages)"
                if (capped := self._get(Stat.QUERIES_AT_MAX_PAGES))
                else ""
            ),
            f"  pages:    {self._get(Stat.PAGES_READ)} read, {self._get(Stat.PAGES_FAILED)} failed; "
            f"{plural(self._get(Stat.REQUESTS_SENT), 'call')} sent"
            + (f" ({n} more never reached the API)" if (n := self._get(Stat.REQUESTS_NOT_DELIVERED)) else ""),
            self._notes_line(stats),
            *self._details_lines(),
            "  answers:  " + (" ".join(f"{k}={v}" for k, v in sorted(answers.items())) or "none"),
            f"  retries:  {self._get(Stat.RETRY_COUNT)}, {self._get(Stat.BACKOFF_SECONDS):.1f} s of backoff; "
            f"{plural(rate_limited, 'rate-limit answer')}; " + self._held_text(),
        ]
        if (limit := self.state.account.rate.limit) is not None:
            learned = self._get(Stat.RATE_LIMIT)
            lines.append(
                f"  rate:     the token's limit is about {limit:.2f} calls/s "
                + ("(measured in this run; kept for the next crawl)" if learned else "(learned by an earlier crawl)")
            )
        if self.rejected:
            lines.append("  rejected queries (code 400, not retried):")
            lines += [f"    {line}" for line in self.rejected]
        if self.failed:
            lines.append("  failed pages:")
            lines += [f"    {query} page {page}: {why}" for query, page, why in self.failed]
        losses = {k: v for k, v in stats.items() if k.startswith(stops.LOSS_STATS)}
        if losses:
            lost = " ".join(f"{k}={v}" for k, v in sorted(losses.items()))
            lines.append(f"  lost:     {lost} (notes may be missing: see the errors above)")
        event = stopping(self.crawler).event
        lines += next_steps(
            standing, reason, unfinished=bool(self.failed or unfinished > 0 or losses), message=event.message if event else ""
        )
        return "\n".join(lines)


RESUMES = "it carries on where this run stopped (JUSTONEAPI_JOB_DIR={folder})"
NO_RESUME = "without -s JUSTONEAPI_JOB_DIR=DIR, a new run asks for every page again"


def interrupt_line(standing: Standing, calls: int) -> str:
    """What a first Ctrl-C does: what is in flight, what a second press does, how to carry on."""
    line = (
        f"Ctrl-C: stopping after the {plural(calls, 'call')} in flight (their notes are kept); "
        "press Ctrl-C again to stop at once and drop them. "
    )
    if standing.shared is not None:
        return line + "The requests not sent go back to the shared queue: the same command carries the crawl on"
    if standing.job_folder:
        return line + f"Run the same command again to carry on (JUSTONEAPI_JOB_DIR={standing.job_folder})"
    return line + "Run the same command again to start over (with -s JUSTONEAPI_JOB_DIR=DIR it would carry on)"


def next_steps(standing: Standing, reason: str, unfinished: bool, message: str = "") -> list[str]:
    """The summary's last lines: where the crawl stands and what to do next (``message``: the stop's)."""
    stop = stops.BY_REASON.get(reason)
    if standing.shared is None:
        if stop is None and not unfinished:
            return []
        how = RESUMES.format(folder=standing.job_folder) if standing.job_folder else NO_RESUME
        fix = stop.fix if stop else "run the same command again"
        if stop is stops.STORAGE_FAILED and message:
            fix = stops.storage_fix(message)  # a lock, a permission, a damaged file, a full disk
        return [f"  next: {fix}; {how}"]
    figures = standing.shared
    if not figures:
        return ["  crawl:    Redis is unreachable; `scrapy redis status` shows the crawl once it is back"]
    lines = [
        f"  crawl:    {figures['queued']} requests queued, {figures['in_flight']} in flight (all workers); "
        f"{figures['items']} notes waiting in {standing.items_key}"
        + (" (scrapy redis drain FILE)" if figures["items"] else "")
    ]
    if stop is stops.REDIS_STATE_LOST:
        lines.append(f"  next: {stop.fix} (docs/distributed.md: Redis must persist)")
    elif figures.get("stopped") and stop is not None and stop.crawl_wide:
        lines.append(f"  next: {stop.fix_distributed}, run `scrapy redis resume`, then start the workers again")
    elif figures["queued"] or figures["in_flight"]:
        lines.append("  next: the crawl goes on in Redis: start workers (scrapy redis status shows it)")
    return lines
