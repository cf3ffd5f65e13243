"""A worker's handle on the crawl that all workers share in Redis.

Keys, per spider (``Keys``; the first three are scrapy-redis's own names):

==================  ======  ==================================================================
requests            ZSET    ids of the requests waiting, scored by -priority
dupefilter          SET     request fingerprints (scrapy-redis's RFPDupeFilter computes them)
items               LIST    the notes, one JSON object each (same fields as the JSON Lines output)
requests:data       HASH    id -> the request as JSON (no token: it is added at the last hop)
leases              ZSET    ids of the requests workers have taken, scored by their deadline
seen_notes:XXX      HASH    ids of the notes already delivered: 16 fields, 10 bytes an id (``seen_record``)
seen_notes:other    SET     ids of another form than the API's 24 hex digits
seen_notes:count    STRING  how many notes were delivered
stats               HASH    crawl-wide counters (``scrapy redis status`` shows them)
stop                HASH    why the crawl stopped, set by the worker that saw it
ratelimit           HASH    the token's shared rate: ``state`` (JSON) and its version ``v`` (account.py)
requests:unreadable HASH    id -> requests no worker could read, set aside for a look
workers:<id>        STRING  one per live worker, expiring unless its heartbeat renews it
workers             ZSET    the live workers, scored by when they expire (counted by the heartbeat)
crawl               STRING  the crawl's id, written by its first worker (``JOIN``)
==================  ======  ==================================================================

The scripts (scripts.py) check first that ``crawl`` still holds the id this worker joined: when
Redis lost the crawl (a restart without persistence, a flush, a failover to a replica that
lagged) or ``scrapy redis reset`` ran under the workers, they write nothing and answer ``LOST`` or
``RESET``, and the worker stops with ``justoneapi_redis_state_lost`` (``SharedCrawl.lost``)
instead of carrying on in, or declaring finished, a crawl that is gone.

A taken request is leased, not removed: it comes back to ``requests`` when its lease runs out
(its worker died), and it leaves Redis only when acked: in the script that stores its page (its
notes and its next page), or, for a page that failed, through the outbox. Every write is
idempotent (the dupefilter and ``seen_notes`` are checked in the script that writes), so a
request done twice costs a call, never a duplicate.

While Redis is unreachable, writes wait in the outbox, in order, reads find nothing, and the
outage is logged once when it begins and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.retry import Retry
from scrapy_redis import defaults as scrapy_redis_defaults
from scrapy_redis.connection import get_redis

from rednote_crawl.config import ConfigError
from rednote_crawl.state.redis import scripts

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

# Redis away, or unable to write for now (a replica promoted late, memory full): wait for it.
REDIS_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
)
# Calls fail fast; outages are ridden out by the callers (outbox, polling), not by redis-py's
# own retries.
CONNECTION_DEFAULTS: dict[str, Any] = {
    "socket_timeout": 5,
    "socket_connect_timeout": 3,
    "decode_responses": True,
    "encoding": "utf-8",
}
REQUEUE_SCORE = -1e9  # a request given back (expired or released lease) goes before all others


def display_url(url: str) -> str:
    """The URL with its password masked (``:PASSWORD@`` or ``?password=``), for logs."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=(f"{parts.username}:***@" if parts.username else ":***@") + netloc)
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit(parts._replace(query=query))


def connect(url: str, settings: BaseSettings, asynchronous: bool = False) -> Any:
    """A client through scrapy-redis's helper, with REDIS_PARAMS over our fail-fast defaults:
    ``redis.Redis``, or with ``asynchronous`` a ``redis.asyncio.Redis``."""
    params = {**CONNECTION_DEFAULTS, **settings.getdict("REDIS_PARAMS")}
    # One new connection for a pooled one Redis closed (it restarted): not an outage. A timeout is.
    retry = (redis.asyncio.retry.Retry if asynchronous else Retry)(NoBackoff(), 1, (redis.ConnectionError,))
    params.setdefault("retry", retry)
    params.pop("retry_on_timeout", None)  # deprecated in redis-py; retries are ours
    try:
        return get_redis(url=url, redis_cls=redis.asyncio.Redis if asynchronous else redis.Redis, **params)
    except ValueError as exc:
        raise ConfigError(
            f"REDIS_URL={display_url(url)!r} is not a Redis URL ({exc}); use redis://HOST:PORT/DB"
        ) from None


def check_reachable(server: redis.Redis, url: str) -> None:
    """Redis must answer before a crawl starts: a wrong REDIS_URL is an error, not an outage."""
    try:
        server.ping()
    except REDIS_ERRORS as exc:
        raise ConfigError(
            f"cannot reach Redis at REDIS_URL={display_url(url)!r} ({exc}); start redis-server there, or fix REDIS_URL"
        ) from None
    except redis.RedisError as exc:
        raise ConfigError(f"Redis at REDIS_URL={display_url(url)!r} refused us ({exc}); check its password") from None


@dataclass(frozen=True, slots=True)
class Keys:
    spider: str

    def _key(self, name: str) -> str:
        return f"{self.spider}:{name}"

    @property
    def requests(self) -> str:
        return scrapy_redis_defaults.SCHEDULER_QUEUE_KEY % {"spider": self.spider}

    @property
    def dupefilter(self) -> str:
        return scrapy_redis_defaults.SCHEDULER_DUPEFILTER_KEY % {"spider": self.spider}

    @property
    def items(self) -> str:
        return scrapy_redis_defaults.PIPELINE_KEY % {"spider": self.spider}

    @property
    def data(self) -> str:
        return self._key("requests:data")

    @property
    def leases(self) -> str:
        return self._key("leases")

    @property
    def unreadable(self) -> str:
        return self._key("requests:unreadable")

    @property
    def seen_notes(self) -> str:
        """The prefix of the buckets of seen note ids; ``seen_notes:*`` are all of them."""
        return self._key("seen_notes")

    def seen_bucket(self, note_id: str) -> str:
        """A hash of 16 fields (``seen_field``), one of 4,096, or the plain set ``seen_notes:other``."""
        return f"{self.seen_notes}:{note_id[-3:]}" if _OBJECT_ID.fullmatch(note_id) else f"{self.seen_notes}:other"

    @property
    def seen_count(self) -> str:
        return f"{self.seen_notes}:count"

    @property
    def stats(self) -> str:
        return self._key("stats")

    @property
    def stop(self) -> str:
        return self._key("stop")

    @property
    def ratelimit(self) -> str:
        return self._key("ratelimit")

    @property
    def drain(self) -> str:
        return self._key("items:drain")

    def worker(self, worker_id: str) -> str:
        return self._key(f"workers:{worker_id}")

    @property
    def crawl(self) -> str:
        return self._key("crawl")

    @property
    def workers(self) -> str:
        return self._key("workers")

    def crawl_state(self) -> list[str]:
        """What ``scrapy redis reset`` clears: the crawl, not the notes."""
        return [
            self.requests,
            self.data,
            self.leases,
            self.dupefilter,
            self.stats,
            self.stop,
            self.ratelimit,
            self.unreadable,
            self.crawl,
            self.workers,
        ]

    def notes(self) -> list[str]:
        """What ``scrapy redis reset --notes`` clears as well."""
        return [self.items, self.drain]  # and every seen_notes:* key


_OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def seen_record(note_id: str) -> bytes:
    """The API's note ids are 24 hex digits (MongoDB ObjectIds): the last 3 name the bucket and the
    one before them its field (they are the low bits of a counter, so buckets fill evenly); the first
    20 are stored in 10 bytes. b'': another form, kept in a plain set."""
    return bytes.fromhex(note_id[:20]) if _OBJECT_ID.fullmatch(note_id) else b""


def seen_field(note_id: str) -> str:
    """The field of the note's bucket that holds its record (one hex digit: 16 per bucket)."""
    return note_id[20] if _OBJECT_ID.fullmatch(note_id) else ""


class RedisHealth:
    """Says once that Redis went away and once that it came back; no traceback per call."""

    def __init__(self, url: str, stats: Any = None) -> None:
        self.url = display_url(url)
        self.stats = stats
        self.down_since: float | None = None

    @property
    def up(self) -> bool:
        return self.down_since is None

    def failed(self, exc: Exception) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            logger.warning("Redis at %s is unreachable (%s): waiting for it; nothing is lost", self.url, exc)
            if self.stats is not None:
                self.stats.inc_value("justoneapi/redis/outages")

    def ok(self) -> None:
        if self.down_since is not None:
            down = time.monotonic() - self.down_since
            self.down_since = None
            logger.warning("Redis at %s is back after %.1f s; carrying on", self.url, down)
            if self.stats is not None:
                self.stats.inc_value("justoneapi/redis/outage_seconds", round(down, 1))



def crawl_status(server: redis.Redis, keys: Keys) -> dict[str, Any]:
    """Where the crawl stands, read in one pipeline (``scrapy redis status``; a worker's start)."""
    with server.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.requests).zcard(keys.leases).llen(keys.items).get(keys.seen_count)
        pipe.hgetall(keys.stats).hgetall(keys.stop).hget(keys.ratelimit, "state")
        queued, leased, items, seen, stats, stop, rate = pipe.execute()
    prefix = keys.worker("")
    workers = {key[len(prefix) :]: server.get(key) for key in server.scan_iter(match=prefix + "*")}
    return {
        "queued": queued,
        "in_flight": leased,
        "items": items,
        "notes": int(seen or 0),
        "stats": {name: int(value) for name, value in stats.items()},
        "stop": stop or None,
        "rate": orjson.loads(rate)["rate"] if rate else None,  # calls/s; None: not set, or no ceiling
        "workers": {w: v for w, v in workers.items() if v is not None},
    }


@dataclass(slots=True)
class Write:
    """A write of the outbox: one Redis command (a script call, mostly); ``then`` gets its answer."""

    command: tuple[Any, ...]
    then: Callable[[Any], None] | None = None
    guarded: bool = False


RETRY_REDIS = 1.0  # seconds between tries while Redis is away
BATCH = 200  # writes of the outbox sent in one pipeline: one round trip


class SharedCrawl:
    """A worker's handle on the crawl in Redis: every call of the crawl is asynchronous
    (``redis.asyncio`` on Scrapy's asyncio reactor), so a slow Redis delays only what waits on it.

    Writes nobody waits for (pushes, acks, counters) go through the outbox: in order, so an ack
    never overtakes the writes it depends on, sent as one pipeline per batch, and kept while
    Redis is away. The start (``join``) and ``scrapy redis`` commands use the blocking client
    ``sync``: nothing runs beside them then.
    """

    def __init__(self, url: str, settings: BaseSettings, spider: str, lease_seconds: float, stats: Any = None) -> None:
        self.url = url
        self.sync = connect(url, settings)
        self.server = connect(url, settings, asynchronous=True)
        self.keys = Keys(spider)
        self.lease_ms = int(lease_seconds * 1000)
        self.stats = stats
        self.health = RedisHealth(url, stats)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.outbox: deque[Write] = deque()
        self.crawl_id: str | None = None  # the crawl this worker joined (JOIN)
        self.lost: str | None = None  # why the crawl is gone from Redis, once a script found it so
        self.round_trips = 0
        self._clock = (time.time(), time.monotonic())  # Redis's clock (s) when last heard, and ours then
        self._more = asyncio.Event()  # the outbox has writes to send
        self._writer: asyncio.Task[None] | None = None

    def join(self) -> str:
        """Join the crawl in Redis (a new one gets its id now) and load the scripts; blocking, at start-up."""
        for source in scripts.SCRIPTS.values():
            self.sync.script_load(source)
        if self.sync.type(self.keys.ratelimit) == "string":  # the rate as kept before issue 12: dropped
            self.sync.delete(self.keys.ratelimit)
        self.crawl_id = self.sync.evalsha(scripts.SHA["join"], 1, self.keys.crawl, uuid.uuid4().hex)
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

    def _command(self, script: str, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
        return ("EVALSHA", scripts.SHA[script], len(keys) + 1, *keys, self.keys.crawl, self.crawl_id, *args)

    async def call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """A guarded script (scripts.py): its answer, or None when the crawl is gone (nothing written).
        Raises REDIS_ERRORS for the caller to wait on."""
        if self.lost:
            return None
        answer = await self._execute(self._command(script, keys, args))
        self.health.ok()
        return self._unless_lost(answer)

    async def _execute(self, command: tuple[Any, ...]) -> Any:
        self.round_trips += 1
        try:
            return await self.server.execute_command(*command)
        except redis.exceptions.NoScriptError:  # Redis restarted (its script cache is not kept)
            await self._load_scripts()
            self.round_trips += 1
            return await self.server.execute_command(*command)

    async def _load_scripts(self) -> None:
        for source in scripts.SCRIPTS.values():
            await self.server.script_load(source)

    def _unless_lost(self, answer: Any) -> Any:
        if answer in scripts.LOST_ANSWERS:
            self.found_lost(answer)
            return None
        return answer

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
        self.outbox.clear()  # nothing of the lost crawl may be written into whatever Redis holds now
        logger.error("Stopping: %s. Nothing more is written to Redis; see docs/distributed.md, Redis must persist", self.lost)
        if self.stats is not None:
            self.stats.set_value("justoneapi/redis/state_lost", 1)

    # --- the outbox: writes in order, a pipeline per batch -------------------------------------

    def write(self, command: tuple[Any, ...], then: Callable[[Any], None] | None = None, guarded: bool = True) -> None:
        if self.lost:
            return
        self.outbox.append(Write(command, then, guarded))
        self._more.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._send_outbox())

    def write_script(self, script: str, keys: list[str], args: list[Any], then: Callable[[Any], None] | None = None) -> None:
        self.write(self._command(script, keys, args), then)

    async def _send_outbox(self) -> None:
        while self.outbox and not self.lost:
            batch = [self.outbox[i] for i in range(min(BATCH, len(self.outbox)))]
            try:
                answers = await self._pipeline([w.command for w in batch])
            except REDIS_ERRORS as exc:
                self.health.failed(exc)
                await asyncio.sleep(RETRY_REDIS)
                continue
            self.health.ok()
            for write, answer in zip(batch, answers, strict=True):
                self.outbox.popleft()
                if write.guarded and self._unless_lost(answer) is None:
                    return
                if write.then is not None:
                    write.then(answer)

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Every command, in order, in one round trip (again after loading the scripts, if Redis lost them:
        each write is idempotent)."""
        for _ in range(2):
            self.round_trips += 1
            async with self.server.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                answers = await pipe.execute(raise_on_error=False)
            if not any(isinstance(a, redis.exceptions.NoScriptError) for a in answers):
                break
            await self._load_scripts()
        for answer in answers:
            if isinstance(answer, REDIS_ERRORS):
                raise answer
            if isinstance(answer, redis.RedisError):
                logger.error("A write to Redis failed: %s", answer)
        return answers

    async def flushed(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until every write of the outbox is in Redis."""
        deadline = time.monotonic() + timeout
        while self.outbox and not self.lost and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self.outbox

    # --- the crawl's operations ---------------------------------------------------------------

    def push(self, requests: list[tuple[str, str, float, str, str, bool]], then: Callable[[Any], None]) -> None:
        """Requests into the queue, each (id, request, score, fingerprint, lease it replaces, query start)."""
        k = self.keys
        args = [x for id_, req, score, fp, replaces, start in requests for x in (id_, req, score, fp, replaces, "1" if start else "")]
        self.write_script("push", [k.requests, k.data, k.dupefilter, k.leases, k.stats], args, then)

    def ack(self, lease_ids: list[str], counter: str = "") -> None:
        k = self.keys
        self.write_script("ack", [k.leases, k.requests, k.data, k.stats], [counter, *lease_ids])

    def set_aside(self, lease_id: str, request: str) -> None:
        self.write(("HSET", self.keys.unreadable, lease_id, request), guarded=False)
        self.ack([lease_id])

    def count(self, field: str, amount: int = 1) -> None:
        self.write(("HINCRBY", self.keys.stats, field, amount), guarded=False)

    async def pop(self, how_many: int) -> tuple[int, int, list[tuple[str, str]]] | None:
        """Lease up to ``how_many`` requests: (queued, leased, [(lease, request)]); None: the crawl is gone."""
        k = self.keys
        answer = await self.call("pop", [k.requests, k.leases, k.data, k.stop, k.stats], [self.lease_ms, REQUEUE_SCORE, how_many])
        if answer is None:
            return None
        queued, leased, *flat = answer
        return int(queued), int(leased), list(zip(flat[::2], flat[1::2], strict=True))

    async def page(
        self, lease: str, notes: list[tuple[str, bytes]], requests: list[tuple[str, str, float, str, bool]]
    ) -> list[bool] | None:
        """A paid page in one call (scripts.PAGE): which of its notes are new; None: the crawl is gone."""
        k = self.keys
        keys = [k.items, k.stats, k.seen_count, k.requests, k.data, k.dupefilter, k.leases]
        keys += [k.seen_bucket(note_id) for note_id, _ in notes]
        args: list[Any] = [lease, len(notes), len(requests)]
        for note_id, line in notes:
            args += [seen_record(note_id), seen_field(note_id), note_id, line]
        for id_, request, score, fingerprint, start in requests:
            args += [id_, request, score, fingerprint, "1" if start else ""]
        answer = await self.call("page", keys, args)
        return None if answer is None else [bool(new) for new in answer]

    async def release(self, lease_ids: list[str]) -> int:
        return await self.call("release", [self.keys.leases, self.keys.requests], [REQUEUE_SCORE, *lease_ids]) or 0

    async def heartbeat(self, lease_ids: list[str], period: float) -> tuple[list[str], dict[str, str] | None, dict[str, int]]:
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

    async def leave(self) -> None:
        async with self.server.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys.worker(self.worker_id)).zrem(self.keys.workers, self.worker_id)
            await pipe.execute()

    async def aclose(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        await self.server.aclose()
        self.sync.close()
