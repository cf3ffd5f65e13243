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

from rednote_crawl import signals
from rednote_crawl.config import ApiConfig
from rednote_crawl.distributed.account import SharedCallBudget, SharedRateLimiter
from rednote_crawl.distributed.shared import shared_crawl
from rednote_crawl.distributed.worker import follow_stop
from rednote_crawl.middlewares import NOT_BEFORE_META, query_of, stop_crawl
from rednote_crawl.ratelimit import AdaptiveRateLimiter

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.statscollectors import StatsCollector

logger = logging.getLogger(__name__)

BUDGET_SPENT = "justoneapi_budget_spent"
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


class CallBudget:
    """``JUSTONEAPI_MAX_REQUESTS`` calls for this crawl (SharedCallBudget: for all workers)."""

    def __init__(self, max_requests: int) -> None:
        self.max_requests = max_requests
        self.sent = 0

    async def spend(self, sleep: object = None) -> tuple[str, str, str] | None:
        """None: send the call. Else (reason, message, worker) of the stop."""
        if self.max_requests and self.sent >= self.max_requests:
            return BUDGET_SPENT, f"the budget of {self.max_requests} calls is spent", ""
        self.sent += 1
        return None


class TokenThrottleMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.config = ApiConfig.of(crawler)
        self.stats = crawler.stats
        self.shared = shared_crawl(crawler)
        if self.shared is None:
            self.limiter = AdaptiveRateLimiter(self.config.max_rps)
            self.budget: CallBudget | SharedCallBudget = CallBudget(self.config.max_requests)
        else:  # one rate and one budget for the token across all workers
            self.limiter = SharedRateLimiter(self.shared, self.config.max_rps)
            self.budget = SharedCallBudget(self.shared, self.config.max_requests, BUDGET_SPENT)
        self.stopping: str | None = None
        self._stopped = asyncio.Event()
        self._backoff = WallClock(self.stats, "justoneapi/retry/backoff_seconds")
        self._held = WallClock(self.stats, "justoneapi/ratelimit/held_seconds")
        crawler.signals.connect(self._on_stopping, signal=signals.crawl_stopping)
        crawler.signals.connect(self._on_rate_limited, signal=signals.rate_limited)
        crawler.signals.connect(self._on_page_paid, signal=signals.page_paid)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TokenThrottleMiddleware:
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        if query_of(request) is None:
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
        if (stop := await self.budget.spend(self._sleep)) is not None:
            reason, message, worker = stop
            if self.shared is not None and worker != self.shared.worker_id:
                follow_stop(self.crawler, reason, message, worker)
            else:
                if reason == BUDGET_SPENT:
                    logger.warning("Stopping the crawl: %s (JUSTONEAPI_MAX_REQUESTS)", message)
                stop_crawl(self.crawler, reason, message)
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

    def _on_stopping(self, reason: str, message: str) -> None:
        self.stopping = self.stopping or reason
        self._stopped.set()

    def _on_rate_limited(self, retry_after: float | None) -> None:
        self.limiter.slow_down(retry_after)
        self.stats.set_value("justoneapi/ratelimit/rate", round(self.limiter.rate, 3))

    def _on_page_paid(self, request: Request) -> None:
        self.limiter.speed_up()
