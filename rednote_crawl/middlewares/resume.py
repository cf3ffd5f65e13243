"""Resuming a crawl from its job state folder (a *spider* middleware; see ``jobstate.py``).

With ``JUSTONEAPI_JOB_DIR`` set, every page the spider parses is journaled with its
items before they reach the pipelines, and a new start of the same command:

- puts the journaled items back through the pipelines (the dedupe pipeline drops
  the ones already in the output, so a note a kill lost on its way to the file
  comes back and none is written twice);
- skips the queries that are finished or were rejected;
- continues every other query at the page after the last one paid for.
"""

from __future__ import annotations

import logging
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
from rednote_crawl.jobstate import JobState
from rednote_crawl.middlewares import PAGE_META, query_of

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response

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
        crawler.signals.connect(self.spider_opened, signal=scrapy_signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=scrapy_signals.spider_closed)
        crawler.signals.connect(self.query_rejected, signal=signals.query_rejected)
        crawler.signals.connect(self.page_failed, signal=signals.page_failed)

    def spider_opened(self) -> None:
        run = self.state.begin_run(api.now_iso())
        if run == 1:
            logger.info("Job %s: crawl %d begins", self.state.folder, self.state.crawl)
        else:
            finished = sum(q.finished or q.rejected for q in self.state.queries.values())
            logger.info(
                "Resuming the job in %s (run %d): %d queries finished, %d started, the rest new",
                self.state.folder,
                run,
                finished,
                len(self.state.queries) - finished,
            )

    def spider_closed(self, reason: str) -> None:
        complete = reason == "finished" and not self.stats.get_value("justoneapi/pages/failed")
        self.state.end_run(
            reason, api.now_iso(), calls=self.stats.get_value("justoneapi/requests/sent", 0), complete=complete
        )
        self.state.close()

    async def process_start(self, start: AsyncIterator[Any]) -> AsyncIterator[Any]:
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
            if known.finished or known.rejected:
                self.stats.inc_value("justoneapi/queries/finished/in_an_earlier_run")
                continue
            self.stats.inc_value("justoneapi/resume/queries_continued")
            yield self.crawler.spider.page_request(query, known.last_page + 1, known.notes_so_far)

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
            last = not any(isinstance(o, Request) and query_of(o) == query for o in outputs)
            self.state.record_page(query, response.meta[PAGE_META], items, last)
        return outputs

    def query_rejected(self, request: Request, message: str) -> None:
        self.state.record_rejected(query_of(request), request.meta[PAGE_META])

    def page_failed(self, request: Request, reason: str) -> None:
        self.state.record_failed(query_of(request), request.meta[PAGE_META], reason)
