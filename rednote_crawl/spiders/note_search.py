"""``note_search``: every keyword of a seed file, every filter combination, every page."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import scrapy
from scrapy.exceptions import IgnoreRequest
from twisted.python.failure import Failure

from rednote_crawl import api, signals
from rednote_crawl.config import ApiConfig, SearchArgs
from rednote_crawl.names import Meta, Stat
from rednote_crawl.search import (
    Accounted,
    ApiResponse,
    DetailCall,
    DetailResponse,
    NoteGone,
    SearchCall,
    record_failed_page,
    stopping,
)
from rednote_crawl.state import crawl_state

if TYPE_CHECKING:
    from rednote_crawl.state import CrawlState

logger = logging.getLogger(__name__)

# Page-1 requests waiting in the scheduler before start() reads the next keywords: a million
# keywords go out as the downloader takes them, not all into memory first.
START_WINDOW = 256
START_POLL = 0.05  # seconds
START_YIELD = 100  # start requests between two turns of the reactor
DETAIL_PRIORITY = 1_000_000  # a page's priority is its number: a held note's detail call comes first


class NoteSearchSpider(scrapy.Spider):
    """Spider arguments (``-a name=value``):

    keywords   path of the seed file (one keyword a line)            required, or:
    keyword    the keywords themselves, comma-separated (one-off jobs)
    sort       general, popularity_descending/popular, time_descending/latest,
               comment_descending/comments, collect_descending/collects   general
    note_type  all/_0, video/_1, normal/_2 (image)                    all
    note_time  any, day, week, half_year (or the API's own values)   any
    max_pages  the deepest page of one query                         JUSTONEAPI_MAX_PAGES
    since      only notes published since: 2026-11-20, an ISO 8601
               time, or last (the job folder's last crawl)           none
    Several values, comma-separated, crawl every combination.
    """

    name = "note_search"

    def __init__(self, **kwargs: Any) -> None:
        # Checked on their own here; against the settings at start-up (run/startup.py).
        self.args = SearchArgs.parse(**{k: v for k, v in kwargs.items() if k not in ("name", "start_urls")})
        super().__init__(**{k: v for k, v in kwargs.items() if k.startswith("_")})

    @property
    def state(self) -> CrawlState:
        return crawl_state(self.crawler)

    @property
    def config(self) -> ApiConfig:
        return self.state.config

    @property
    def max_pages(self) -> int:
        return self.args.max_pages or self.config.max_pages

    @cached_property
    def since(self) -> int | None:
        """The cutoff (epoch seconds) of an incremental crawl, or None."""
        if self.args.since != "last":
            return self.args.since  # type: ignore[return-value]
        started = self.state.last_crawl_started()
        if started is None:
            logger.info("-a since=last: this is the job's first crawl, so every note counts")
            return None
        logger.info("-a since=last: notes published since %s, when the job's last crawl began", started)
        return int(datetime.fromisoformat(started).timestamp())

    def queries(self) -> Iterator[api.Query]:
        return self.args.queries()

    async def start(self) -> AsyncIterator[scrapy.Request]:
        if self.args.keywords is None:
            logger.info("No keywords: working on the queries already in Redis")
            return
        scheduler = self.crawler.engine.scheduler
        for n, query in enumerate(self.queries()):
            while scheduler is not None and len(scheduler) >= START_WINDOW:
                await asyncio.sleep(START_POLL)
            if n % START_YIELD == START_YIELD - 1:
                await asyncio.sleep(0)  # let answers in, and a Ctrl-C, between batches of pushes
            yield self.page_request(SearchCall(query, 1, 0, self.max_pages, self.since, self.args.details))

    def page_request(self, call: SearchCall) -> scrapy.Request:
        url = api.search_url(self.config.base_url, call.query.params(call.page, self.config.note_time_style))
        return scrapy.Request(
            url,
            callback=self.parse,
            errback=self.page_error,
            meta={Meta.CALL: call},
            priority=call.page,  # finish started queries before opening new ones
        )

    def detail_request(self, call: DetailCall) -> scrapy.Request:
        """A held note's detail call (distributed: the page script queues it, any worker makes it)."""
        return scrapy.Request(
            api.detail_url(self.config.base_url, call.note_id),
            callback=self.parse_detail,
            errback=self.detail_error,
            meta={Meta.CALL: call},
            priority=DETAIL_PRIORITY,  # before any page: a held note goes out soon, and Redis holds few
        )  # filtered by its note: one detail call per note and crawl (its retries are not)

    async def parse_detail(self, response: DetailResponse) -> AsyncIterator[Any]:
        if (item := await self.deliver_held(response.request, response=response)) is not None:
            yield item

    async def detail_error(self, failure: Failure) -> AsyncIterator[Any]:
        if (item := await self.deliver_held(failure.request, failure=failure)) is not None:  # type: ignore[attr-defined]
            yield item

    async def deliver_held(self, request: scrapy.Request, response: Any = None, failure: Any = None) -> Any:
        """Distributed: a held note's detail call ended (its answer, or the failure its errback got): the
        note goes out whole, once, with the call's ack (``PageStore.deliver_held``); None when not delivered
        here (delivered before by another worker, or the crawl stopped before the call: the note stays
        held and its call goes back to the queue when this worker closes)."""
        crawler = self.crawler
        detail: dict[str, Any] | None = None
        if failure is None:
            if isinstance(response, DetailResponse):
                status, detail = api.Details.FETCHED, response.detail
            else:  # an answer the policy did not read (another component's): no details
                record_failed_page(crawler, request, f"HTTP {response.status}, not an answer of the API")
                status = api.Details.FAILED
        elif failure.check(NoteGone):
            status = api.Details.NOTE_GONE
        elif stopping(crawler).now():
            return None
        else:
            if not failure.check(Accounted):
                record_failed_page(crawler, request, f"{failure.type.__name__}: {failure.getErrorMessage()}")
            status = api.Details.FAILED
        try:
            item = await self.state.pages.deliver_held(request, status.value, detail)
        finally:  # stored: the throttle may send the next call
            crawler.signals.send_catch_log(signals.page_stored, request=request)
        if item is not None and status is api.Details.FETCHED:
            crawler.stats.inc_value(Stat.DETAILS_FETCHED)
        return item

    def parse(self, response: ApiResponse) -> Iterator[Any]:
        """The page's notes as items, then the next page while the query goes on."""
        call, outcome = response.call, response.outcome
        note_time_sent = call.query.params(call.page, self.config.note_time_style).get("noteTime")
        fetched_at = api.now_iso()
        for rank, note in outcome.notes:
            yield api.note_item(
                note,
                query=call.query,
                note_time_sent=note_time_sent,
                page=call.page,
                rank=rank,
                fetched_at=fetched_at,
                keep_raw=self.config.keep_raw,
            )
        if outcome.goes_on:
            yield self.page_request(call.next_page(outcome.next_rank))

    def page_error(self, failure: Failure) -> None:
        """Every end of a request that is no page read comes here: the project's own components have
        already recorded theirs (``Accounted``: a failed page, a rejected query, a stop, a call not
        sent); any other (an ``IgnoreRequest`` from a component the project did not write, such as
        Scrapy's HttpCompressionMiddleware dropping a body over DOWNLOAD_MAXSIZE, or any error) is
        a failed page, so that no page disappears (and, distributed, its lease is acked)."""
        if failure.check(Accounted):
            return
        name = failure.type.__name__ if failure.type else "error"
        reason = f"{name}: {failure.getErrorMessage()}"
        if failure.check(IgnoreRequest):
            reason = f"dropped by another component ({reason})"
        record_failed_page(self.crawler, failure.request, reason)  # type: ignore[attr-defined]
