"""The leases this worker holds, and when a request taken from Redis is done (its lease acked).

A request is done when everything it produced is in Redis:

- its response went through the spider (``LeaseMiddleware`` sees the output end), each of its
  notes went through the pipelines (item_scraped or item_dropped), and each request it made
  (the next page) was pushed by the scheduler;
- or it was replaced by its retry (the scheduler acks it in the script that pushes the retry);
- or its page failed or its query was rejected (``page_failed`` / ``query_rejected``).

A callback that fails (spider_error) ends its response's output: the page is lost, counted by
Scrapy's ``spider_exceptions`` stats, and not paid for again. Anything else (a request not sent
because the crawl stopped, a note a pipeline failed on) is still held when the spider closes, and
is given back to the queue then, to be done again. The ack goes through the outbox after the writes
of the request's output, so it never overtakes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rednote_crawl.state.redis.shared import REDIS_ERRORS, SharedCrawl

logger = logging.getLogger(__name__)

LEASE_META = "justoneapi_lease"  # the id of the Redis lease of a request taken from the shared queue
PARENT_META = "justoneapi_parent_lease"  # on a request a leased response made, until the scheduler pushes it


@dataclass(slots=True)
class _Held:
    pending: int = 0  # its response's notes still in the pipelines, and requests not yet pushed
    output_ended: bool = False
    broken: bool = False  # a note failed in the pipelines: give it back at close, never ack


class LeaseBook:
    def __init__(self, shared: SharedCrawl, stats: Any) -> None:
        self.shared = shared
        self.stats = stats
        self.held: dict[str, _Held] = {}

    def taken(self, lease: str) -> None:
        self.held[lease] = _Held()

    def replaced(self, lease: str) -> None:
        self.held.pop(lease, None)

    def output_started(self, lease: str) -> None:
        """A note or a request of the lease's response is on its way."""
        if (held := self.held.get(lease)) is not None:
            held.pending += 1

    def output_stored(self, lease: str, ok: bool = True) -> None:
        if (held := self.held.get(lease)) is not None:
            held.pending -= 1
            held.broken |= not ok
            self._ack_if_done(lease, held)

    def output_ended(self, lease: str) -> None:
        if (held := self.held.get(lease)) is not None:
            held.output_ended = True
            self._ack_if_done(lease, held)

    def finished(self, lease: str) -> None:
        if self.held.pop(lease, None) is not None:
            self.shared.ack(lease)

    def _ack_if_done(self, lease: str, held: _Held) -> None:
        if held.output_ended and held.pending == 0 and not held.broken:
            self.finished(lease)

    def renew(self, period: float) -> dict[str, str] | None:
        """The heartbeat: keep our leases (a lease that ran out, this worker stalled, may be done twice),
        say this worker is alive, and return the crawl-wide stop if there is one."""
        lost, stop = self.shared.heartbeat(list(self.held), period)
        if lost:
            self.stats.inc_value("justoneapi/redis/leases_lost", lost)
            logger.warning(
                "%d requests this worker holds had outlived their lease (JUSTONEAPI_REDIS_LEASE) and went back to "
                "the queue: another worker may pay for them again",
                lost,
            )
        return stop

    def release_all(self) -> int:
        """Give every request still held back to the queue (the crawl stops before doing them)."""
        leases = list(self.held)
        self.held.clear()
        if not leases:
            return 0
        try:
            if not self.shared.flush():  # acks first: a done request must not go back
                return 0
            return self.shared.release(leases)
        except REDIS_ERRORS as exc:
            self.shared.health.failed(exc)
            return 0  # their leases run out and another worker takes them
