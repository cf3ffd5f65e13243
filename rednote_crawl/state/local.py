"""The local home of the crawl's state: memory, plus the job folder when ``JUSTONEAPI_JOB_DIR`` is set."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rednote_crawl import api, stops
from rednote_crawl.config import ConfigError, local_path
from rednote_crawl.state import CrawlState, Sleep, Verdict
from rednote_crawl.state.jobfolder import (
    JobState,
    crawl_fingerprint,
    feed_offsets,
    local_feeds,
    note_ids,
    queries_fingerprint,
    query_key,
    repair_jsonl,
    sync_files,
)
from rednote_crawl.state.rate import AdaptiveRateLimiter

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

    from rednote_crawl.state.jobfolder import QueryState

logger = logging.getLogger(__name__)

DEFAULT_FEED_OPTIONS = {"format": "jsonlines", "encoding": "utf-8"}
# Where notes go when the command line names no file (-o/-O) and FEEDS is empty; with a job
# folder, JUSTONEAPI_JOB_DIR/crawl-NNNN.jsonl.
DEFAULT_FEEDS = {"output/%(name)s-%(time)s.jsonl": DEFAULT_FEED_OPTIONS}
RESUMES = "it carries on where this run stopped (JUSTONEAPI_JOB_DIR={folder})"
NO_RESUME = "without -s JUSTONEAPI_JOB_DIR=DIR, a new run asks for every page again"


class LocalState(CrawlState):
    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.rate = AdaptiveRateLimiter(self.config.max_rps)
        self.calls = 0
        self.job: JobState | None = None
        self.seen: set[str] = set()  # notes that went out in this crawl
        self.earlier: set[str] = set()  # notes earlier crawls of the job found (skipped)
        self.fingerprint = ""

    # --- start-up and the run ---------------------------------------------------------------

    def open(self, settings: BaseSettings) -> None:
        folder = self.config.job_dir
        if folder is None:
            if not settings.getdict("FEEDS"):
                settings.set("FEEDS", DEFAULT_FEEDS, priority="addon")
            return
        self.job = job = _take(folder)
        if not settings.getdict("FEEDS"):
            settings.set("FEEDS", {str(job.output): DEFAULT_FEED_OPTIONS}, priority="addon")
        self.fingerprint = queries_fingerprint(query_key(q) for q in self.crawler.spider.queries())
        if job.resuming:
            self._resume_feeds(settings, job)
        self.seen = set(job.exported)
        if self.config.seen_notes == "skip":
            self.earlier = job.history - self.seen

    def _resume_feeds(self, settings: BaseSettings, job: JobState) -> None:
        """Resume only the same crawl; append to its outputs (even with -O), mended first.

        The notes this crawl already wrote (from the offset where it began in each file) are
        not written again.
        """
        planned = crawl_fingerprint(job.crawl_record)
        if planned is not None and planned != self.fingerprint:
            raise ConfigError(
                f"the open crawl {job.crawl} in JUSTONEAPI_JOB_DIR={str(job.folder)!r} was started with other "
                "keywords or filters: run it again with the same arguments to finish it, or name another job folder"
            )
        offsets = job.crawl_record.get("outputs", {})
        feeds = {}
        readable = local_feeds(settings.getdict("FEEDS"))
        for uri, options in settings.getdict("FEEDS").items():
            path = local_path(str(uri))
            if path is not None and path in readable:
                job.exported |= note_ids(repair_jsonl(path, start=offsets.get(str(path), 0)))
            else:
                logger.warning(
                    "Feed %s is not one fixed local JSON Lines file: a resumed job cannot tell what it holds", uri
                )
            feeds[uri] = {**options, "overwrite": False}
        settings.set("FEEDS", feeds, priority="cmdline")
        logger.info("Resuming: %d notes this crawl already wrote are not written again", len(job.exported))

    def begin(self) -> None:
        job = self.job
        if job is None:
            return
        settings = self.crawler.settings
        record = {
            "queries_fingerprint": self.fingerprint,
            "outputs": feed_offsets(settings.getdict("FEEDS")),
        }
        run = job.begin_run(api.now_iso(), record)
        if run == 1:
            logger.info("Job %s: crawl %d begins", job.folder, job.crawl)
        else:
            max_pages = self.crawler.spider.max_pages
            done = sum(q.done(max_pages) for q in job.queries.values())
            logger.info(
                "Job %s: resuming crawl %d (run %d): %d queries done, %d started, the rest new",
                job.folder,
                job.crawl,
                run,
                done,
                len(job.queries) - done,
            )

    def end(self, reason: str, stats: dict[str, Any]) -> None:
        """Complete the crawl only if nothing is missing, and the output is on disk."""
        job = self.job
        if job is None:
            return
        sync_files(local_feeds(self.crawler.settings.getdict("FEEDS")))
        complete = stops.exit_status(reason, stats) == 0
        job.end_run(reason, api.now_iso(), calls=stats.get("justoneapi/requests/sent", 0), complete=complete)
        job.close()

    def last_crawl_started(self) -> str | None:
        return self.job.previous_crawl_started if self.job else None

    # --- pages already paid for --------------------------------------------------------------

    def progress(self, query: api.Query) -> QueryState | None:
        return self.job.query(query) if self.job else None

    def page_read(
        self, query: api.Query, page: int, items: list[dict[str, Any]], end: str | None, next_rank: int
    ) -> None:
        if self.job is not None:
            self.job.record_page(query, page, items, end, next_rank)

    def page_failed(self, query: api.Query, page: int, reason: str) -> None:
        if self.job is not None:
            self.job.record_failed(query, page, reason)

    def query_rejected(self, query: api.Query, page: int) -> None:
        if self.job is not None:
            self.job.record_rejected(query, page)

    # --- seen notes, budget ---------------------------------------------------------------------

    async def claim(self, note_id: str, note: dict[str, Any]) -> Verdict:
        if note_id in self.seen:
            return Verdict.REPEATED
        self.seen.add(note_id)
        return Verdict.EARLIER if note_id in self.earlier else Verdict.NEW

    async def spend_call(self, sleep: Sleep) -> stops.StopEvent | None:
        budget = self.config.max_requests
        if budget and self.calls >= budget:
            return stops.StopEvent(stops.BUDGET_SPENT.reason, f"the budget of {budget} calls is spent")
        self.calls += 1
        return None

    # --- the end ---------------------------------------------------------------------------------

    def next_steps(self, reason: str, unfinished: bool) -> list[str]:
        stop = stops.BY_REASON.get(reason)
        if stop is None and not unfinished:
            return []
        how = RESUMES.format(folder=self.job.folder) if self.job else NO_RESUME
        return [f"  next: {stop.fix if stop else 'run the same command again'}; {how}"]


def _take(folder: str) -> JobState:
    """Lock the job folder for this process and read it (mending a line a kill cut off)."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"JUSTONEAPI_JOB_DIR={folder!r} is not a folder; name a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        job = JobState(path)
        locked = job.lock()
    except OSError as exc:
        raise ConfigError(
            f"JUSTONEAPI_JOB_DIR={folder!r} cannot be used: {exc.strerror}; name a folder you can write"
        ) from None
    if not locked:
        raise ConfigError(f"JUSTONEAPI_JOB_DIR={folder!r} is in use by another crawl; wait for it, or name another folder")
    return job.load()
