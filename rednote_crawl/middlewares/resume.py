"""Resuming a crawl from its job state folder (a *spider* middleware; see ``jobstate.py``).

With ``JUSTONEAPI_JOB_DIR`` set, every page the spider parses is journaled with its
items before they reach the pipelines, and a new start of the same command:

- puts the journaled items back through the pipelines (the dedupe pipeline drops
  the ones already in the output, so a note a kill lost on its way to the file
  comes back and none is written twice);
- skips the queries that ended (an empty page, the cutoff of ``since``, or a rejection),
  and those already at ``max_pages``;
- continues every other query at the page after the last one paid for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy import signals as scrapy_signals
from scrapy.exceptions import NotConfigured
from scrapy.spidermiddlewares.base import BaseSpiderMiddleware

from rednote_crawl import api, signals
from rednote_crawl.config import ConfigError
from rednote_crawl.jobstate import JobState, local_path, query_key
from rednote_crawl.middlewares import PAGE_META, QUERY_END_META, query_of
from rednote_crawl.outcome import exit_status

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

_STATES: weakref.WeakKeyDictionary[Any, JobState] = weakref.WeakKeyDictionary()


def job_state(crawler: Crawler) -> JobState | None:
    """The crawler's job state, loaded once; None without ``JUSTONEAPI_JOB_DIR``."""
    folder = crawler.settings.get("JUSTONEAPI_JOB_DIR")
    if not folder:
        return None
    state = _STATES.get(crawler)
    if state is None:
        path = Path(folder).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
            state = JobState(path)
            locked = state.lock()
        except OSError as exc:
            raise ConfigError(
                f"JUSTONEAPI_JOB_DIR={folder!r} cannot be used: {exc.strerror}; name a folder you can write"
            ) from None
        if not locked:
            raise ConfigError(
                f"JUSTONEAPI_JOB_DIR={folder!r} is in use by another crawl; wait for it, or name another folder"
            )
        state = _STATES[crawler] = state.load()
    return state


class ResumeMiddleware(BaseSpiderMiddleware):
    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        state = job_state(crawler)
        if state is None:
            raise NotConfigured
        self.state = state
        self.stats = crawler.stats
        self.reason: str | None = None
        crawler.signals.connect(self.spider_opened, signal=scrapy_signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=scrapy_signals.spider_closed)
        crawler.signals.connect(self.engine_stopped, signal=scrapy_signals.engine_stopped)
        crawler.signals.connect(self.query_rejected, signal=signals.query_rejected)
        crawler.signals.connect(self.page_failed, signal=signals.page_failed)

    def spider_opened(self) -> None:
        spider = self.crawler.spider
        crawl = {"queries": [query_key(q) for q in spider.queries()], "outputs": feed_offsets(self.crawler.settings)}
        run = self.state.begin_run(api.now_iso(), crawl)
        if run == 1:
            logger.info("Job %s: crawl %d begins", self.state.folder, self.state.crawl)
        else:
            done = sum(q.done(spider.max_pages) for q in self.state.queries.values())
            logger.info(
                "Job %s: resuming crawl %d (run %d): %d queries done, %d started, the rest new",
                self.state.folder,
                self.state.crawl,
                run,
                done,
                len(self.state.queries) - done,
            )

    def spider_closed(self, reason: str) -> None:
        self.reason = reason

    def engine_stopped(self) -> None:
        """End the run once the feeds are stored: complete only if nothing is missing, and on disk."""
        if self.reason is None:
            return
        stats = self.stats.get_stats()
        for path in local_feeds(self.crawler.settings):
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        complete = exit_status(self.reason, stats) == 0
        self.state.end_run(
            self.reason, api.now_iso(), calls=stats.get("justoneapi/requests/sent", 0), complete=complete
        )
        self.state.close()

    async def process_start(self, start: AsyncIterator[Any]) -> AsyncIterator[Any]:
        spider = self.crawler.spider
        async for request in start:
            query = query_of(request) if isinstance(request, Request) else None
            known = self.state.query(query) if query is not None else None
            if known is None:
                yield request
                continue
            for page in sorted(known.pages):
                for item in known.pages[page]:
                    self.stats.inc_value("justoneapi/resume/items_replayed")
                    yield item
            if known.done(spider.max_pages):
                self.stats.inc_value("justoneapi/queries/finished/in_an_earlier_run")
                continue
            self.stats.inc_value("justoneapi/resume/queries_continued")
            yield spider.page_request(query, known.last_page + 1, known.next_rank)

    def process_spider_output(self, response: Response, result: Iterable[Any]) -> Iterator[Any]:
        yield from self._journal(response, list(result))

    async def process_spider_output_async(self, response: Response, result: AsyncIterator[Any]) -> AsyncIterator[Any]:
        for output in self._journal(response, [o async for o in result]):
            yield output

    def _journal(self, response: Response, outputs: list[Any]) -> list[Any]:
        """Write the page and its items to the journal before anything goes on."""
        query = query_of(response.request) if response.request is not None else None
        if query is not None:
            items = [o for o in outputs if not isinstance(o, Request)]
            following = [o for o in outputs if isinstance(o, Request) and query_of(o) == query]
            next_rank = following[0].cb_kwargs.get("rank_offset", 0) if following else 0
            end = response.meta.get(QUERY_END_META)
            self.state.record_page(query, response.meta[PAGE_META], items, end, next_rank)
        return outputs

    def query_rejected(self, request: Request, message: str) -> None:
        self.state.record_rejected(query_of(request), request.meta[PAGE_META])

    def page_failed(self, request: Request, reason: str) -> None:
        self.state.record_failed(query_of(request), request.meta[PAGE_META], reason)


JSONL_FORMATS = ("jsonlines", "jsonl", "jl")


def local_feeds(settings: BaseSettings) -> list[Path]:
    """The fixed local JSON Lines files among FEEDS: the outputs a job can read back."""
    paths = []
    for uri, options in settings.getdict("FEEDS").items():
        path = local_path(str(uri))
        if path is not None and "%(" not in str(path) and options.get("format") in JSONL_FORMATS:
            paths.append(path)
    return paths


def feed_offsets(settings: BaseSettings) -> dict[str, int]:
    """Where this crawl's lines begin in each output: 0 when it is overwritten, else its size now."""
    offsets = {}
    for uri, options in settings.getdict("FEEDS").items():
        path = local_path(str(uri))
        if path is not None and path in local_feeds(settings):
            offsets[str(path)] = 0 if options.get("overwrite") or not path.exists() else path.stat().st_size
    return offsets
