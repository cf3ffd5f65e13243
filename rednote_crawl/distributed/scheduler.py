"""The scheduler of a distributed crawl: the queue is in Redis, leased, never popped.

Scrapy asks its scheduler synchronously (``next_request``, ``has_pending_requests``), and a
worker must never wait on Redis in the reactor's thread. So this scheduler keeps a small local
buffer of requests leased from Redis, refilled in the background (one script call leases a
batch), and sends what it is given to Redis through the outbox (one pipeline per batch).
Leases hold while a request waits in the buffer (the heartbeat renews them), and a worker
that closes gives back what it did not send.

What scrapy-redis provides, and why the rest is ours (docs/decisions.md): its connection
helper, its setting names (``REDIS_URL``, ``REDIS_PARAMS``, ``MAX_IDLE_TIME_BEFORE_CLOSE``), its
key names and its dupefilter's fingerprints. Its scheduler pops requests (a worker killed with
``kill -9`` loses them), pickles them, and talks to Redis with blocking calls; its
dupefilter check and its push are two calls (a kill between them loses a request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from scrapy import signals as scrapy_signals
from scrapy.core.scheduler import BaseScheduler
from scrapy.utils.defer import deferred_from_coro

from rednote_crawl.names import Meta, Stat
from rednote_crawl.state.redis import redis_state
from rednote_crawl.state.redis.client import REDIS_ERRORS

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from twisted.internet.defer import Deferred

logger = logging.getLogger(__name__)

SPARE = 1  # requests a worker leases beyond those it is sending


class LeasedScheduler(BaseScheduler):
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.state = redis_state(crawler)
        self.shared = self.state.shared
        self.book = self.state.leases
        self.buffer = self.state.buffer
        # Leased and not sent yet (in the buffer, or in the engine waiting for the token's rate or a
        # free slot): at most this many. A worker holds what it is sending plus this small spare, so
        # a worker started later finds the rest in the queue (issue 20: even sharing).
        self.target = max(1, min(SPARE, crawler.settings.getint("CONCURRENT_REQUESTS") // 4))
        self.handed: set[str] = set()  # leases given to the engine that have not reached the downloader yet
        self.starved = False  # the engine asked and got nothing: hand it the next request
        self._wanted = asyncio.Event()
        self._refill: asyncio.Task[None] | None = None
        crawler.signals.connect(self._sent, signal=scrapy_signals.request_reached_downloader)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> LeasedScheduler:
        return cls(crawler)

    def open(self, spider: object) -> None:
        self._refill = asyncio.get_running_loop().create_task(self._refill_loop())

    def close(self, reason: str) -> Deferred[None]:
        """Give back the requests not sent; the shared queue stays (``scrapy redis reset`` clears it)."""
        if self._refill is not None:
            self._refill.cancel()
        return deferred_from_coro(self.state.leave())

    def enqueue_request(self, request: Request) -> bool:
        if request.meta.pop(Meta.HANDOFF, False):
            self.buffer.appendleft(request)
            return True
        if request.meta.pop(Meta.STORED, False):
            return True  # pushed with its page (scripts.PAGE)
        replaces = request.meta.pop(Meta.LEASE, "")
        if replaces:
            self.book.done(replaces)  # a retry: it replaces its request in the same script
        id_, encoded, score, fingerprint, starts_query = self.state.codec.push(request, replaces)
        self.shared.push([(id_, encoded, score, fingerprint, replaces, starts_query)], self._pushed(starts_query))
        self.stats.inc_value("scheduler/enqueued/redis")
        return True

    def _pushed(self, starts_query: bool) -> Callable[[list[int] | None], None]:
        def count(answer: list[int] | None) -> None:
            if answer is None or answer[0] or self.stats is None:
                return
            self.stats.inc_value(Stat.REDIS_FILTERED)
            if starts_query:
                if not self.stats.get_value(Stat.REDIS_QUERIES_KNOWN):
                    logger.warning(
                        "A query seeded now is already in this crawl (seeded before, perhaps already done): it is "
                        "not asked for again. To crawl known keywords anew, start a new crawl with "
                        "`scrapy redis reset`"
                    )
                self.stats.inc_value(Stat.REDIS_QUERIES_KNOWN)

        return count

    def next_request(self) -> Request | None:
        if self.unsent < self.target:
            self._wanted.set()
        if self.buffer:
            request = self.buffer.popleft()
            if lease := request.meta.get(Meta.LEASE):
                self.handed.add(lease)
            return request
        self.starved = True
        return None

    @property
    def unsent(self) -> int:
        """Requests this worker holds and has not sent: in the buffer, or handed to the engine and waiting."""
        self.handed &= self.book.held  # done or given back meanwhile
        return len(self.buffer) + len(self.handed)

    def _sent(self, request: Request, spider: object = None) -> None:
        """A request reached the downloader (the throttle let it go): lease the next one."""
        if self.handed:
            self.handed.discard(request.meta.get(Meta.LEASE, ""))
            self._wanted.set()

    def has_pending_requests(self) -> bool:
        """Work left anywhere in the crawl: here, on its way to Redis, queued or leased by any worker."""
        return bool(self.buffer or self.shared.outbox or any(self.state.remote))

    def __len__(self) -> int:
        """Requests waiting: in the buffer, on their way to Redis, and queued there (as last seen). The
        spider's start() waits while they are many, so a million keywords are seeded as the workers
        drain the queue."""
        return len(self.buffer) + len(self.shared.outbox) + self.state.remote[0]

    async def _refill_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), timeout=self.shared.beat)
            self._wanted.clear()
            while self.unsent < self.target and not self.shared.lost:
                try:
                    if not await self._lease(self.target - self.unsent):
                        break
                except REDIS_ERRORS as exc:
                    self.shared.health.failed(exc)
                    break
                except Exception:  # the loop must not die
                    logger.exception("Taking requests from Redis failed")
                    break

    async def _lease(self, how_many: int) -> int:
        taken = await self.shared.pop(how_many)
        self.shared.health.ok()
        if taken is None:
            return 0
        queued, leased, requests = taken
        self.state.remote = (queued, leased)
        for lease, encoded in requests:
            try:
                request = self.state.codec.decode(encoded)
            except Exception as exc:  # not a request of this project (or of this version): set it aside
                logger.error(
                    "Set request %s aside in %s: this worker cannot read it (%s)", lease, self.shared.keys.unreadable, exc
                )
                self.stats.inc_value(Stat.REDIS_UNREADABLE)
                self.shared.set_aside(lease, encoded)
                continue
            request.meta[Meta.LEASE] = lease
            self.book.taken(lease)
            self.stats.inc_value("scheduler/dequeued/redis")
            self.buffer.append(request)
        if self.starved and self.buffer:
            # An idle engine asks again only every 5 s: hand it a request now (engine.crawl wakes it).
            self.starved = False
            request = self.buffer.popleft()
            request.meta[Meta.HANDOFF] = True
            self.crawler.engine.crawl(request)
        return len(requests)
