"""The gate every API request passes on its way out.

In order: refuse once the crawl is stopping; wait out the request's retry
backoff; wait for the token's rate limiter; count the call against
``JUSTONEAPI_MAX_REQUESTS`` and stop the crawl when the budget is spent.
Requests wait here, inside the downloader (so waits are bounded by
``CONCURRENT_REQUESTS``), and every wait ends early when the crawl stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from scrapy.exceptions import IgnoreRequest

from rednote_crawl import signals, stops
from rednote_crawl.search import NOT_BEFORE_META, call_of, stop_crawl
from rednote_crawl.state import crawl_state

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
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
        self.state = crawl_state(crawler)
        self.limiter = self.state.rate
        self.stats = crawler.stats
        self.stopping: str | None = None
        self._stopped = asyncio.Event()
        self._backoff = WallClock(self.stats, "justoneapi/retry/backoff_seconds")
        self._held = WallClock(self.stats, "justoneapi/ratelimit/held_seconds")
        crawler.signals.connect(self._on_stopping, signal=signals.crawl_stopping)
        crawler.signals.connect(self._on_rate_limited, signal=signals.rate_limited)
        crawler.signals.connect(self._on_page_paid, signal=signals.page_paid)
        crawler.signals.connect(self._on_not_delivered, signal=signals.call_not_delivered)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TokenThrottleMiddleware:
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        if call_of(request) is None:
            return
        self._check_open()
        not_before = request.meta.get(NOT_BEFORE_META)
        if not_before and (backoff := not_before - time.time()) > 0:
            with self._backoff:
                await self._sleep(backoff)
            self._check_open()
        with self._held:
            await self.limiter.acquire(self._sleep)
        self._check_open()
        if (event := await self.state.spend_call(self._sleep)) is not None:
            if event.by is None and event.reason == stops.BUDGET_SPENT.reason:
                logger.warning("Stopping the crawl: %s (JUSTONEAPI_MAX_REQUESTS)", event.message)
            stop_crawl(self.crawler, event)
            self._check_open()
        self.stats.inc_value("justoneapi/requests/sent")

    async def _sleep(self, seconds: float) -> bool:
        """Sleep; wake as soon as the crawl stops (ours, or Scrapy's shutdown) and return False then."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping_now():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=min(left, STOP_POLL))
        return not self._stopping_now()

    def _stopping_now(self) -> bool:
        if self.stopping is None and not self.crawler.crawling:
            self.stopping = "shutdown"
        return self.stopping is not None

    def _check_open(self) -> None:
        if self._stopping_now():
            self.stats.inc_value("justoneapi/requests/not_sent")
            raise IgnoreRequest(f"not sent: the crawl is stopping ({self.stopping})")

    def _on_stopping(self, event: stops.StopEvent) -> None:
        self.stopping = self.stopping or event.reason
        self._stopped.set()

    def _on_rate_limited(self, retry_after: float | None) -> None:
        before = self.limiter.limit
        self.limiter.slow_down(retry_after)
        logger.debug("Rate limited: the token's rate is %.2f calls/s (limit %s)", self.limiter.rate, self.limiter.limit)
        self.stats.set_value("justoneapi/ratelimit/rate", round(self.limiter.rate, 3))
        if (limit := self.limiter.limit) is not None and limit != before:
            self.stats.set_value("justoneapi/ratelimit/limit", round(limit, 3))
            self.state.remember_limit(limit)

    def _on_page_paid(self, request: Request) -> None:
        before = self.limiter.rate
        self.limiter.speed_up()
        if self.limiter.rate != before:
            logger.debug("The token's rate: %.2f calls/s (probing upward)", self.limiter.rate)

    def _on_not_delivered(self, request: Request) -> None:
        """The call never left the machine: it is no call sent, and the budget gets it back."""
        self.stats.inc_value("justoneapi/requests/sent", -1)
        self.stats.inc_value("justoneapi/requests/not_delivered")
        self.state.refund_call()
