"""The Redis home of the crawl's state: one crawl shared by every worker (``REDIS_URL``).

- ``shared.py``  a worker's handle on Redis: the keys, the Lua scripts that keep every write
                 atomic and idempotent, the outbox that rides out outages
- ``leases.py``  the requests this worker holds, and when each is done
- ``account.py`` the token's rate and call budget, one for all workers
- ``drain.py``   the items list into a JSON Lines file, exactly once

The Scrapy components that only a Redis home has (the leased scheduler, the lease middleware,
the worker's heartbeat) are in ``rednote_crawl/distributed/``; the add-on registers them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson
import redis
from scrapy.exceptions import DropItem

from rednote_crawl import redaction, stops
from rednote_crawl.api import as_dict, dumps, now_iso
from rednote_crawl.config import ConfigError
from rednote_crawl.state import CrawlState, Sleep, Verdict
from rednote_crawl.state.limits import token_key
from rednote_crawl.state.redis.account import RETRY_REDIS, SharedCallBudget, SharedRateLimiter
from rednote_crawl.state.redis.leases import LeaseBook
from rednote_crawl.state.redis.shared import REDIS_ERRORS, SharedCrawl, check_reachable, connect, display_url

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

# token hash -> the limit learned for it (JSON); shared by every crawl on this Redis, kept by `reset`.
TOKEN_LIMITS = "justoneapi:token-limits"
SAFE_LEASE = 10  # seconds: leases are renewed every second, by Redis calls with 5 s timeouts


class RedisState(CrawlState):
    whole_crawl = False  # this worker sees its part; the crawl's totals are in Redis

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        url = self.config.redis_url
        assert url is not None, "RedisState needs REDIS_URL"
        server = connect(url, crawler.settings)
        self.shared = SharedCrawl(server, crawler.spidercls.name, url, self.config.redis_lease, crawler.stats)
        self.rate = SharedRateLimiter(self.shared, self.config.max_rps)
        self.budget = SharedCallBudget(self.shared, self.config.max_requests, stops.BUDGET_SPENT.reason)
        self.leases = LeaseBook(self.shared, crawler.stats)
        # Requests leased from Redis that the engine has not taken yet (the scheduler's local buffer).
        self.buffer: deque[Request] = deque()

    def open(self, settings: BaseSettings) -> None:
        """Redis must answer before the crawl starts: a wrong REDIS_URL is an error, not an outage."""
        check_reachable(self.shared.server, self.shared.url)
        try:
            self.shared.join()
            self.rate.start_at(self.learned_limit())
        except redis.RedisError as exc:
            url = display_url(self.shared.url)
            raise ConfigError(f"Redis at REDIS_URL={url!r} failed as the crawl started ({exc}); check it") from None
        if self.config.redis_lease < SAFE_LEASE:
            logger.warning(
                "JUSTONEAPI_REDIS_LEASE=%s: a lease this short can run out during one slow Redis call (5 s timeouts), "
                "and its page is then paid for twice; use %s or more outside tests",
                self.config.redis_lease,
                SAFE_LEASE,
            )

    def learned_limit(self) -> float | None:
        raw = self.shared.server.hget(TOKEN_LIMITS, token_key(self.config.token))
        return float(orjson.loads(raw)["limit"]) if raw else None

    def remember_limit(self, limit: float) -> None:
        entry = orjson.dumps({"limit": round(limit, 3), "at": now_iso()}).decode()
        self.shared.write(lambda: self.shared.server.hset(TOKEN_LIMITS, token_key(self.config.token), entry))

    async def claim(self, note_id: str, note: dict[str, Any]) -> Verdict:
        """Checked against ``seen_notes`` and appended to the items list in one script."""
        line = dumps(as_dict(note))
        while True:
            try:
                new = self.shared.add_note(note_id, line)
            except REDIS_ERRORS as exc:
                self.shared.health.failed(exc)
                await asyncio.sleep(RETRY_REDIS)
                continue
            self.shared.health.ok()
            if new is None:  # the crawl is gone from Redis: the worker is stopping (state_lost)
                raise DropItem(f"note {note_id} not delivered: {self.shared.lost}", log_level="DEBUG")
            return Verdict.NEW if new else Verdict.REPEATED

    async def spend_call(self, sleep: Sleep) -> stops.StopEvent | None:
        stop = await self.budget.spend(sleep)
        if stop is None:
            return None
        reason, message, worker = stop
        return stops.StopEvent(reason, message, by=None if worker == self.shared.worker_id else worker)

    def refund_call(self) -> None:
        self.shared.count("calls", -1)

    def record_stop(self, event: stops.StopEvent) -> None:
        """A stop this worker saw stops every worker (it waits out an outage, like every write)."""
        stop = event.stop
        if event.by is None and stop is not None and stop.crawl_wide:
            message = redaction.redact(event.message)
            self.shared.write(lambda: self.shared.stop(event.reason, message))

    def next_steps(self, reason: str, unfinished: bool) -> list[str]:
        shared = self.shared
        try:
            status = shared.status()
        except REDIS_ERRORS:
            return ["  crawl:    Redis is unreachable; `scrapy redis status` shows the crawl once it is back"]
        lines = [
            f"  crawl:    {status['queued']} requests queued, {status['in_flight']} in flight (all workers); "
            f"{status['items']} notes waiting in {shared.keys.items}"
            + (" (scrapy redis drain FILE)" if status["items"] else "")
        ]
        stop = stops.BY_REASON.get(reason)
        if stop is stops.REDIS_STATE_LOST:
            lines.append(f"  next: {stop.fix} (docs/distributed.md: Redis must persist)")
        elif status["stop"] and stop is not None and stop.crawl_wide:
            lines.append(f"  next: {stop.fix_distributed}, run `scrapy redis resume`, then start the workers again")
        elif status["queued"] or status["in_flight"]:
            lines.append("  next: the crawl goes on in Redis: start workers (scrapy redis status shows it)")
        return lines
