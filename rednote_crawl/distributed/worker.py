"""A worker of a distributed crawl: heartbeat, crawl-wide stops, idle close, progress.

Every ``JUSTONEAPI_REDIS_HEARTBEAT`` seconds, in one call: renew this worker's leases, say it is alive, look for
a stop set by another worker and read the crawl's figures (for the progress line and the
summary). A worker that finds the crawl gone from
Redis (lost or reset under it: ``SharedCrawl.lost``) stops with ``justoneapi_redis_state_lost``. A stop (a fatal answer, the budget) seen by any
worker is written to Redis and stops all of them. A worker closes after
``MAX_IDLE_TIME_BEFORE_CLOSE`` seconds (scrapy-redis's setting; 0: never) during which the
whole crawl had no work: nothing queued and nothing taken by any worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from scrapy import signals as scrapy_signals
from scrapy.exceptions import DontCloseSpider

from rednote_crawl import signals, stops
from rednote_crawl.names import Meta
from rednote_crawl.search import DetailCall, call_of, close_spider, stop_crawl, stopping
from rednote_crawl.state.redis import redis_state
from rednote_crawl.state.redis.client import REDIS_ERRORS, display_url
from rednote_crawl.stops import StopEvent

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)



def lease_of(request: Request | None) -> str | None:
    return request.meta.get(Meta.LEASE) if request is not None else None


class DistributedWorker:
    def __init__(self, crawler: Crawler) -> None:
        self.state = redis_state(crawler)
        self.crawler = crawler
        self.shared = self.state.shared
        self.book = self.state.leases
        self.stats = crawler.stats
        self.max_idle = crawler.settings.getfloat("MAX_IDLE_TIME_BEFORE_CLOSE")
        self.progress_every = crawler.settings.getfloat("LOGSTATS_INTERVAL")
        self.idle_since: float | None = None
        self.stopping = stopping(crawler)
        self.closing = False  # closing on its own: the crawl had no work for MAX_IDLE_TIME_BEFORE_CLOSE
        self.last_progress = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        crawler.signals.connect(self.spider_opened, signal=scrapy_signals.spider_opened)
        crawler.signals.connect(self.spider_idle, signal=scrapy_signals.spider_idle)
        crawler.signals.connect(self.spider_closed, signal=scrapy_signals.spider_closed)
        crawler.signals.connect(self.spider_error, signal=scrapy_signals.spider_error)
        crawler.signals.connect(self.page_failed, signal=signals.page_failed)
        crawler.signals.connect(self.query_rejected, signal=signals.query_rejected)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DistributedWorker:
        return cls(crawler)

    def spider_opened(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._heartbeats())
        logger.info(
            "Distributed crawl on Redis at %s as worker %s",
            display_url(self.shared.url),
            self.shared.worker_id,
        )

    async def _heartbeats(self) -> None:
        while not self.state.closing:
            await asyncio.sleep(self.shared.beat)
            if not self.state.closing:
                await self.heartbeat()

    async def heartbeat(self) -> None:
        """Never raises: the heartbeat must go on."""
        try:
            await self._beat()
        except REDIS_ERRORS as exc:
            self.shared.health.failed(exc)
        except Exception:
            logger.exception(
                "The heartbeat of worker %s failed; it beats again in %s s", self.shared.worker_id, self.shared.beat
            )

    async def _beat(self) -> None:
        if self.lost_crawl():
            return
        stop = await self.state.heartbeat()
        if self.lost_crawl() or not self.state.figures or self.state.closing:
            return
        if stop and not self.ending:
            stop_crawl(self.crawler, StopEvent(stop["reason"], stop.get("message", ""), by=stop.get("worker", "?")))
        self._close_if_idle()
        if self.progress_every and time.monotonic() - self.last_progress >= self.progress_every:
            self.last_progress = time.monotonic()
            self.log_progress()

    def lost_crawl(self) -> bool:
        """The crawl is gone from Redis (found by any script): stop, never say it finished."""
        if not self.shared.lost:
            return False
        if not self.ending:
            stop_crawl(self.crawler, StopEvent(stops.REDIS_STATE_LOST.reason, self.shared.lost))
        return True

    def log_progress(self) -> None:
        f = self.state.figures
        logger.info(
            "Crawl-wide: %d queries, %d requests queued, %d in flight, %d pages paid, %d unique notes, %d workers",
            f["queries"],
            f["queued"],
            f["in_flight"],
            f["pages_paid"],
            f["notes"],
            f["workers"],
        )

    def spider_idle(self) -> None:
        """This worker has nothing to do: stay open; the heartbeat closes it once the whole crawl is idle."""
        if self.idle_since is None and not self.ending:
            self.idle_since = time.monotonic()
        raise DontCloseSpider

    @property
    def ending(self) -> bool:
        """The crawl is stopping, or this worker is closing for idleness."""
        return self.closing or self.stopping.reason is not None

    def _close_if_idle(self) -> None:
        if self.ending:
            return
        if not self.crawler.engine.spider_is_idle():
            self.idle_since = None  # work came: the idle time starts again next time
        elif self.idle_since is None:
            # The heartbeat sees it first: the engine looks for idleness only every 5 s.
            self.idle_since = time.monotonic()
        elif self.max_idle > 0 and time.monotonic() - self.idle_since >= self.max_idle:
            logger.info("The crawl has had no work for %.0f s (MAX_IDLE_TIME_BEFORE_CLOSE): closing", self.max_idle)
            self.closing = True
            close_spider(self.crawler, stops.FINISHED)

    # --- requests done without a page to store: their leases end here -------------------------

    def spider_error(self, failure: Any, response: Any, **kwargs: Any) -> None:
        """The callback failed: the page is lost (Scrapy's spider_exceptions stats), not paid for again.
        Not a detail call's: its held note is delivered with its ack, or its call goes back at the close."""
        request = getattr(response, "request", None)
        if isinstance(call_of(request), DetailCall):
            return
        if (lease := lease_of(request)) is not None:
            self.book.finished(lease)

    def page_failed(self, request: Request, reason: str) -> None:
        if isinstance(call_of(request), DetailCall):
            return  # acked with its held note's delivery (scripts.DETAIL): an ack before it would lose the note
        if (lease := lease_of(request)) is not None:
            self.book.finished(lease, "pages_failed")

    def query_rejected(self, request: Request, message: str) -> None:
        if (lease := lease_of(request)) is not None:
            self.book.finished(lease, "queries_rejected")

    async def spider_closed(self, reason: str) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.shared.aclose()
