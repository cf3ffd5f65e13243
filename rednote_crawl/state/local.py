"""The local home of the crawl's state: memory, plus the job folder when ``JUSTONEAPI_JOB_DIR`` is set.

The job database is used from one thread of its own, in order: a commit is synced to disk (a
few ms), and the reactor goes on downloading and parsing while it waits. A page's notes go on to
the output only once its commit is done.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rednote_crawl import api, stops
from rednote_crawl.config import ApiConfig, ConfigError, local_path, queries_fingerprint
from rednote_crawl.formats.writers import write_notes
from rednote_crawl.names import Stat
from rednote_crawl.search import stop_storage_failed
from rednote_crawl.state import (
    CallAccount,
    CrawlState,
    PageStore,
    PaidPage,
    Sleep,
    Standing,
    StorageError,
    Verdict,
    jobcheck,
)
from rednote_crawl.state.figures import CrawlFigures, KeywordFigures, QueryProgress
from rednote_crawl.state.jobfolder import JobFolder, query_key
from rednote_crawl.state.limits import LimitFile
from rednote_crawl.state.outputs import feed_offsets, local_feeds, note_ids, repair_jsonl, sync_files
from rednote_crawl.state.rate import AdaptiveRateLimiter

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

DEFAULT_FEED_OPTIONS = {"format": "jsonlines", "encoding": "utf-8"}
# Where notes go when the command line names no file (-o/-O) and FEEDS is empty; with a job
# folder, JUSTONEAPI_JOB_DIR/crawl-NNNN.jsonl.
DEFAULT_FEEDS = {"output/%(name)s-%(time)s.jsonl": DEFAULT_FEED_OPTIONS}


class LocalAccount(CallAccount):
    """The token's rate in memory (its learned limit in ``JUSTONEAPI_STATE_DIR``), the budget counted here."""

    def __init__(self, config: ApiConfig) -> None:
        self.rate = AdaptiveRateLimiter(config.max_rps)
        self.limits = LimitFile(config.state_dir)
        self.token = config.token
        self.budget = config.max_requests
        self.calls = 0

    def start(self) -> None:
        self.rate.start_at(self.limits.get(self.token))

    async def book_call(self, sleep: Sleep) -> stops.StopEvent | None:
        await self.rate.acquire(sleep)
        if self.budget and self.calls >= self.budget:
            return stops.StopEvent(stops.BUDGET_SPENT.reason, f"the budget of {self.budget} calls is spent")
        self.calls += 1
        return None

    def refund_call(self) -> None:
        self.calls = max(0, self.calls - 1)

    def remember_limit(self, limit: float) -> None:
        self.limits.put(self.token, limit)


class LocalPages(PageStore):
    """Notes seen in this run in memory; with a job folder, its database (in a thread of its own)."""

    def __init__(self, crawler: Crawler, config: ApiConfig) -> None:
        self.crawler = crawler
        self.job: JobFolder | None = None  # set when the job folder is taken
        self.seen: set[str] = set()  # notes that went out in this run
        self.written: set[str] = set()  # notes earlier runs of this crawl wrote to the output
        # Notes an earlier crawl of the job found, among those on their way to the pipelines
        # (looked up one page at a time; skipped unless JUSTONEAPI_SEEN_NOTES=update).
        self.earlier: set[str] = set()
        self.skip_earlier = config.seen_notes == "skip"
        self.db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-db")
        self.loop: asyncio.AbstractEventLoop | None = None  # the reactor's, for news from the database's thread

    async def progress(self, query: api.Query) -> QueryProgress | None:
        if self.job is None:
            return None
        return await asyncio.wrap_future(self.in_db_thread(self.job.progress, query))

    async def replay(self, progress: QueryProgress) -> list[dict[str, Any]]:
        assert self.job is not None
        job = self.job

        def items() -> tuple[list[dict[str, Any]], set[str]]:
            found = list(job.items(progress))
            return found, self._earlier_among(found)

        found, earlier = await asyncio.wrap_future(self.in_db_thread(items))
        self.earlier |= earlier
        return found

    async def page_read(self, page: PaidPage) -> None:
        if self.job is None:
            return
        job = self.job

        def store() -> set[str]:
            earlier = self._earlier_among(page.items)  # before the page's own notes are in the table
            job.record_page(page.query, page.page, page.items, page.end, page.next_rank, page.calls)
            return earlier

        self.earlier |= await asyncio.wrap_future(self.in_db_thread(store))

    def page_failed(self, query: api.Query, page: int, reason: str, calls: int = 1) -> None:
        if self.job is not None:
            self.in_db_thread(self.job.record_failed, query, page, reason, calls).add_done_callback(self._report)

    def query_rejected(self, query: api.Query, page: int) -> None:
        if self.job is not None:
            self.in_db_thread(self.job.record_rejected, query, page).add_done_callback(self._report)

    async def claim(self, note_id: str, note: dict[str, Any]) -> Verdict:
        earlier = note_id in self.earlier
        self.earlier.discard(note_id)
        if note_id in self.seen:
            return Verdict.REPEATED
        self.seen.add(note_id)
        if note_id in self.written:
            return Verdict.WRITTEN
        return Verdict.EARLIER if earlier else Verdict.NEW

    @property
    def keeps_held_notes(self) -> bool:  # type: ignore[override]
        return self.job is not None

    async def detail_stored(self, note_id: str) -> tuple[str, dict[str, Any] | None] | None:
        if self.job is None:
            return None
        return await asyncio.wrap_future(self.in_db_thread(self.job.detail, note_id))

    async def detail_read(self, note_id: str, status: str, detail: dict[str, Any] | None) -> None:
        if self.job is not None:
            await asyncio.wrap_future(self.in_db_thread(self.job.record_detail, note_id, status, detail))

    async def found_earlier(self, note_id: str) -> bool:
        if self.job is None:
            return False
        return bool(await asyncio.wrap_future(self.in_db_thread(self.job.earlier, [note_id])))

    def _earlier_among(self, items: list[dict[str, Any]]) -> set[str]:
        """One query for a page's notes: which of them an earlier crawl found (in the database's thread)."""
        if self.job is None or not self.skip_earlier:
            return set()
        return self.job.earlier([item["note_id"] for item in items])

    def in_db_thread(self, call: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``call`` in the database's own thread, after every call before it; failures are StorageErrors."""

        def guarded() -> Any:
            try:
                return call(*args)
            except sqlite3.Error as exc:  # a read failed; writes raise StorageError themselves
                if self.job is not None and jobcheck.damaged_error(exc):
                    jobcheck.mark_for_check(self.job.folder)  # the next start checks and repairs it
                raise StorageError(f"cannot use the job database {self.job.path if self.job else ''}: {exc}") from exc

        return self.db_thread.submit(guarded)

    def _report(self, done: Future[Any]) -> None:
        """A write nobody waits for failed: stop the crawl (from the reactor's thread)."""
        exc = done.exception()
        if isinstance(exc, StorageError) and self.loop is not None:
            self.loop.call_soon_threadsafe(stop_storage_failed, self.crawler, str(exc))


class LocalState(CrawlState):
    """One machine: the pages in memory or in the job folder (``JUSTONEAPI_JOB_DIR``), the calls counted here."""

    def __init__(self, crawler: Crawler, config: ApiConfig) -> None:
        super().__init__(crawler, config)
        self.pages = LocalPages(crawler, config)
        self.account = LocalAccount(config)
        self.fingerprint = ""
        self.figures: CrawlFigures | None = None  # the crawl per keyword, as the run ended
        self.past: list[list[KeywordFigures]] | None = None  # the job's last crawls, as the run ended
        # With a job folder, the CSV and Excel outputs: written whole from the job's database at the
        # end of every run (path -> format, exporter options, every crawl (-o) or this one (-O)).
        self.whole_files: dict[Path, tuple[str, dict[str, Any], bool]] = {}

    @property
    def job(self) -> JobFolder | None:
        return self.pages.job

    @classmethod
    def check(cls, config: ApiConfig, settings: BaseSettings) -> None:
        folder = config.job_dir
        if folder is None:
            return
        _check_is_folder(folder)
        if not JobFolder.lock_is_free(folder):
            raise ConfigError(IN_USE.format(folder=folder))

    def open(self, feeds: dict[str, Any]) -> dict[str, Any]:
        self.account.start()
        folder = self.config.job_dir
        if folder is None:
            return feeds or DEFAULT_FEEDS
        self.pages.job = job = _take(folder)
        feeds = feeds or {str(job.output): DEFAULT_FEED_OPTIONS}
        args = self.crawler.spider.args  # found while the start-up read the keyword file
        self.fingerprint = args.fingerprint or queries_fingerprint(query_key(q) for q in args.queries())
        feeds = self._take_whole_files(feeds)
        if job.resuming:
            feeds = self._resume_feeds(feeds, job)
        self.pages.written = set(job.exported)  # read back from the outputs of the open crawl
        return feeds

    def _take_whole_files(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """CSV and Excel outputs are not fed note by note with a job folder: a resumed run would give
        them a second header and notes twice, and a workbook cut by a kill cannot be read. They are
        written whole (atomically) from the database when the run ends: ``-O`` the crawl's notes
        (every run of it), ``-o`` every note of the job."""
        kept = {}
        for uri, options in feeds.items():
            path = local_path(str(uri))
            fmt = options.get("format")
            if path is None or "%(" in str(path) or fmt not in WHOLE_FILE_FORMATS:
                kept[uri] = options
                continue
            exporter: dict[str, Any] = {"fields_to_export": options.get("fields")}
            if fmt == "csv" and options.get("encoding"):
                exporter["encoding"] = options["encoding"]
            self.whole_files[path] = (fmt, exporter, not options.get("overwrite", False))
            logger.info("%s is written from the job folder's database when the run ends", path)
        return kept

    def _write_whole_files(self, job: JobFolder) -> str | None:
        """The CSV and Excel outputs, from the database (in its thread); the failure, if any."""
        for path, (fmt, options, every) in self.whole_files.items():
            crawl = None if every else job.crawl
            try:
                count = write_notes(path, job.export(crawl, first_found=self.pages.skip_earlier), fmt, **options)
            except (OSError, sqlite3.Error) as exc:
                return f"cannot write the output file {path}: {getattr(exc, 'strerror', None) or exc}"
            what = "every crawl" if every else f"crawl {job.crawl}"
            logger.info("Wrote %d notes of %s to %s", count, what, path)
        return None

    def _resume_feeds(self, feeds: dict[str, Any], job: JobFolder) -> dict[str, Any]:
        """Resume only the same crawl; append to its outputs (even with -O), mended first.

        The notes this crawl already wrote (from the offset where it began in each file) are
        not written again.
        """
        planned = job.fingerprint
        if planned is not None and planned != self.fingerprint:
            raise ConfigError(
                f"the open crawl {job.crawl} in JUSTONEAPI_JOB_DIR={str(job.folder)!r} was started with other "
                "keywords or filters: run it again with the same arguments to finish it, or name another job folder"
            )
        offsets = job.outputs
        readable = local_feeds(feeds)
        for uri in feeds:
            path = local_path(str(uri))
            if path is not None and path in readable:
                job.exported |= note_ids(repair_jsonl(path, start=offsets.get(str(path), 0)))
            else:
                logger.warning(
                    "Feed %s is not one fixed local JSON Lines file: a resumed job cannot tell what it holds", uri
                )
        logger.info("Resuming: %d notes this crawl already wrote are not written again", len(job.exported))
        return {uri: {**options, "overwrite": False} for uri, options in feeds.items()}

    def begin(self) -> None:
        job = self.job
        if job is None:
            return
        self.pages.loop = asyncio.get_running_loop() if _loop_running() else None
        outputs = feed_offsets(self.crawler.settings.getdict("FEEDS"))
        run = self.pages.in_db_thread(job.begin_run, api.now_iso(), self.fingerprint, outputs).result()
        if run == 1:
            logger.info("Job %s: crawl %d begins", job.folder, job.crawl)
        else:
            done, started = self.pages.in_db_thread(job.query_counts, self.crawler.spider.max_pages).result()
            logger.info(
                "Job %s: resuming crawl %d (run %d): %d queries done, %d started, the rest new",
                job.folder,
                job.crawl,
                run,
                done,
                started - done,
            )

    def end(self, reason: str, stats: dict[str, Any]) -> None:
        """Complete the crawl only if nothing is missing, and the output is on disk."""
        job = self.job
        if job is None:
            return
        for failure in sync_files(local_feeds(self.crawler.settings.getdict("FEEDS"))):
            logger.error("%s: notes may be missing from it; the next run carries this crawl on", failure)
            self.crawler.stats.inc_value(Stat.STORAGE_FAILED)
            stats = self.crawler.stats.get_stats()
        in_db_thread = self.pages.in_db_thread
        if self.whole_files and (failure := in_db_thread(self._write_whole_files, job).result()):
            logger.error("%s; %s", failure, stops.STORAGE_FAILED.fix)
            self.crawler.stats.inc_value(Stat.STORAGE_FAILED)
            reason = stops.STORAGE_FAILED.reason  # exit status 8: the crawl stays open
            self.crawler.stats.set_value("finish_reason", reason)
            stats = self.crawler.stats.get_stats()
        calls = stats.get(Stat.REQUESTS_SENT, 0)
        status = stops.exit_status(reason, stats)
        try:
            in_db_thread(job.end_run, reason, api.now_iso(), calls, status).result()
        except StorageError as exc:  # the run stays open: the next one carries the crawl on
            logger.error("%s; the next run carries this crawl on", exc)
        self.figures = in_db_thread(job.crawl_figures, job.crawl).result()  # for the summary, which follows
        # for the monitors, which follow: the crawls they compare this one with, and this one
        try:
            self.past = in_db_thread(job.history, self.config.thresholds.history + 1).result()
        except StorageError as exc:
            logger.warning("%s: the monitors go without the job's history", exc)
            self.past = []
        in_db_thread(job.close).result()
        self.pages.db_thread.shutdown()

    def crawl_figures(self) -> CrawlFigures | None:
        if self.job is None:
            return None
        if self.figures is None:
            self.figures = self.pages.in_db_thread(self.job.crawl_figures, self.job.crawl).result()
        return self.figures

    def history(self, crawls: int) -> list[list[KeywordFigures]]:
        if self.job is None:
            return []
        if self.past is not None:  # the run ended, and closed the database
            if len(self.past) >= min(crawls, self.job.crawl):
                return self.past[-crawls:]
            reader = JobFolder.read(self.job.folder)
            try:
                return reader.history(crawls)
            finally:
                reader.close()
        return self.pages.in_db_thread(self.job.history, crawls).result()

    def last_crawl_started(self) -> str | None:
        return self.job.previous_crawl_started if self.job else None

    def standing(self) -> Standing:
        return Standing(job_folder=str(self.job.folder) if self.job else None)


WHOLE_FILE_FORMATS = ("csv", "xlsx")
IN_USE = "JUSTONEAPI_JOB_DIR={folder!r} is in use by another crawl; wait for it, or name another folder"


def _check_is_folder(folder: str) -> None:
    if Path(folder).expanduser().exists() and not Path(folder).expanduser().is_dir():
        raise ConfigError(f"JUSTONEAPI_JOB_DIR={folder!r} is not a folder; name a folder")


def _take(folder: str) -> JobFolder:
    """Lock the job folder for this process and open its database (converting an older folder)."""
    _check_is_folder(folder)
    path = Path(folder).expanduser()
    try:
        job = JobFolder.take(path)
    except OSError as exc:
        raise ConfigError(
            f"JUSTONEAPI_JOB_DIR={folder!r} cannot be used: {exc.strerror}; name a folder you can write"
        ) from None
    except (sqlite3.Error, StorageError) as exc:
        raise ConfigError(
            f"JUSTONEAPI_JOB_DIR={folder!r} cannot be used: its database {path / 'job.db'} fails ({exc}); "
            f"{stops.storage_fix(str(exc))}"
        ) from None
    if job is None:
        raise ConfigError(IN_USE.format(folder=folder))
    return job


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
