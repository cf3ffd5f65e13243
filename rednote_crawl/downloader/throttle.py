"""The gate every API request passes on its way out.

In order: refuse once the crawl is stopping; wait out the request's retry
backoff; wait until fewer than ``CONCURRENT_REQUESTS`` calls are at risk; wait for the
token's rate limiter; count the call against ``JUSTONEAPI_MAX_REQUESTS`` and stop the
crawl when the budget is spent.

A call is at risk from the moment it is sent until its page is stored (``signals.page_stored``)
or it turns out to be no paid page. Scrapy frees a downloader slot as soon as an answer
arrives, before the spider and the crawl state have seen it; without this window a ``kill -9``
could cost more pages than ``CONCURRENT_REQUESTS`` (answers waiting for the spider or for the
job database's thread), and each would be paid for again.
Requests wait here, inside the downloader (so waits are bounded by
``CONCURRENT_REQUESTS``), and every wait ends early when the crawl stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from rednote_crawl import signals, stops
from rednote_crawl.names import Meta, Stat
from rednote_crawl.search import Accounted, DetailCall, call_of, stop_crawl, stopping
from rednote_crawl.state import crawl_state

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.statscollectors import StatsCollector

logger = logging.getLogger(__name__)

STOP_POLL = 1.0  # seconds: how soon a waiting request notices a Ctrl-C (which sends no signal)


class WallClock:
    """Adds to a stat the wall-clock time during which at least one request is inside ``with``.

    Waits overlap (sixteen requests can wait at once), so summing them would say little.
    """

    def __init__(self, stats: StatsCollector, key: str) -> None:
        self.stats, self.key = stats, key
        self.inside = 0
        self.since = 0.0

    def __enter__(self) -> None:
        if self.inside == 0:
            self.since = time.monotonic()
        self.inside += 1

    def __exit__(self, *exc: object) -> None:
        self.inside -= 1
        if self.inside == 0:
            self.stats.inc_value(self.key, time.monotonic() - self.since)


class TokenThrottleMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.account = crawl_state(crawler).account
        self.limiter = self.account.rate
        self.stats = crawler.stats
        self.stopping = stopping(crawler)
        self._backoff = WallClock(self.stats, Stat.BACKOFF_SECONDS)
        self._held = WallClock(self.stats, Stat.RATE_HELD_SECONDS)
        self._held_by_ceiling = WallClock(self.stats, Stat.RATE_HELD_BY_CEILING_SECONDS)
        self._storing = WallClock(self.stats, Stat.STORAGE_WAIT_SECONDS)
        self.window = crawler.settings.getint("CONCURRENT_REQUESTS")
        self._in_transit: set[Request] = set()  # sent, no answer yet
        self._unstored: set[Request] = set()  # paid, not stored yet
        self._room = asyncio.Event()
        crawler.signals.connect(self._on_rate_limited, signal=signals.rate_limited)
        crawler.signals.connect(self._on_page_paid, signal=signals.page_paid)
        crawler.signals.connect(self._on_not_delivered, signal=signals.call_not_delivered)
        crawler.signals.connect(self._on_page_stored, signal=signals.page_stored)
        crawler.signals.connect(self._on_page_failed, signal=signals.page_failed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TokenThrottleMiddleware:
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        if call_of(request) is None:
            return
        self._check_open()
        not_before = request.meta.get(Meta.NOT_BEFORE)
        if not_before and (backoff := not_before - time.time()) > 0:
            with self._backoff:
                await self._sleep(backoff)
            self._check_open()
        if self.at_risk >= self.window > 0:
            with self._storing:
                await self._wait_for_room()
            self._check_open()
        # At JUSTONEAPI_MAX_RPS the ceiling holds the calls, not the token's limit: the summary says which.
        with self._held_by_ceiling if self.limiter.at_ceiling else self._held:
            event = await self.account.book_call(self._sleep)
        if event is None and self._stopping_now():
            self.account.refund_call()  # booked and counted, never sent: the budget gets it back
        self._check_open()
        if event is not None:
            if event.by is None and event.reason == stops.BUDGET_SPENT.reason:
                logger.warning("Stopping the crawl: %s (JUSTONEAPI_MAX_REQUESTS)", event.message)
            stop_crawl(self.crawler, event)
            self._check_open()
        self.stats.inc_value(Stat.REQUESTS_SENT)
        if isinstance(call_of(request), DetailCall):
            self.stats.inc_value(Stat.DETAIL_REQUESTS_SENT)  # counted apart, and in REQUESTS_SENT
        self._in_transit.add(request)

    def process_response(self, request: Request, response: Response) -> Response:
        self._answered(request)  # before ApiPolicyMiddleware (a lower order) says whether it was paid
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        self._answered(request)

    @property
    def at_risk(self) -> int:
        """Calls sent whose page is not stored yet: what a kill now would make us pay again."""
        return len(self._in_transit) + len(self._unstored)

    async def _wait_for_room(self) -> None:
        while self.at_risk >= self.window and not self._stopping_now():
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), timeout=STOP_POLL)

    def _answered(self, request: Request) -> None:
        if request in self._in_transit:
            self._in_transit.discard(request)
            self._room.set()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep; wake as soon as the crawl stops (ours, or Scrapy's shutdown) and return False then."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping_now():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.woken.wait(), timeout=min(left, STOP_POLL))
        return not self._stopping_now()

    def _stopping_now(self) -> bool:
        return self.stopping.now() is not None

    def _check_open(self) -> None:
        if reason := self.stopping.now():
            self.stats.inc_value(Stat.REQUESTS_NOT_SENT)
            raise Accounted(f"not sent: the crawl is stopping ({reason})")

    def _on_rate_limited(self, retry_after: float | None) -> None:
        before = self.limiter.limit
        self.limiter.slow_down(retry_after)
        logger.debug("Rate limited: the token's rate is %.2f calls/s (limit %s)", self.limiter.rate, self.limiter.limit)
        self.stats.set_value(Stat.RATE, round(self.limiter.rate, 3))
        if (limit := self.limiter.limit) is not None and limit != before:
            self.stats.set_value(Stat.RATE_LIMIT, round(limit, 3))
            self.account.remember_limit(limit)

    def _on_page_stored(self, request: Request) -> None:
        if request in self._unstored:
            self._unstored.discard(request)
            self._room.set()

    def _on_page_failed(self, request: Request, reason: str) -> None:
        """However it failed (dropped after its answer by any component, say), it is no longer at risk."""
        self._answered(request)
        self._on_page_stored(request)

    def _on_page_paid(self, request: Request) -> None:
        self._unstored.add(request)  # at risk until PageBookMiddleware has stored it
        before = self.limiter.rate
        self.limiter.speed_up()
        if self.limiter.rate != before:
            logger.debug("The token's rate: %.2f calls/s (probing upward)", self.limiter.rate)

    def _on_not_delivered(self, request: Request) -> None:
        """The call never left the machine: it is no call sent, and the budget gets it back."""
        self.stats.inc_value(Stat.REQUESTS_SENT, -1)
        self.stats.inc_value(Stat.REQUESTS_NOT_DELIVERED)
        self.account.refund_call()
