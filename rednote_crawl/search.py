"""A search call as Scrapy's components see it.

- ``SearchCall``: everything a search request carries forward (its query, page, where its
  ranks start, and the crawl's ``max_pages`` and ``since``), in one frozen value under
  ``Meta.CALL``. The options travel with the request: in a distributed crawl the worker that
  fetches a page may have been started with other arguments, or none.
- ``ApiResponse``: a code-0 answer as the policy middleware hands it to the spider, with the
  page's ``api.PageOutcome`` (decoded once, on the downloader side).
- ``record_failed_page`` and ``stop_crawl``: how any component reports a page that will not be
  fetched, or stops the whole crawl.
- ``Accounted``: the ``IgnoreRequest`` the project's components raise once they have said how a
  request ended (a failed page, a rejected query, a stop, a call not sent). Any other end of a
  search request (someone else's ``IgnoreRequest``, any error) is a failed page: the spider's
  errback records it, so no page disappears.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import IgnoreRequest
from scrapy.http import TextResponse
from scrapy.utils.defer import deferred_from_coro

from rednote_crawl import api, signals, stops
from rednote_crawl.names import Meta, Stat
from rednote_crawl.stops import StopEvent

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True)
class SearchCall:
    query: api.Query
    page: int
    rank_offset: int  # notes on the query's earlier pages: this page's ranks go on from there
    max_pages: int
    since: int | None = None  # epoch seconds: only notes published since then
    details: str = "none"  # -a details=: which new notes a distributed crawl holds for a detail call

    def next_page(self, rank_offset: int) -> SearchCall:
        return dataclasses.replace(self, page=self.page + 1, rank_offset=rank_offset)

    def describe(self) -> str:
        return f"{self.query.describe()} page {self.page}"

    def to_json(self) -> list[Any]:
        """For a request stored in Redis (JSON, never pickle)."""
        q = self.query
        call = [[q.keyword, q.sort, q.note_type, q.note_time], self.page, self.rank_offset, self.max_pages, self.since]
        return call if self.details == "none" else [*call, self.details]

    @classmethod
    def from_json(cls, data: list[Any]) -> SearchCall:
        query, page, rank_offset, max_pages, since, *details = data
        return cls(api.Query(*query), int(page), int(rank_offset), int(max_pages), since, *map(str, details[:1]))


@dataclass(frozen=True, slots=True)
class DetailCall:
    """A note detail call (``-a details=``): the note it asks for. Carried under ``Meta.CALL`` as a
    ``SearchCall`` is, so the throttle, the policy and the handler treat both kinds alike."""

    note_id: str

    def describe(self) -> str:
        return f"the details of note {self.note_id}"

    def to_json(self) -> list[Any]:
        return [self.note_id]

    @classmethod
    def from_json(cls, data: list[Any]) -> DetailCall:
        return cls(str(data[0]))


Call = SearchCall | DetailCall


def calls_made(request: Request) -> int:
    """The calls a page took: this one, its retries and its rate-limited tries."""
    return 1 + request.meta.get("retry_times", 0) + request.meta.get(Meta.RATE_LIMITED, 0)


def call_of(request: Request | None) -> Call | None:
    return request.meta.get(Meta.CALL) if request is not None else None


def search_call_of(request: Request | None) -> SearchCall | None:
    """The request's search call; None for any other request (a detail call, a foreign one)."""
    call = call_of(request)
    return call if isinstance(call, SearchCall) else None


class Accounted(IgnoreRequest):
    """A request dropped by one of the project's components, which has already recorded why."""


class ApiResponse(TextResponse):
    """A code-0 answer with its page read (``outcome``)."""

    attributes: tuple[str, ...] = (*TextResponse.attributes, "outcome")

    def __init__(self, *args: Any, outcome: api.PageOutcome, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcome = outcome

    @property
    def call(self) -> SearchCall:
        call = search_call_of(self.request)
        assert call is not None, "an ApiResponse answers a search call"
        return call


class DetailResponse(TextResponse):
    """A code-0 answer to a detail call, with its note (``detail``, the API's own)."""

    attributes: tuple[str, ...] = (*TextResponse.attributes, "detail")

    def __init__(self, *args: Any, detail: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.detail = detail


class NoteGone(Accounted):
    """A detail call's answer concerns its one note (deleted, hidden, refused): that call ends, not the crawl."""


def record_failed_page(crawler: Crawler, request: Request, reason: str) -> None:
    """Count and report a page that will not be fetched: its query is incomplete. A detail call
    that failed is counted apart: its note goes out without details, never lost."""
    call = call_of(request)
    if isinstance(call, DetailCall):
        crawler.stats.inc_value(Stat.DETAILS_FAILED)
        logger.warning("The call for %s failed: %s; the note goes out without them", call.describe(), reason)
        crawler.signals.send_catch_log(signals.page_failed, request=request, reason=reason)
        return
    crawler.stats.inc_value(Stat.PAGES_FAILED)
    logger.error(
        "Page %s of %s failed: %s; its query is incomplete",
        call.page if call else "?",
        call.query.describe() if call else request.url,
        reason,
    )
    crawler.signals.send_catch_log(signals.page_failed, request=request, reason=reason)


def stop_storage_failed(crawler: Crawler, message: str) -> None:
    """A write the crawl depends on failed: stop before paying for pages that cannot be stored."""
    stats = crawler.stats
    first = stats.get_value(Stat.STORAGE_FAILED) is None
    stats.inc_value(Stat.STORAGE_FAILED)
    if first:
        sent = stats.get_value(Stat.REQUESTS_SENT, 0)
        stats.set_value(Stat.STORAGE_CALLS_BEFORE_FAILURE, sent)
        logger.error("Stopping the crawl after %d calls: %s; %s", sent, message, stops.storage_fix(message))
        stop_crawl(crawler, StopEvent(stops.STORAGE_FAILED.reason, message))


_closing: set[Any] = set()  # close_spider Deferreds in flight (kept referenced until done)


class Stopping:
    """Whether the crawl is stopping, and why: one per crawler (``stopping``), set by the
    ``crawl_stopping`` signal (``stop_crawl``). The policy, the throttle and the distributed worker
    read it; ``woken`` wakes their waits.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.event: StopEvent | None = None  # the first stop; later ones change nothing
        self.woken = asyncio.Event()
        crawler.signals.connect(self.set, signal=signals.crawl_stopping)

    @property
    def reason(self) -> str | None:
        """The stop's finish reason, or None while the crawl goes on."""
        return self.event.reason if self.event is not None else None

    def now(self) -> str | None:
        """The stop's reason, or ``shutdown`` once Scrapy itself is stopping (Ctrl-C), or None."""
        if self.event is None and not self.crawler.crawling:
            return stops.SHUTDOWN.reason
        return self.reason

    def set(self, event: StopEvent) -> None:
        if self.event is None:
            self.event = event
        self.woken.set()


_STOPPING: weakref.WeakKeyDictionary[Any, Stopping] = weakref.WeakKeyDictionary()


def stopping(crawler: Crawler) -> Stopping:
    """The crawler's stopping state."""
    state = _STOPPING.get(crawler)
    if state is None:
        state = _STOPPING[crawler] = Stopping(crawler)
    return state


def stop_crawl(crawler: Crawler, event: StopEvent) -> None:
    """Tell every component the crawl is stopping, then close the spider with the stop's reason."""
    if event.by is not None:
        logger.error(
            "Stopping: worker %s stopped the crawl (%s: %s); when the cause is fixed, "
            "run `scrapy redis resume` and start the workers again",
            event.by,
            event.reason,
            event.message,
        )
    crawler.signals.send_catch_log(signals.crawl_stopping, event=event)
    close_spider(crawler, event.reason)


def close_spider(crawler: Crawler, reason: str) -> None:
    """Close the spider with ``reason``, from synchronous code."""
    closing = deferred_from_coro(crawler.engine.close_spider_async(reason=reason))
    _closing.add(closing)
    closing.addErrback(lambda failure: logger.error("Closing the spider failed: %s", failure.getErrorMessage()))
    closing.addBoth(lambda _: _closing.discard(closing))
