"""A worker of a distributed crawl: heartbeat, crawl-wide stops, idle close, progress.

Every ``HEARTBEAT`` seconds: send the outbox, then in one call renew this worker's leases, say
it is alive and look for a stop set by another worker. A worker that finds the crawl gone from
Redis (lost or reset under it: ``SharedCrawl.lost``) stops with ``justoneapi_redis_state_lost``. A stop (a fatal answer, the budget) seen by any
worker is written to Redis and stops all of them. A worker closes after
``MAX_IDLE_TIME_BEFORE_CLOSE`` seconds (scrapy-redis's setting; 0: never) during which the
whole crawl had no work: nothing queued and nothing taken by any worker.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from scrapy import signals as scrapy_signals
from scrapy.exceptions import DontCloseSpider
from scrapy.utils.asyncio import create_looping_call

from rednote_crawl import signals, stops
from rednote_crawl.search import close_spider, stop_crawl
from rednote_crawl.state import crawl_state
from rednote_crawl.state.redis.shared import REDIS_ERRORS, display_url
from rednote_crawl.stops import StopEvent

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from rednote_crawl.state.redis import RedisState

logger = logging.getLogger(__name__)

HEARTBEAT = 1.0  # seconds


class DistributedWorker:
    def __init__(self, crawler: Crawler) -> None:
        state: RedisState = crawl_state(crawler)  # type: ignore[assignment]
        self.crawler = crawler
        self.shared = state.shared
        self.book = state.leases
        self.stats = crawler.stats
        self.max_idle = crawler.settings.getfloat("MAX_IDLE_TIME_BEFORE_CLOSE")
        self.progress_every = crawler.settings.getfloat("LOGSTATS_INTERVAL")
        self.idle_since: float | None = None
        self.stopping = False
        self.last_progress = time.monotonic()
        self.task: Any = None
        crawler.signals.connect(self.spider_opened, signal=scrapy_signals.spider_opened)
        crawler.signals.connect(self.spider_idle, signal=scrapy_signals.spider_idle)
        crawler.signals.connect(self.spider_closed, signal=scrapy_signals.spider_closed)
        crawler.signals.connect(self.crawl_stopping, signal=signals.crawl_stopping)
        crawler.signals.connect(self.page_paid, signal=signals.page_paid)
        crawler.signals.connect(self.page_failed, signal=signals.page_failed)
        crawler.signals.connect(self.query_rejected, signal=signals.query_rejected)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DistributedWorker:
        return cls(crawler)

    def spider_opened(self) -> None:
        self.task = create_looping_call(self.heartbeat)
        self.task.start(HEARTBEAT, now=False)  # (closing the spider while it opens skips its summary)
        try:
            status = self.shared.status()
        except REDIS_ERRORS as exc:
            self.shared.health.failed(exc)
            return
        logger.info(
            "Distributed crawl on Redis at %s as worker %s: %d requests queued, %d in flight, %d notes so far",
            display_url(self.shared.url),
            self.shared.worker_id,
            status["queued"],
            status["in_flight"],
            status["notes"],
        )

    def heartbeat(self) -> None:
        """Never raises: a looping call stops for good at its first exception."""
        try:
            self._beat()
        except REDIS_ERRORS as exc:
            self.shared.health.failed(exc)
        except Exception:
            logger.exception(
                "The heartbeat of worker %s failed; it beats again in %s s", self.shared.worker_id, HEARTBEAT
            )

    def _beat(self) -> None:
        if not self.shared.flush() or self.lost_crawl():
            return
        # One call: renew our leases (after an outage they must not look expired for longer than needed),
        # say this worker is alive, read the crawl-wide stop, check the crawl is still in Redis.
        stop = self.book.renew(HEARTBEAT)
        self.shared.health.ok()
        if self.lost_crawl():
            return
        if stop and not self.stopping:
            self.stopping = True
            stop_crawl(self.crawler, StopEvent(stop["reason"], stop.get("message", ""), by=stop.get("worker", "?")))
        self._close_if_idle()
        if self.progress_every and time.monotonic() - self.last_progress >= self.progress_every:
            self.last_progress = time.monotonic()
            self.log_progress()

    def lost_crawl(self) -> bool:
        """The crawl is gone from Redis (found by any script): stop, never say it finished."""
        if not self.shared.lost:
            return False
        if not self.stopping:
            self.stopping = True
            stop_crawl(self.crawler, StopEvent(stops.REDIS_STATE_LOST.reason, self.shared.lost))
        return True

    def log_progress(self) -> None:
        try:
            status = self.shared.status()
        except REDIS_ERRORS:
            return
        logger.info(
            "Crawl-wide: %d queries, %d requests queued, %d in flight, %d pages paid, %d unique notes, %d workers",
            status["stats"].get("queries", 0),
            status["queued"],
            status["in_flight"],
            status["stats"].get("pages_paid", 0),
            status["notes"],
            len(status["workers"]),
        )

    def spider_idle(self) -> None:
        """This worker has nothing to do: stay open; the heartbeat closes it once the whole crawl is idle."""
        if self.idle_since is None and not self.stopping:
            self.idle_since = time.monotonic()
        raise DontCloseSpider

    def _close_if_idle(self) -> None:
        if self.idle_since is None or self.stopping:
            return
        if not self.crawler.engine.spider_is_idle() or self.shared.busy():
            self.idle_since = None  # work came: the idle time starts again next time
        elif self.max_idle > 0 and time.monotonic() - self.idle_since >= self.max_idle:
            logger.info("The crawl has had no work for %.0f s (MAX_IDLE_TIME_BEFORE_CLOSE): closing", self.max_idle)
            self.stopping = True
            close_spider(self.crawler, "finished")

    def crawl_stopping(self, event: StopEvent) -> None:
        self.stopping = True

    def page_paid(self, request: Any) -> None:
        self.shared.count("pages_paid")

    def page_failed(self, request: Any, reason: str) -> None:
        self.shared.count("pages_failed")

    def query_rejected(self, request: Any, message: str) -> None:
        self.shared.count("queries_rejected")

    def spider_closed(self, reason: str) -> None:
        if self.task is not None and self.task.running:
            self.task.stop()
        if released := self.book.release_all():
            self.stats.set_value("justoneapi/redis/requests_given_back", released)
            logger.info("Gave %d requests this worker had taken back to the shared queue", released)
        try:
            self.shared.flush()
            self.shared.leave()
        except REDIS_ERRORS as exc:
            self.shared.health.failed(exc)
        if self.shared.outbox:
            logger.warning(
                "Redis is still away: %d writes of this worker are not stored; the requests they finish "
                "go back to the queue when their leases run out, and are done again",
                len(self.shared.outbox),
            )
