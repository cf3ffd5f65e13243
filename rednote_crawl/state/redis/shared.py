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
ratelimit           STRING  the token's shared rate, as JSON (account.py)
requests:unreadable HASH    id -> requests no worker could read, set aside for a look
workers:<id>        STRING  one per live worker, expiring unless its heartbeat renews it
crawl               STRING  the crawl's id, written by its first worker (``JOIN``)
==================  ======  ==================================================================

Every script that reads or writes the crawl first checks that ``crawl`` still holds the id this
worker joined (``lua_guard``, one GET inside the script): when Redis lost the crawl (a restart
without persistence, a flush, a failover to a replica that lagged) or ``scrapy redis reset`` ran
under the workers, the script writes nothing and answers ``LOST`` or ``RESET``, and the worker
stops with ``justoneapi_redis_state_lost`` (``SharedCrawl.lost``) instead of carrying on in, or
declaring finished, a crawl that is gone.

A taken request is leased, not removed: it comes back to ``requests`` when its lease runs out
(its worker died), and it leaves Redis only when acked, once everything it produced is
stored (leases.py). Every write is idempotent (the dupefilter and ``seen_notes`` are checked in
the script that writes), so a request done twice costs a call, never a duplicate.

While Redis is unreachable, writes wait in an outbox, in order (an ack never overtakes the
writes it depends on), reads find nothing, and the outage is logged once when it begins and
once when it ends.
"""

from __future__ import annotations

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
from redis.backoff import NoBackoff
from redis.retry import Retry
from scrapy_redis import defaults as scrapy_redis_defaults
from scrapy_redis.connection import get_redis

from rednote_crawl.config import ConfigError

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
# Redis calls block the reactor while they wait, so they must fail fast; outages are ridden
# out by the callers (outbox, polling), not by redis-py's own retries.
CONNECTION_DEFAULTS: dict[str, Any] = {
    "socket_timeout": 5,
    "socket_connect_timeout": 3,
    "decode_responses": True,
    "encoding": "utf-8",
}
REQUEUE_SCORE = -1e9  # a request given back (expired or released lease) goes before all others
CRAWL_ID = object()  # in a guarded script's arguments: the id of the crawl this worker joined


def display_url(url: str) -> str:
    """The URL with its password masked (``:PASSWORD@`` or ``?password=``), for logs."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=(f"{parts.username}:***@" if parts.username else ":***@") + netloc)
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit(parts._replace(query=query))


def connect(url: str, settings: BaseSettings) -> redis.Redis:
    """A client through scrapy-redis's helper, with REDIS_PARAMS over our fail-fast defaults."""
    params = {**CONNECTION_DEFAULTS, **settings.getdict("REDIS_PARAMS")}
    params.setdefault("retry", Retry(NoBackoff(), 0))
    params.pop("retry_on_timeout", None)  # deprecated in redis-py; retries are ours
    try:
        return get_redis(url=url, **params)
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
        ]

    def notes(self) -> list[str]:
        """What ``scrapy redis reset --notes`` clears as well."""
        return [self.items, self.drain]  # and every seen_notes:* key


# Lua: each script runs atomically in Redis, so a worker killed mid-way leaves all or nothing.
# Times come from Redis's clock, the one clock every worker shares.
_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
LOST_ANSWERS = ("LOST", "RESET")


def lua_guard(key: str, arg: str) -> str:
    """Lua: write nothing when the crawl's id in ``key`` is not the one this worker joined (``arg``)."""
    return (
        f"local crawl = redis.call('GET', {key})\n"
        f"if crawl ~= {arg} then if crawl then return 'RESET' end return 'LOST' end\n"
    )


# KEYS: crawl. ARGV: a new crawl id. -> the crawl's id (the new one if the crawl had none)
JOIN = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""

# KEYS: requests, leases, data, stop, stats, crawl. ARGV: lease ms, requeue score, crawl id. -> {id, request} or nil
POP = (
    lua_guard("KEYS[6]", "ARGV[3]")
    + _NOW_MS
    + """
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  redis.call('HINCRBY', KEYS[5], 'leases_expired', 1)
end
if redis.call('EXISTS', KEYS[4]) == 1 then return false end
local popped = redis.call('ZPOPMIN', KEYS[1])
if #popped == 0 then return false end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), popped[1])
return {popped[1], redis.call('HGET', KEYS[3], popped[1]) or ''}
"""
)

# KEYS: requests, data, dupefilter, leases, stats, crawl.
# ARGV: id, request, score, fingerprint ('' = not filtered), id of the lease it replaces (''), '1' if a query's
# first page, crawl id
PUSH = lua_guard("KEYS[6]", "ARGV[7]") + """
local added = 1
if ARGV[4] ~= '' and redis.call('SADD', KEYS[3], ARGV[4]) == 0 then added = 0 end
if added == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[5], 'queries', 1) end
end
if ARGV[5] ~= '' then
  redis.call('ZREM', KEYS[4], ARGV[5])
  redis.call('ZREM', KEYS[1], ARGV[5])
  redis.call('HDEL', KEYS[2], ARGV[5])
end
return added
"""

# KEYS: leases, requests, data, crawl. ARGV: crawl id, ids. The request is done: it leaves Redis.
ACK = lua_guard("KEYS[4]", "ARGV[1]") + """
for i = 2, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
end
return #ARGV - 1
"""

# KEYS: leases, requests, crawl. ARGV: crawl id, requeue score, ids. Give taken requests back to the queue.
RELEASE = lua_guard("KEYS[3]", "ARGV[1]") + """
local n = 0
for i = 3, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
    n = n + 1
  end
end
return n
"""

# The heartbeat, one call. KEYS: leases, worker, stop, crawl. ARGV: crawl id, lease ms, beat ms, time of day, ids.
# Renews the leases still ours, says the worker is alive with how many it holds (counted from the
# leases, as `scrapy redis status` counts them), and reads the crawl-wide stop.
# -> {leases renewed, stop reason, message, worker} (false when not stopped)
BEAT = (
    lua_guard("KEYS[4]", "ARGV[1]")
    + _NOW_MS
    + """
local n = 0
for i = 5, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[i])
    n = n + 1
  end
end
redis.call('SET', KEYS[2], n .. ' requests in flight, last beat ' .. ARGV[4], 'PX', ARGV[3])
local stop = redis.call('HMGET', KEYS[3], 'reason', 'message', 'worker')
return {n, stop[1], stop[2], stop[3]}
"""
)

# KEYS: bucket, items, stats, count, crawl. ARGV: record ('' = the id is in a plain set), note id, note as JSON,
# crawl id, field.
# A bucket is a hash of 16 fields, each a string of 10-byte records: 65,536 strings in all, about
# 10 bytes per seen note, exact (a Redis set of ids takes about 75). An add reads, scans (in C:
# string.find, plain) and rewrites one string: about 1,500 records (15 KB) at 100 million notes,
# against the whole 4,096-bucket string before (270 KB). A bucket of that earlier layout (a string of
# 11-byte records: the first 21 digits) is converted on its first add. -> 1 when new
ADD_NOTE = lua_guard("KEYS[5]", "ARGV[4]") + """
if ARGV[1] == '' then
  if redis.call('SADD', KEYS[1], ARGV[2]) == 0 then return 0 end
else
  if redis.call('TYPE', KEYS[1]).ok == 'string' then
    local old = redis.call('GET', KEYS[1])
    local fields = {}
    for at = 1, #old - 10, 11 do
      local field = string.format('%x', math.floor(string.byte(old, at + 10) / 16))
      fields[field] = (fields[field] or '') .. string.sub(old, at, at + 9)
    end
    redis.call('DEL', KEYS[1])
    for field, records in pairs(fields) do redis.call('HSET', KEYS[1], field, records) end
  end
  local seen = redis.call('HGET', KEYS[1], ARGV[5])
  if seen then
    local from = 1
    while true do
      local at = string.find(seen, ARGV[1], from, true)
      if not at then break end
      if (at - 1) % 10 == 0 then return 0 end
      from = at + 1
    end
  end
  redis.call('HSET', KEYS[1], ARGV[5], (seen or '') .. ARGV[1])
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], 'notes', 1)
redis.call('INCR', KEYS[4])
return 1
"""

# KEYS: stop. ARGV: reason, message, worker. The first stop wins; -> the reason in force
STOP = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'message', ARGV[2], 'worker', ARGV[3], 'at', t[1])
end
return redis.call('HGET', KEYS[1], 'reason')
"""


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


class SharedCrawl:
    def __init__(self, server: redis.Redis, spider: str, url: str, lease_seconds: float, stats: Any = None) -> None:
        self.server = server
        self.keys = Keys(spider)
        self.url = url
        self.lease_ms = int(lease_seconds * 1000)
        self.stats = stats
        self.health = RedisHealth(url, stats)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.outbox: deque[Callable[[], Any]] = deque()
        self._scripts = {name: server.register_script(src) for name, src in _SCRIPTS.items()}
        self.crawl_id: str | None = None  # the crawl this worker joined (JOIN)
        self.lost: str | None = None  # why the crawl is gone from Redis, once a script found it so

    def join(self) -> str:
        """Join the crawl in Redis (a new one gets its id now); every script checks it is still there."""
        self.crawl_id = self._scripts["join"](keys=[self.keys.crawl], args=[uuid.uuid4().hex])
        return self.crawl_id

    def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[script](keys=keys, args=args)

    def guarded(self, script: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        """Run a script that checks the crawl is still in Redis: None (nothing written) when it is not.
        The crawl's key goes last in ``keys``; ``args`` holds ``CRAWL_ID`` where the script wants the id."""
        if self.lost:
            return None
        if self.crawl_id is None:
            self.join()
        args = [self.crawl_id if a is CRAWL_ID else a for a in args]
        result = self._scripts[script](keys=[*keys, self.keys.crawl], args=args, client=client)
        if result in LOST_ANSWERS:
            self.found_lost(result)
            return None
        return result

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

    # --- writes that must not be lost: in order, through the outbox ---------------------

    def write(self, op: Callable[[], Any]) -> None:
        if self.lost:
            return
        self.outbox.append(op)
        if self.health.up:
            self.flush()

    def flush(self) -> bool:
        """Send the waiting writes in order; False if Redis is still away."""
        while self.outbox and not self.lost:
            try:
                self.outbox[0]()
            except REDIS_ERRORS as exc:
                self.health.failed(exc)
                return False
            self.outbox.popleft()
            self.health.ok()
        return True

    def push(self, request: str, score: float, fingerprint: str, replaces: str, query_start: bool) -> None:
        k = self.keys
        args = [uuid.uuid4().hex, request, score, fingerprint, replaces, "1" if query_start else "", CRAWL_ID]
        keys = [k.requests, k.data, k.dupefilter, k.leases, k.stats]
        self.write(lambda: self._count_push(self.guarded("push", keys, args), query_start))

    def _count_push(self, added: int | None, query_start: bool) -> None:
        if added is None or added or self.stats is None:
            return
        self.stats.inc_value("justoneapi/redis/requests_filtered")
        if query_start:
            if not self.stats.get_value("justoneapi/redis/queries_known"):
                logger.warning(
                    "A query seeded now is already in this crawl (seeded before, perhaps already done): it is not "
                    "asked for again. To crawl known keywords anew, start a new crawl with `scrapy redis reset`"
                )
            self.stats.inc_value("justoneapi/redis/queries_known")

    def ack(self, *lease_ids: str) -> None:
        k = self.keys
        self.write(lambda: self.guarded("ack", [k.leases, k.requests, k.data], [CRAWL_ID, *lease_ids]))

    def set_aside(self, lease_id: str, request: str) -> None:
        k = self.keys
        self.write(lambda: self.server.hset(k.unreadable, lease_id, request))
        self.ack(lease_id)

    def count(self, field: str, amount: int = 1) -> None:
        self.write(lambda: self.server.hincrby(self.keys.stats, field, amount))

    # --- reads and best-effort calls: they raise REDIS_ERRORS for the caller to wait on --

    def pop(self) -> tuple[str, str | None] | None:
        k = self.keys
        keys = [k.requests, k.leases, k.data, k.stop, k.stats]
        taken = self.guarded("pop", keys, [self.lease_ms, REQUEUE_SCORE, CRAWL_ID])
        return (taken[0], taken[1]) if taken else None

    def release(self, lease_ids: list[str]) -> int:
        return self.guarded("release", [self.keys.leases, self.keys.requests], [CRAWL_ID, REQUEUE_SCORE, *lease_ids]) or 0

    def heartbeat(self, lease_ids: list[str], period: float) -> tuple[int, dict[str, str] | None]:
        """One call: renew our leases, say this worker is alive (with the leases it holds in Redis:
        expiring after three missed beats), read the crawl-wide stop. -> (how many of our leases had
        already run out and gone to another worker, the stop or None)."""
        k = self.keys
        args = [CRAWL_ID, self.lease_ms, int(period * 3000), time.strftime("%H:%M:%S"), *lease_ids]
        answer = self.guarded("beat", [k.leases, k.worker(self.worker_id), k.stop], args)
        if answer is None:
            return 0, None
        renewed, reason, message, worker = (list(answer) + [None] * 4)[:4]
        stop = {"reason": reason, "message": message or "", "worker": worker or "?"} if reason else None
        return len(lease_ids) - int(renewed), stop

    def add_note(self, note_id: str, note: bytes, client: Any = None) -> bool | None:
        """Whether the note is new (then it is in the items list); None: the crawl is lost, nothing written.
        With ``client`` (a pipeline), the answer comes from the pipeline instead."""
        k = self.keys
        keys = [k.seen_bucket(note_id), k.items, k.stats, k.seen_count]
        args = [seen_record(note_id), note_id, note, CRAWL_ID, seen_field(note_id)]
        new = self.guarded("add_note", keys, args, client=client)
        return None if new is None else bool(new)

    def stop(self, reason: str, message: str) -> str:
        """Stop every worker; return the reason in force (an earlier stop wins)."""
        return self.run("stop", [self.keys.stop], [reason, message, self.worker_id])

    def stopped(self) -> dict[str, str] | None:
        return self.server.hgetall(self.keys.stop) or None

    def leave(self) -> None:
        self.server.delete(self.keys.worker(self.worker_id))

    def busy(self) -> bool:
        """Work left anywhere in the crawl: queued, taken by a worker, or waiting in our outbox."""
        if self.outbox:
            return True
        with self.server.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.requests).zcard(self.keys.leases)
            queued, leased = pipe.execute()
        return bool(queued or leased)

    def status(self) -> dict[str, Any]:
        k = self.keys
        with self.server.pipeline(transaction=False) as pipe:
            pipe.zcard(k.requests).zcard(k.leases).llen(k.items).get(k.seen_count)
            pipe.hgetall(k.stats).hgetall(k.stop).get(k.ratelimit)
            queued, leased, items, seen, stats, stop, rate = pipe.execute()
        prefix = k.worker("")
        workers = {key[len(prefix) :]: self.server.get(key) for key in self.server.scan_iter(match=prefix + "*")}
        return {
            "queued": queued,
            "in_flight": leased,
            "items": items,
            "notes": int(seen or 0),
            "stats": {name: int(value) for name, value in stats.items()},
            "stop": stop or None,
            "rate": orjson.loads(rate)["rate"] if rate else None,  # calls/s; None: not set, or no ceiling
            "workers": workers,
        }


_SCRIPTS = {
    "join": JOIN,
    "beat": BEAT,
    "pop": POP,
    "push": PUSH,
    "ack": ACK,
    "release": RELEASE,
    "add_note": ADD_NOTE,
    "stop": STOP,
}
