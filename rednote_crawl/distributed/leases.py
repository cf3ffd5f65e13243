"""Following each leased response's output to its end (a spider middleware of the Redis home).

The lease book (``state/redis/leases.py``) says when a request taken from Redis is done; this
middleware tells it: the response's output ended, each of its notes is stored (item_scraped,
item_dropped) or failed (item_error), the callback failed (spider_error), or the page failed or
its query was rejected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from itemadapter import is_item
from scrapy import Request
from scrapy import signals as scrapy_signals
from scrapy.spidermiddlewares.base import BaseSpiderMiddleware

from rednote_crawl import signals
from rednote_crawl.state import crawl_state
from rednote_crawl.state.redis.leases import LEASE_META, PARENT_META

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from twisted.python.failure import Failure

    from rednote_crawl.state.redis import RedisState


def lease_of(request: Request | None) -> str | None:
    return request.meta.get(LEASE_META) if request is not None else None


class LeaseMiddleware(BaseSpiderMiddleware):
    """Follows each leased response's output to its end, and its notes through the pipelines."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        state: RedisState = crawl_state(crawler)  # type: ignore[assignment]
        self.book = state.leases
        crawler.signals.connect(self._item_stored, signal=scrapy_signals.item_scraped)
        crawler.signals.connect(self._item_stored, signal=scrapy_signals.item_dropped)
        crawler.signals.connect(self._item_failed, signal=scrapy_signals.item_error)
        crawler.signals.connect(self._spider_error, signal=scrapy_signals.spider_error)
        crawler.signals.connect(self._page_done, signal=signals.page_failed)
        crawler.signals.connect(self._page_done, signal=signals.query_rejected)

    def process_spider_output(self, response: Response, result: Iterable[Any]) -> Iterator[Any]:
        lease = lease_of(response.request)
        try:
            for output in result:
                yield self._follow(lease, output)
        finally:
            if lease:
                self.book.output_ended(lease)

    async def process_spider_output_async(self, response: Response, result: AsyncIterator[Any]) -> AsyncIterator[Any]:
        lease = lease_of(response.request)
        try:
            async for output in result:
                yield self._follow(lease, output)
        finally:
            if lease:
                self.book.output_ended(lease)

    def _follow(self, lease: str | None, output: Any) -> Any:
        if lease is None:
            return output
        if isinstance(output, Request):
            output.meta[PARENT_META] = lease  # the scheduler reports it stored (output_stored)
            self.book.output_started(lease)
        elif is_item(output):
            self.book.output_started(lease)
        return output

    def _item_stored(self, item: Any, response: Response | Failure | None, **kwargs: Any) -> None:
        if (lease := lease_of(getattr(response, "request", None))) is not None:
            self.book.output_stored(lease)

    def _item_failed(self, item: Any, response: Response | Failure | None, **kwargs: Any) -> None:
        if (lease := lease_of(getattr(response, "request", None))) is not None:
            self.book.output_stored(lease, ok=False)

    def _spider_error(self, failure: Failure, response: Response, **kwargs: Any) -> None:
        if (lease := lease_of(getattr(response, "request", None))) is not None:
            self.book.output_ended(lease)

    def _page_done(self, request: Request, **kwargs: Any) -> None:
        if (lease := lease_of(request)) is not None:
            self.book.finished(lease)
