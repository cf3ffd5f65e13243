"""The bookkeeping of each page, between the spider and the pipelines (a spider middleware).

For every code-0 page the spider parsed: count it (pages, skipped items, notes, why its query
ended), and hand it with its items to the crawl state *before* the items go on: with a job
folder, the page and its notes are committed to its database, so a kill loses none of them. A page that failed
or a query the API rejected is recorded too.

At the start, queries the state already knows (a resumed crawl) are not asked for again from
page 1: the items of their paid pages go back through the pipelines (the dedupe pipeline drops
the ones already in the output, so a note a kill lost on its way to the file comes back and none
is written twice), finished queries are skipped, and the others go on at the page after the last
one paid for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.spidermiddlewares.base import BaseSpiderMiddleware

from rednote_crawl import signals
from rednote_crawl.names import Stat
from rednote_crawl.search import ApiResponse, calls_made, search_call_of, stop_storage_failed
from rednote_crawl.state import PaidPage, StorageError, crawl_state

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response


class PageBookMiddleware(BaseSpiderMiddleware):
    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.pages = crawl_state(crawler).pages
        self.stats = crawler.stats
        crawler.signals.connect(self.query_rejected, signal=signals.query_rejected)
        crawler.signals.connect(self.page_failed, signal=signals.page_failed)

    async def process_start(self, start: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in start:
            call = search_call_of(request) if isinstance(request, Request) else None
            known = await self.pages.progress(call.query) if call is not None else None
            if call is None or known is None:
                yield request
                continue
            for item in await self.pages.replay(known):
                self.stats.inc_value(Stat.RESUME_ITEMS_REPLAYED)
                yield item
            if known.done(call.max_pages):
                self.stats.inc_value(Stat.QUERIES_FINISHED_EARLIER)
                continue
            self.stats.inc_value(Stat.RESUME_QUERIES_CONTINUED)
            resumed = dataclasses.replace(call, page=known.last_page + 1, rank_offset=known.next_rank)
            yield self.crawler.spider.page_request(resumed)

    def process_spider_output(self, response: Response, result: Iterable[Any]) -> Iterator[Any]:
        raise NotImplementedError("Scrapy 2.13+ calls process_spider_output_async: a page is stored before it goes on")

    async def process_spider_output_async(self, response: Response, result: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            outputs = await self._book(response, [o async for o in result])
        finally:  # stored, or never will be: the throttle may send the next call (downloader/throttle.py)
            self._stored(response)
        for output in outputs:
            yield output

    def process_spider_exception(self, response: Response, exception: Exception) -> None:
        self._stored(response)

    def _stored(self, response: Response) -> None:
        if isinstance(response, ApiResponse):
            self.crawler.signals.send_catch_log(signals.page_stored, request=response.request)

    async def _book(self, response: Response, outputs: list[Any]) -> list[Any]:
        if isinstance(response, ApiResponse):
            call, outcome = response.call, response.outcome
            stats = self.stats
            stats.inc_value(Stat.PAGES_READ)
            for model_type, count in outcome.skipped.items():
                stats.inc_value(Stat.ITEMS_SKIPPED + model_type, count)
            stats.inc_value(Stat.NOTES_SEEN, outcome.seen)
            if outcome.older:
                stats.inc_value(Stat.NOTES_OLDER, outcome.older)
            if outcome.end is not None:
                stats.inc_value(Stat.QUERIES_FINISHED + outcome.end)
            items = [o for o in outputs if not isinstance(o, Request)]
            follow_ups = [o for o in outputs if isinstance(o, Request)]
            paid = PaidPage(
                call.query, call.page, items, outcome.end, outcome.next_rank, calls_made(response.request),
                response.request, follow_ups,
            )
            try:
                await self.pages.page_read(paid)
            except StorageError as exc:  # its notes still go on: the output may have room
                stop_storage_failed(self.crawler, str(exc))
        return outputs

    def query_rejected(self, request: Request, message: str) -> None:
        if (call := search_call_of(request)) is not None:
            try:
                self.pages.query_rejected(call.query, call.page)
            except StorageError as exc:
                stop_storage_failed(self.crawler, str(exc))

    def page_failed(self, request: Request, reason: str) -> None:
        if (call := search_call_of(request)) is not None:
            try:
                self.pages.page_failed(call.query, call.page, reason, calls_made(request))
            except StorageError as exc:
                stop_storage_failed(self.crawler, str(exc))
