"""A worker's handle on the crawl that all workers share in Redis (``SharedCrawl``): one method per
script (scripts.py), the writes nobody waits for through the outbox (outbox.py).

Every script first checks that ``crawl`` still holds the id this worker joined: when Redis lost the
crawl or ``scrapy redis reset`` ran under the workers, it writes nothing and answers ``LOST`` or
``RESET``, and the worker stops with ``justoneapi_redis_state_lost`` (``SharedCrawl.lost``). A taken
request is leased, not removed: it comes back to ``requests`` when its lease runs out, and leaves
Redis only when acked. Every write is idempotent, so a request done twice costs a call, never a
duplicate.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import redis

from rednote_crawl.config import DEFAULTS
from rednote_crawl.names import Stat
from rednote_crawl.state.redis import scripts
from rednote_crawl.state.redis.client import RedisHealth, connect, display_url
from rednote_crawl.state.redis.keys import Keys, seen_field, seen_record
from rednote_crawl.state.redis.outbox import Outbox, Write

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

HISTORY_KEPT = 100  # ended crawls kept in the history list
REQUEUE_SCORE = -1e9  # a request given back (expired or released lease) goes before all others


class OldCrawl(RuntimeError):
    """The crawl in Redis is of an earlier format (requests as URLs): refused, never half-read."""


def new_op() -> str:
    """An operation's id: a write sent again under it is applied once (scripts.once)."""
    return uuid.uuid4().hex


class SharedCrawl:
    """A worker's handle on the crawl in Redis: every call of the crawl is asynchronous
    (``redis.asyncio`` on Scrapy's asyncio reactor), so a slow Redis delays only what waits on it.

    Writes nobody waits for (pushes, acks, counters) go through the outbox (``Outbox``). The start
    (``join``) uses the blocking client ``sync``: nothing runs beside it then.
    """

    def __init__(
        self,
        url: str,
        settings: BaseSettings,
        spider: str,
        lease_seconds: float,
        stats: Any = None,
        beat: float = DEFAULTS["JUSTONEAPI_REDIS_HEARTBEAT"],
    ) -> None:
        self.url = url
        self.sync = connect(url, settings)
        self.server = connect(url, settings, asynchronous=True)
        self.keys = Keys(spider)
        self.lease_ms = int(lease_seconds * 1000)
        self.beat = beat  # seconds: the heartbeat, and how soon the worker looks for work or tries Redis again
        self.stats = stats
        self.health = RedisHealth(url, stats)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.outbox = Outbox(self.server, self.health, self._load_scripts, self._gone, beat)
        self.crawl_id: str | None = None  # the crawl this worker joined (JOIN)
        self.lost: str | None = None  # why the crawl is gone from Redis, once a script found it so
        self._call_round_trips = 0
        self._pop_op: str | None = None  # a pop sent and not answered yet
        self._clock = (time.time(), time.monotonic())  # Redis's clock (s) when last heard, and ours then

    @property
    def round_trips(self) -> int:
        """Round trips to Redis so far: the calls, and the outbox's pipelines."""
        return self._call_round_trips + self.outbox.round_trips

    def join(self) -> str:
        """Join the crawl in Redis (a new one gets its id now) and load the scripts; blocking, at start-up."""
        for source in scripts.SCRIPTS.values():
            self.sync.script_load(source)
        if self.sync.type(self.keys.ratelimit) == "string":  # the rate in its earlier form: dropped
            self.sync.delete(self.keys.ratelimit)
        self.crawl_id = self.sync.evalsha(scripts.SHA["join"], 1, self.keys.crawl, scripts.FORMAT + uuid.uuid4().hex)
        if not str(self.crawl_id).startswith(scripts.FORMAT):
            raise OldCrawl(
                f"the crawl in Redis at {display_url(self.url)} ({self.keys.crawl}) was started by an earlier version "
                "of rednote_crawl, which kept its requests as URLs (with the seeding worker's API host) and its "
                "dupefilter by URL: this version keeps calls and cannot read that crawl. Finish it with the earlier "
                "version, or `scrapy redis drain FILE`, `scrapy redis reset` and seed the keywords again (the seen "
                "notes are kept: notes already delivered are not delivered again)"
            )
        seconds, micros = self.sync.time()
        self.heard_time(seconds * 1000 + micros / 1000)
        return self.crawl_id

    def heard_time(self, now_ms: float) -> None:
        """Redis's clock, as an answer just told it: the one clock all workers share."""
        self._clock = (float(now_ms) / 1000, time.monotonic())

    def now(self) -> float:
        """Redis's clock (seconds), estimated from its last answer."""
        at, since = self._clock
        return at + (time.monotonic() - since)

    # --- calls a caller waits for ------------------------------------------------------------

    def _command(self, script: str, keys: list[str], args: list[Any], op: str | None = None) -> tuple[Any, ...]:
        if script in scripts.IDEMPOTENT:  # run once per operation: its answer is kept under applied:<op>
            keys = [*keys, self.keys.applied(op or new_op())]
        return ("EVALSHA", scripts.SHA[script], len(keys) + 1, *keys, self.keys.crawl, self.crawl_id, *args)

    async def call(self, script: str, keys: list[str], args: list[Any], op: str | None = None) -> Any:
        """A guarded script (scripts.py): its answer, or None when the crawl is gone (nothing written).
        Raises REDIS_ERRORS for the caller to wait on, and to call again with the same ``op`` (an
        idempotent script's operation id): a call whose answer was lost then changes nothing twice."""
        if self.lost:
            return None
        answer = await self._execute(self._command(script, keys, args, op))
        self.health.ok()
        return self._unless_lost(answer)

    async def _execute(self, command: tuple[Any, ...]) -> Any:
        self._call_round_trips += 1
        try:
            return await self.server.execute_command(*command)
        except redis.exceptions.NoScriptError:  # Redis restarted (its script cache is not kept)
            await self._load_scripts()
            self._call_round_trips += 1
            return await self.server.execute_command(*command)

    async def _load_scripts(self) -> None:
        for source in scripts.SCRIPTS.values():
            await self.server.script_load(source)

    def _unless_lost(self, answer: Any) -> Any:
        if answer in scripts.LOST_ANSWERS:
            self.found_lost(answer)
            return None
        return answer

    def _gone(self, answer: Any) -> bool:
        """Whether a guarded write's answer says the crawl is gone (the outbox is then closed)."""
        return self._unless_lost(answer) is None

    def found_lost(self, answer: str) -> None:
        if self.lost:
            return
        self.lost = (
            f"the crawl's state in Redis at {display_url(self.url)} was reset: {self.keys.crawl} holds another "
            "crawl's id (`scrapy redis reset` ran under the workers, and a new crawl started)"
            if answer == "RESET"
            else f"the crawl's state in Redis at {display_url(self.url)} was lost: {self.keys.crawl} is gone (Redis "
            "restarted without its data, was flushed, or failed over to a replica that lagged; or `scrapy redis "
            "reset` ran under the workers)"
        )
        self.outbox.close()  # nothing of the lost crawl may be written into whatever Redis holds now
        logger.error(
            "Stopping: %s. Nothing more is written to Redis; see docs/distributed.md, Redis must persist", self.lost
        )
        if self.stats is not None:
            self.stats.set_value(Stat.REDIS_STATE_LOST, 1)

    # --- writes through the outbox ------------------------------------------------------------

    def write(self, command: tuple[Any, ...], then: Callable[[Any], None] | None = None, guarded: bool = True) -> None:
        self.outbox.add(Write(command, then, guarded))

    def write_script(
        self, script: str, keys: list[str], args: list[Any], then: Callable[[Any], None] | None = None
    ) -> None:
        self.write(self._command(script, keys, args, new_op()), then)  # one id: sent again, applied once

    # --- the crawl's operations ---------------------------------------------------------------

    def push(self, requests: list[tuple[str, str, float, str, str, bool]], then: Callable[[Any], None]) -> None:
        """Requests into the queue, each (id, request, score, fingerprint, lease it replaces, query start)."""
        k = self.keys
        args = [
            x
            for id_, req, score, fp, replaces, start in requests
            for x in (id_, req, score, fp, replaces, "1" if start else "")
        ]
        self.write_script("push", [k.requests, k.data, k.dupefilter, k.leases, k.stats], args, then)

    def ack(self, lease_ids: list[str], counter: str = "") -> None:
        k = self.keys
        self.write_script("ack", [k.leases, k.requests, k.data, k.stats], [counter, *lease_ids])

    def set_aside(self, lease_id: str, request: str) -> None:
        self.write(("HSET", self.keys.unreadable, lease_id, request), guarded=False)
        self.ack([lease_id])

    def refund(self) -> None:
        """A call counted and never sent: the budget gets it back (once, however often it is sent)."""
        self.write_script("refund", [self.keys.stats], [])

    async def pop(self, how_many: int) -> tuple[int, int, list[tuple[str, str]]] | None:
        """Lease up to ``how_many`` requests: (queued, leased, [(lease, request)]); None: the crawl is gone.
        A pop whose answer was lost is asked again under its id: its requests are not left leased to nobody."""
        k = self.keys
        self._pop_op = self._pop_op or new_op()
        args = [self.lease_ms, REQUEUE_SCORE, how_many]
        answer = await self.call("pop", [k.requests, k.leases, k.data, k.stop, k.stats], args, self._pop_op)
        self._pop_op = None
        if answer is None:
            return None
        queued, leased, *flat = answer
        return int(queued), int(leased), list(zip(flat[::2], flat[1::2], strict=True))

    async def page(
        self,
        lease: str,
        notes: list[tuple[str, bytes] | tuple[str, bytes, tuple[str, str, float, str, bool] | None]],
        requests: list[tuple[str, str, float, str, bool]],
        op: str | None = None,
    ) -> list[int] | None:
        """A paid page in one call (scripts.PAGE): for each note (id, JSON, its detail call to push if it
        wants one) 1 new and delivered, 2 new and held for its details, 0 not new; None: the crawl is gone.
        ``op`` names the page's store: called again with it, the script answers as the first time."""
        k = self.keys
        keys = [k.items, k.stats, k.seen_count, k.requests, k.data, k.dupefilter, k.leases, k.held]
        keys += [k.seen_bucket(note[0]) for note in notes]
        args: list[Any] = [lease, len(notes), len(requests)]
        for note_id, line, *detail in notes:
            args += [seen_record(note_id), seen_field(note_id), note_id, line]
            args += list(detail[0][:4]) if detail and detail[0] else ["", "", "", ""]
        for id_, request, score, fingerprint, start in requests:
            args += [id_, request, score, fingerprint, "1" if start else ""]
        answer = await self.call("page", keys, args, op)
        return None if answer is None else [int(new) for new in answer]

    async def detail(self, lease: str, note_id: str, line: bytes, status: str, op: str | None = None) -> bool | None:
        """A held note, whole, delivered by its detail call (scripts.DETAIL), the call's lease acked with it:
        True when delivered now, False when delivered before (by another worker); None: the crawl is gone."""
        k = self.keys
        keys = [k.items, k.held, k.leases, k.requests, k.data, k.stats]
        answer = await self.call("detail", keys, [lease, note_id, line, status], op)
        return None if answer is None else bool(answer)

    async def release(self, lease_ids: list[str]) -> int:
        return await self.call("release", [self.keys.leases, self.keys.requests], [REQUEUE_SCORE, *lease_ids]) or 0

    async def heartbeat(
        self, lease_ids: list[str], period: float
    ) -> tuple[list[str], dict[str, str] | None, dict[str, int]]:
        """One call: renew our leases, say this worker is alive (expiring after three missed beats),
        read the crawl-wide stop and figures. -> (our leases no longer in Redis: acked meanwhile, or
        run out and gone to another worker; the stop or None; the figures)."""
        k = self.keys
        keys = [k.leases, k.worker(self.worker_id), k.stop, k.requests, k.items, k.stats, k.seen_count, k.workers]
        args = [self.lease_ms, int(period * 3000), time.strftime("%H:%M:%S"), self.worker_id, *lease_ids]
        answer = await self.call("beat", keys, args)
        if answer is None:
            return [], None, {}
        gone, reason, message, worker, *numbers = answer
        stop = {"reason": reason, "message": message or "", "worker": worker or "?"} if reason else None
        names = ("queued", "in_flight", "items", "notes", "pages_paid", "queries", "workers")
        return list(gone), stop, dict(zip(names, map(int, numbers), strict=True))

    def stop_all(self, reason: str, message: str) -> None:
        """Stop every worker (an earlier stop wins); through the outbox: it waits out an outage."""
        self.write(("EVALSHA", scripts.SHA["stop"], 1, self.keys.stop, reason, message, self.worker_id), guarded=False)

    async def claim_verdict(self) -> dict[str, Any] | None:
        """The whole crawl's verdict, if the crawl has ended (nothing queued or in flight, or a
        crawl-wide stop) and no worker claimed it yet (scripts.VERDICT): the crawl's counters
        (the ``stats`` hash) and ``stop`` (its hash, or None). None: not ended, already claimed, or gone."""
        k = self.keys
        keys = [k.verdict, k.stats, k.stop, k.requests, k.leases]
        answer = await self.call("verdict", keys, [self.worker_id])
        if not answer:
            return None
        counters, stop = (dict(zip(flat[::2], flat[1::2], strict=True)) for flat in answer)
        return {**{name: int(value) for name, value in counters.items()}, "stop": stop or None}

    async def record_crawl(self, entry: dict[str, Any]) -> None:
        """Keep an ended crawl's figures in the history (the worker that claimed its verdict, once)."""
        async with self.server.pipeline(transaction=False) as pipe:
            pipe.rpush(self.keys.history, orjson.dumps(entry).decode()).ltrim(self.keys.history, -HISTORY_KEPT, -1)
            await pipe.execute()

    def crawl_history(self, crawls: int) -> list[dict[str, Any]]:
        """The last ``crawls`` ended crawls' figures, oldest first (blocking: at the end of a run)."""
        return [orjson.loads(entry) for entry in self.sync.lrange(self.keys.history, -crawls, -1)]

    async def leave(self) -> None:
        async with self.server.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys.worker(self.worker_id)).zrem(self.keys.workers, self.worker_id)
            await pipe.execute()

    async def aclose(self) -> None:
        self.outbox.cancel()
        await self.server.aclose()
        self.sync.close()
