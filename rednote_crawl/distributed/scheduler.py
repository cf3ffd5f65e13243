"""scrapy-redis's scheduler, fixed for a crawl that must lose nothing.

scrapy-redis 0.9.1 as it is, measured on Scrapy 2.19: a worker killed with ``kill -9`` loses its
popped requests for good (their fingerprints stay in the dupefilter), one worker that closes
without ``SCHEDULER_PERSIST`` deletes every worker's queue, and requests are pickled (the URL in
clear; whoever can write to Redis can run code on the workers). Here:

- Requests are leased from Redis, not popped (``SharedCrawl.pop``): a worker killed with
  ``kill -9`` gives its requests back when their leases run out.
- The dupefilter check and the push are one script: no kill between them loses a request.
- A retry replaces its request in the same script, so the retry and the ack cannot part.
- Requests are stored as JSON, never pickle: nothing in Redis can run code on a worker.
- ``SCHEDULER_PERSIST`` is always on: no worker's shutdown deletes the shared queue or
  dupefilter; ``scrapy redis reset`` does, when asked.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import orjson
from scrapy.utils.asyncio import create_looping_call
from scrapy.utils.request import request_from_dict
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.queue import Base
from scrapy_redis.scheduler import Scheduler

from rednote_crawl.search import CALL_META, SearchCall
from rednote_crawl.state import crawl_state
from rednote_crawl.state.redis.leases import LEASE_META, PARENT_META
from rednote_crawl.state.redis.shared import REDIS_ERRORS

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.crawler import Crawler

    from rednote_crawl.state.redis import RedisState

logger = logging.getLogger(__name__)

WAKE_EVERY = 1.0  # seconds: how soon an idle worker notices new work in Redis
QUEUE_READ_EVERY = 0.2  # seconds: how often len() reads the shared queue's size
HANDOFF_META = "justoneapi_handoff"  # a request leased by _wake(), on its way back in through engine.crawl()


class JsonRequestQueue(Base):
    """Encodes requests as JSON for the shared queue; ``SharedCrawl`` stores and leases them."""

    def __init__(self, server: Any, spider: Spider, key: str, serializer: Any = orjson) -> None:
        super().__init__(server, spider, key, serializer)

    def _encode_request(self, request: Request) -> str:
        data = request.to_dict(spider=self.spider)
        meta = dict(data.get("meta") or {})
        if isinstance(call := meta.get(CALL_META), SearchCall):
            meta[CALL_META] = call.to_json()
        data["meta"] = meta
        data["headers"] = {k.decode("latin-1"): [v.decode("latin-1") for v in vs] for k, vs in data["headers"].items()}
        data["body"] = data["body"].decode("latin-1")
        try:
            return orjson.dumps(data).decode()
        except TypeError as exc:
            raise TypeError(f"a request to {request.url} cannot be stored in Redis as JSON: {exc}") from None

    def _decode_request(self, encoded: str) -> Request:
        data = orjson.loads(encoded)
        meta = data.get("meta") or {}
        if isinstance(call := meta.get(CALL_META), list):
            meta[CALL_META] = SearchCall.from_json(call)
        data["body"] = data.get("body", "").encode("latin-1")
        return request_from_dict(data, spider=self.spider)

    def __len__(self) -> int:
        return self.server.zcard(self.key)


class LeasedScheduler(Scheduler):
    crawler: Crawler
    state: RedisState

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> LeasedScheduler:
        state: RedisState = crawl_state(crawler)  # type: ignore[assignment]
        shared = state.shared
        scheduler = cls(
            server=shared.server,
            persist=True,
            queue_key=shared.keys.requests,
            queue_cls=f"{JsonRequestQueue.__module__}.{JsonRequestQueue.__qualname__}",
            dupefilter_key=shared.keys.dupefilter,
            dupefilter=RFPDupeFilter(shared.server, key=shared.keys.dupefilter),
            serializer=orjson,
        )
        scheduler.stats = crawler.stats
        scheduler.crawler = crawler
        scheduler.state = state
        scheduler.shared = shared
        scheduler.book = state.leases
        scheduler.handoff = state.buffer
        return scheduler

    def open(self, spider: Spider) -> None:
        self.spider = spider
        self.queue = JsonRequestQueue(self.server, spider, self.queue_key)
        self._queued, self._queue_read_at = 0, -math.inf
        self.waker = create_looping_call(self._wake)
        self.waker.start(WAKE_EVERY, now=False)

    def close(self, reason: str) -> None:
        """Keep the shared state: other workers use it (scrapy-redis deletes it unless persisting)."""
        if self.waker.running:
            self.waker.stop()

    def _wake(self) -> None:
        """An idle engine asks again only every 5 s: hand it work as soon as Redis has some."""
        if self.crawler.engine.downloader.active or self.handoff or not self.shared.health.up:
            return
        try:
            request = self._take()
        except Exception:  # a looping call stops for good at its first exception
            logger.exception("Taking a request from Redis failed")
            return
        if request is not None:
            request.meta[HANDOFF_META] = True
            self.crawler.engine.crawl(request)  # comes back through enqueue_request, into self.handoff

    def flush(self) -> None:
        raise RuntimeError("the shared queue is cleared only by `scrapy redis reset`")

    def enqueue_request(self, request: Request) -> bool:
        if request.meta.pop(HANDOFF_META, False):
            self.handoff.append(request)
            return True
        replaces = request.meta.pop(LEASE_META, "")
        parent = request.meta.pop(PARENT_META, None)
        if replaces:
            self.book.replaced(replaces)
        fingerprint = "" if request.dont_filter else self.df.request_fingerprint(request)
        call = request.meta.get(CALL_META)
        query_start = isinstance(call, SearchCall) and call.page == 1 and not replaces
        self.shared.push(self.queue._encode_request(request), -request.priority, fingerprint, replaces, query_start)
        if parent is not None:
            self.book.output_stored(parent)  # its ack goes into the outbox after this push
        self.stats.inc_value("scheduler/enqueued/redis")
        return True

    def next_request(self) -> Request | None:
        if self.handoff:
            return self.handoff.popleft()
        return self._take()

    def _take(self) -> Request | None:
        """Lease the next request from Redis."""
        if not self.shared.flush():
            return None
        try:
            taken = self.shared.pop()
        except REDIS_ERRORS as exc:
            self.shared.health.failed(exc)
            return None
        self.shared.health.ok()
        if taken is None:
            return None
        lease, encoded = taken
        try:
            request = self.queue._decode_request(encoded or "")
        except Exception as exc:  # not a request of this project (or of this version): set it aside
            logger.error(
                "Set request %s aside in %s: this worker cannot read it (%s)", lease, self.shared.keys.unreadable, exc
            )
            self.stats.inc_value("justoneapi/redis/requests_unreadable")
            self.shared.set_aside(lease, encoded or "")
            return None
        request.meta[LEASE_META] = lease
        self.book.taken(lease)
        self.stats.inc_value("scheduler/dequeued/redis")
        return request

    def has_pending_requests(self) -> bool:
        if self.handoff:
            return True
        try:
            return self.shared.busy()
        except REDIS_ERRORS as exc:
            self.shared.health.failed(exc)
            return True  # unknown: keep the worker open and asking

    def __len__(self) -> int:
        """Requests waiting: taken ones not handed on yet, pushes not yet stored, and the shared
        queue (read from Redis at most every QUEUE_READ_EVERY seconds). The spider's start() waits
        while they are many, so a million keywords are seeded as the workers drain the queue."""
        now = time.monotonic()
        if now - self._queue_read_at >= QUEUE_READ_EVERY:
            self._queue_read_at = now
            try:
                self._queued = len(self.queue)
            except REDIS_ERRORS as exc:
                self.shared.health.failed(exc)
        return len(self.handoff) + len(self.shared.outbox) + self._queued
