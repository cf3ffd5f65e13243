"""Monitors at the end of every run, and the notification that tells someone when it went wrong.

A run ends with an exit status (``stops.exit_status``) that is known only once the feeds are
stored (``engine_stopped``): the monitors run then, before the summary, on one machine and on each
worker of a distributed crawl; and once for the whole distributed crawl, by the one worker that saw
it end and claimed its verdict in Redis (``Standing.crawl_ended``: ``RunFigures.for_crawl``). Each monitor is a pure function of the run's figures
(``RunFigures``, from the stats) or of the job's history (``CrawlState.history``: per crawl, per
keyword), and gives a ``Check``: passed, failed, or skipped (with why). Both are plain data
(``to_dict``), so a JSON report can carry them as they are; the words are ``render_*``'s.

Thresholds are the ``JUSTONEAPI_MONITOR_*`` settings (``config.Thresholds``); notifications go to
``JUSTONEAPI_NOTIFY`` (Apprise URLs, ``run/notify.py``): on a failed run by default
(``JUSTONEAPI_NOTIFY_ON=failure``: an exit status other than 0, or a monitor that failed), or
after every run (``always``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from scrapy import signals as scrapy_signals

from rednote_crawl import redaction, stops
from rednote_crawl.config import DEFAULTS, ApiConfig, ConfigError, notify_urls
from rednote_crawl.names import Stat
from rednote_crawl.run.notify import Notifier
from rednote_crawl.run.report import plural
from rednote_crawl.run.summary import next_steps
from rednote_crawl.search import stopping
from rednote_crawl.state import crawl_state

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from rednote_crawl.config import Thresholds
    from rednote_crawl.state import KeywordFigures, Standing

logger = logging.getLogger(__name__)

# The exit statuses that are not a stop of stops.py, in words (docs/reference.md, "Exit status").
EXIT_WORDS = {
    stops.EXIT_FINISHED: "finished",
    stops.EXIT_ERROR: "crashed, or was interrupted (Ctrl-C or a signal)",
    stops.EXIT_BAD_INPUT: "refused to start: bad input",
    stops.EXIT_INCOMPLETE: "finished, but some pages failed after every retry: notes may be missing",
}


def exit_words(reason: str, status: int) -> str:
    stop = stops.BY_REASON.get(reason)
    return stop.what if stop is not None and stop.exit_status == status else EXIT_WORDS.get(status, reason)


@dataclass(frozen=True, slots=True)
class RunFigures:
    """What a run did, as data: the monitors read it, the notification says it."""

    spider: str
    reason: str  # the finish reason
    exit_status: int
    seconds: int | None  # None: not known (the whole distributed crawl)
    calls: int
    pages_read: int
    pages_failed: int
    new_notes: int
    rate_limited: int | None  # answers 302 and HTTP 429 (None: not counted crawl-wide)
    invalid_items: int | None = None  # None: no schema validation ran (Stat.ITEMS_INVALID)
    host: str = ""
    job_folder: str | None = None
    items_key: str | None = None  # a distributed crawl: where its notes wait
    outputs: tuple[str, ...] = ()
    whole_crawl: bool = False  # the figures of a whole distributed crawl, every worker's together

    @classmethod
    def from_stats(
        cls, spider: str, reason: str, stats: Mapping[str, Any], seconds: float, standing: Standing, outputs: Sequence[str]
    ) -> RunFigures:
        answers = {k.removeprefix(Stat.ANSWERS): v for k, v in stats.items() if k.startswith(Stat.ANSWERS)}
        return cls(
            spider=spider,
            reason=reason,
            exit_status=stops.exit_status(reason, stats),
            seconds=int(seconds),
            calls=stats.get(Stat.REQUESTS_SENT, 0),
            pages_read=stats.get(Stat.PAGES_READ, 0),
            pages_failed=stats.get(Stat.PAGES_FAILED, 0),
            new_notes=stats.get(Stat.NOTES_NEW, 0),
            rate_limited=sum(v for k, v in answers.items() if k == "code_302" or k.startswith("http_429")),
            invalid_items=stats.get(Stat.ITEMS_INVALID),
            host=socket.gethostname(),
            job_folder=standing.job_folder,
            items_key=standing.items_key if standing.shared is not None else None,
            outputs=tuple(outputs),
        )

    @classmethod
    def for_crawl(cls, spider: str, ended: Mapping[str, Any], standing: Standing) -> RunFigures:
        """The whole distributed crawl, from the counters Redis keeps (``Standing.crawl_ended``): its
        exit status is its stop's, else finished (3 when pages failed). Each worker counts its own
        rate-limit answers and invalid notes: its own message says them."""
        stop = ended.get("stop") or {}
        reason = str(stop.get("reason") or stops.FINISHED)
        failed = int(ended.get("pages_failed", 0))
        return cls(
            spider=spider,
            reason=reason,
            exit_status=stops.exit_status(reason, {Stat.PAGES_FAILED: failed}),
            seconds=None,
            calls=int(ended.get("calls", 0)),
            pages_read=int(ended.get("pages_paid", 0)),
            pages_failed=failed,
            new_notes=int(ended.get("notes", 0)),
            rate_limited=None,
            host=socket.gethostname(),
            items_key=standing.items_key,
            whole_crawl=True,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Check:
    """One monitor's verdict: ``ok`` True (passed), False (failed) or None (skipped: ``text`` says why)."""

    name: str
    ok: bool | None
    text: str
    value: float | int | None = None
    limit: float | int | None = None
    keywords: list[str] = field(default_factory=list)  # the keywords it names, if any

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": {True: "passed", False: "failed", None: "skipped"}[self.ok]}


# --- the monitors: pure functions -------------------------------------------------------------


def exit_status(run: RunFigures) -> Check:
    ok = run.exit_status == stops.EXIT_FINISHED
    return Check("exit_status", ok, f"exit status {run.exit_status}: {exit_words(run.reason, run.exit_status)}", run.exit_status, 0)


def failed_pages(run: RunFigures, limits: Thresholds) -> Check:
    ok = run.pages_failed <= limits.failed_pages
    text = f"{plural(run.pages_failed, 'failed page')} (at most {limits.failed_pages}: JUSTONEAPI_MONITOR_FAILED_PAGES)"
    return Check("failed_pages", ok, text, run.pages_failed, limits.failed_pages)


def rate_limited(run: RunFigures, limits: Thresholds) -> Check:
    if run.rate_limited is None:
        return Check("rate_limited", None, "counted by each worker (its own message says it)", None, limits.rate_limited)
    if not run.calls:
        return Check("rate_limited", None, "no calls were sent", None, limits.rate_limited)
    share = run.rate_limited / run.calls
    text = (
        f"{share:.1%} of the calls were answered 302 or HTTP 429 ({run.rate_limited} of {run.calls}; at most "
        f"{limits.rate_limited:.1%}: JUSTONEAPI_MONITOR_RATE_LIMITED)"
    )
    return Check("rate_limited", share <= limits.rate_limited, text, round(share, 4), limits.rate_limited)


def _cost(crawl: Sequence[KeywordFigures]) -> float | None:
    """Calls per new note of one crawl (inf: calls and no new note; None: no calls known)."""
    calls = sum(k.calls or 0 for k in crawl)
    new = sum(k.new for k in crawl)
    if not calls:
        return None
    return calls / new if new else float("inf")


def cost_per_new_note(history: Sequence[Sequence[KeywordFigures]], limits: Thresholds) -> Check:
    """This crawl's calls per new note against the median of the job's earlier crawls."""
    name = "calls_per_new_note"
    if not limits.cost_factor:
        return Check(name, None, "off (JUSTONEAPI_MONITOR_COST_FACTOR=0)")
    earlier = [c for c in (_cost(crawl) for crawl in history[:-1]) if c is not None and c != float("inf")]
    now = _cost(history[-1]) if history else None
    if now is None or len(earlier) < 2:
        return Check(name, None, "fewer than 2 earlier crawls of the job with new notes to compare with")
    usual = statistics.median(earlier)
    limit = usual * limits.cost_factor
    shown = "no new note" if now == float("inf") else f"{now:.1f} calls per new note"
    text = (
        f"{shown} against {usual:.1f} usually (the median of {plural(len(earlier), 'earlier crawl')}; at most "
        f"{limits.cost_factor:g} times that: JUSTONEAPI_MONITOR_COST_FACTOR)"
    )
    return Check(name, now <= limit, text, None if now == float("inf") else round(now, 2), round(limit, 2))


def silent_keywords(history: Sequence[Sequence[KeywordFigures]], limits: Thresholds) -> Check:
    """Keywords without a new note in this crawl after ``silent_after`` crawls in a row with some."""
    name = "silent_keywords"
    n = limits.silent_after
    if not n:
        return Check(name, None, "off (JUSTONEAPI_MONITOR_SILENT_AFTER=0)")
    if len(history) < n + 1:
        return Check(name, None, f"the job has fewer than {n + 1} crawls")
    before = [{k.keyword: k.new for k in crawl} for crawl in history[-n - 1 : -1]]
    silent = [
        k.keyword for k in history[-1] if k.new == 0 and all(crawl.get(k.keyword, 0) > 0 for crawl in before)
    ]
    if not silent:
        return Check(name, True, f"every keyword with new notes in the last {plural(n, 'crawl')} still has some", 0, n)
    text = (
        f"no new note for {', '.join(silent)} after {plural(n, 'crawl')} with some "
        "(a changed name, a blocked word, a typo in the keyword file?): JUSTONEAPI_MONITOR_SILENT_AFTER"
    )
    return Check(name, False, text, len(silent), n, silent)


def invalid_items(run: RunFigures) -> Check:
    """Notes that do not match the output's JSON Schema (counted by ``items/validate.py``)."""
    if run.invalid_items is None:
        if run.whole_crawl:
            return Check("invalid_items", None, "counted by each worker (its own message says it)")
        return Check("invalid_items", None, "no schema validation ran (NoteSchemaPipeline is off)")
    ok = run.invalid_items == 0
    text = f"{plural(run.invalid_items, 'note')} did not match the output's schema (the log names the first)"
    return Check("invalid_items", ok, text, run.invalid_items, 0)


def run_monitors(run: RunFigures, history: Sequence[Sequence[KeywordFigures]], limits: Thresholds) -> list[Check]:
    """Every monitor, in the order the log and the message list them. The history monitors judge a
    complete crawl only (a run that stopped early has keywords it never reached)."""
    checks = [exit_status(run), failed_pages(run, limits), rate_limited(run, limits)]
    if run.exit_status == stops.EXIT_FINISHED and not history:
        why = "no history: " + (
            "a worker judges its own part; the worker that sees the crawl end judges the crawl's history"
            if run.items_key and not run.whole_crawl
            else "this is the first crawl on this Redis"
            if run.items_key
            else "the run has no job folder (JUSTONEAPI_JOB_DIR)"
        )
        checks += [Check("calls_per_new_note", None, why), Check("silent_keywords", None, why)]
    else:
        checks += history_checks(history, run.exit_status == stops.EXIT_FINISHED, limits)
    checks.append(invalid_items(run))
    return checks


def history_checks(history: Sequence[Sequence[KeywordFigures]], complete: bool, limits: Thresholds) -> list[Check]:
    """The monitors on the job's history, the crawl judged last in ``history``: at the end of a run,
    and in ``scrapy report DIR --json`` for the crawl it reports. A crawl that is not complete is not
    judged (it has keywords it never reached)."""
    if not complete:
        why = "the crawl is not complete"
        return [Check("calls_per_new_note", None, why), Check("silent_keywords", None, why)]
    return [cost_per_new_note(history, limits), silent_keywords(history, limits)]


# --- words ------------------------------------------------------------------------------------


def render_checks(checks: Sequence[Check]) -> str:
    failed = [c for c in checks if c.ok is False]
    passed = sum(1 for c in checks if c.ok)
    skipped = sum(1 for c in checks if c.ok is None)
    head = f"Monitors: {passed} passed, {len(failed)} failed, {skipped} skipped"
    return "\n".join([head, *(f"  failed: {c.name}: {c.text}" for c in failed)])


def _clock(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def render_message(run: RunFigures, checks: Sequence[Check], steps: Sequence[str]) -> tuple[str, str]:
    """The notification: (title, body). What a person needs to act, and nothing secret."""
    failed = [c for c in checks if c.ok is False]
    verdict = "OK" if not failed else "FAILED"
    if run.whole_crawl:
        title = f"rednote_crawl {run.spider}, the whole distributed crawl: {verdict}, exit status {run.exit_status}"
        crawl = (
            f"Crawl: the whole distributed crawl {run.spider}, every worker together (judged by the worker "
            f"on {run.host} that saw it end), notes in {run.items_key}"
        )
    else:
        title = f"rednote_crawl {run.spider} on {run.host}: {verdict}, exit status {run.exit_status}"
        where = (
            f"job folder {run.job_folder}"
            if run.job_folder
            else f"distributed crawl (notes in {run.items_key})"
            if run.items_key
            else "no job folder"
        )
        crawl = f"Crawl: {run.spider} on {run.host}, {where}"
    figures = f"New notes: {run.new_notes} · calls: {run.calls} · pages: {run.pages_read} read, {run.pages_failed} failed"
    if run.rate_limited is not None:
        figures += f" · rate-limit answers: {run.rate_limited}"
    if run.seconds is not None:
        figures += f" · time: {_clock(run.seconds)}"
    lines = [
        crawl,
        f"Exit status {run.exit_status}: {exit_words(run.reason, run.exit_status)} (finish reason {run.reason})",
        figures,
    ]
    if failed:
        lines.append("Failed monitors:")
        lines += [f"  - {c.name}: {c.text}" for c in failed]
    lines += [step.strip() for step in steps]
    if run.job_folder:
        lines.append(f"Report: scrapy report {run.job_folder} --days 30")
    if run.outputs:
        lines.append(f"Notes: {', '.join(run.outputs)}")
    if run.items_key:
        lines.append("Status: scrapy redis status")
    return title, "\n".join(lines)


def render_refusal(spider: str, host: str, error: str) -> tuple[str, str]:
    """The notification of a run refused at start-up (exit status 2): nothing was sent."""
    title = f"rednote_crawl {spider} on {host}: FAILED, exit status {stops.EXIT_BAD_INPUT}"
    body = (
        f"Crawl: {spider} on {host}\n"
        f"Exit status {stops.EXIT_BAD_INPUT}: {EXIT_WORDS[stops.EXIT_BAD_INPUT]}; no call was sent\n"
        f"Cannot start: {error}"
    )
    return title, body


def notify_refusal(settings: Any, spider: str, error: str) -> None:
    """A run that could not start tells ``JUSTONEAPI_NOTIFY`` too (a daily job's keyword file gone, a job
    folder still held by yesterday's run); after the reactor, in a thread, ``JUSTONEAPI_NOTIFY_TIMEOUT`` at most."""
    try:
        config = ApiConfig.from_settings(settings, require_token=False)
    except ConfigError:
        try:
            urls, timeout = notify_urls(settings), float(DEFAULTS["JUSTONEAPI_NOTIFY_TIMEOUT"])
        except ConfigError:
            return  # the notification settings are the bad input: the error said so
    else:
        urls, timeout = config.notify, config.notify_timeout
    if not urls:
        return
    for url in urls:
        redaction.install_url(url)
    title, body = render_refusal(spider, socket.gethostname(), error)
    asyncio.run(Notifier(urls, timeout).send(title, body))


def render_crawl_line(run: RunFigures, checks: Sequence[Check]) -> str:
    """The log's one line on the whole distributed crawl, by the worker that judged it."""
    failed = [c for c in checks if c.ok is False]
    line = (
        f"The whole crawl: exit status {run.exit_status}, {exit_words(run.reason, run.exit_status)}; "
        f"{plural(run.new_notes, 'new note')}, {plural(run.calls, 'call')}, {run.pages_read} pages paid, "
        f"{run.pages_failed} failed (every worker together; this worker saw it end)"
    )
    return line + ("; failed monitors: " + ", ".join(c.name for c in failed) if failed else "")


def should_notify(on: str, checks: Sequence[Check]) -> bool:
    return on == "always" or any(c.ok is False for c in checks)


# --- the extension ----------------------------------------------------------------------------


class CrawlMonitors:
    """Runs the monitors once the run has ended in the state, and sends the notification. Its order
    (400) puts its ``engine_stopped`` after the start-up's (which records the run's end) and before
    the summary's: the summary and the report stay the log's last word."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.state = crawl_state(crawler)
        config = self.state.config
        self.thresholds = config.thresholds
        for url in config.notify:
            redaction.install_url(url)
        self.notifier = Notifier(config.notify, config.notify_timeout)
        self.notify_on = config.notify_on
        self.reason: str | None = None
        self.started = time.monotonic()
        self.checks: list[Check] = []
        self.figures: RunFigures | None = None
        self.crawl_checks: list[Check] = []  # the whole distributed crawl's, on the worker that judged it
        self.crawl_figures: RunFigures | None = None
        crawler.signals.connect(self.spider_opened, signal=scrapy_signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=scrapy_signals.spider_closed)
        crawler.signals.connect(self.engine_stopped, signal=scrapy_signals.engine_stopped)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlMonitors:
        return cls(crawler)

    def spider_opened(self) -> None:
        self.started = time.monotonic()

    def spider_closed(self, reason: str) -> None:
        self.reason = reason

    async def engine_stopped(self) -> None:
        if self.reason is None:
            return  # the crawl never opened
        stats = self.crawler.stats.get_stats()
        reason = str(stats.get("finish_reason") or self.reason)  # the end of the run may change it (exit 8)
        standing = self.state.standing()
        outputs = [str(uri) for uri in self.crawler.settings.getdict("FEEDS")]
        name = self.crawler.spidercls.name
        run = RunFigures.from_stats(name, reason, stats, time.monotonic() - self.started, standing, outputs)
        # A worker of a shared crawl judges its own part: the crawl's history is the whole crawl's verdict's.
        judged_whole = standing.shared is None and run.exit_status == stops.EXIT_FINISHED
        history = self.state.history(self.thresholds.history + 1) if judged_whole else []
        self.figures, self.checks = run, run_monitors(run, history, self.thresholds)
        failed = any(c.ok is False for c in self.checks)
        # The summary has said the rest: the log names the monitors only when one failed.
        logger.log(logging.WARNING if failed else logging.DEBUG, "%s", render_checks(self.checks))
        if self.notifier.urls and should_notify(self.notify_on, self.checks):
            event = stopping(self.crawler).event
            steps = next_steps(
                standing, reason, unfinished=run.exit_status != stops.EXIT_FINISHED, message=event.message if event else ""
            )
            title, body = render_message(run, self.checks, steps)
            await self.notifier.send(title, body, failure=failed)
        if standing.crawl_ended is not None:
            await self.judge_crawl(standing, standing.crawl_ended)

    async def judge_crawl(self, standing: Standing, ended: Mapping[str, Any]) -> None:
        """The whole distributed crawl, once: this worker saw it end and claimed its verdict in Redis."""
        crawl = RunFigures.for_crawl(self.crawler.spidercls.name, ended, standing)
        history = self.state.history(self.thresholds.history + 1) if crawl.exit_status == stops.EXIT_FINISHED else []
        self.crawl_figures, self.crawl_checks = crawl, run_monitors(crawl, history, self.thresholds)
        failed = any(c.ok is False for c in self.crawl_checks)
        logger.log(logging.WARNING if failed else logging.INFO, "%s", render_crawl_line(crawl, self.crawl_checks))
        if self.notifier.urls and should_notify(self.notify_on, self.crawl_checks):
            stop = ended.get("stop") or {}
            unfinished = crawl.exit_status != stops.EXIT_FINISHED
            steps = next_steps(standing, crawl.reason, unfinished=unfinished, message=str(stop.get("message") or ""))
            title, body = render_message(crawl, self.crawl_checks, steps)
            await self.notifier.send(title, body, failure=failed)
