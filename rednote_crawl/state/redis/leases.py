"""The leases this worker holds: requests taken from Redis and not done yet.

A request is done, and its lease acked, when its page is stored (the page script acks it with
the page's notes and next page: scripts.PAGE), when its retry replaces it (acked in the script
that pushes the retry), or when its page failed, its query was rejected or its callback failed
(through the outbox). Anything still held when the worker closes (taken but not sent, because the
crawl stopped) is given back to the queue then; a worker killed with ``kill -9`` gives its
requests back when their leases run out.
"""

from __future__ import annotations

import logging
from typing import Any

from rednote_crawl.names import Stat
from rednote_crawl.state.redis.client import REDIS_ERRORS
from rednote_crawl.state.redis.shared import SharedCrawl

logger = logging.getLogger(__name__)


class LeaseBook:
    def __init__(self, shared: SharedCrawl, stats: Any) -> None:
        self.shared = shared
        self.stats = stats
        self.held: set[str] = set()
        self.storing: set[str] = set()  # held, and their page's script is on its way (it acks them)

    def taken(self, lease: str) -> None:
        self.held.add(lease)

    def done(self, lease: str) -> None:
        """Acked by a script that stored what the request produced."""
        self.held.discard(lease)
        self.storing.discard(lease)

    def finished(self, lease: str, counter: str = "") -> None:
        """Done without a page to store: it leaves Redis (``counter``: the crawl-wide stat it adds to)."""
        if lease in self.held:
            self.held.discard(lease)
            self.shared.ack([lease], counter)

    async def renew(self, period: float) -> tuple[dict[str, str] | None, dict[str, int]]:
        """The heartbeat: keep our leases (a lease that ran out, this worker stalled, may be done twice),
        say this worker is alive; return the crawl-wide stop (or None) and the crawl's figures."""
        gone, stop, figures = await self.shared.heartbeat(sorted(self.held), period)
        if lost := len([lease for lease in gone if lease in self.held and lease not in self.storing]):
            self.stats.inc_value(Stat.REDIS_LEASES_LOST, lost)
            logger.warning(
                "%d requests this worker holds had outlived their lease (JUSTONEAPI_REDIS_LEASE) and went back to "
                "the queue: another worker may pay for them again",
                lost,
            )
        return stop, figures

    async def release_all(self, timeout: float) -> int:
        """Give every request still held back to the queue (the crawl stops before doing them)."""
        leases = sorted(self.held)
        self.held.clear()
        if not leases:
            return 0
        try:
            if not await self.shared.outbox.flushed(timeout):  # acks first: a done request must not go back
                return 0
            return await self.shared.release(leases)
        except REDIS_ERRORS as exc:
            self.shared.health.failed(exc)
            return 0  # their leases run out and another worker takes them
