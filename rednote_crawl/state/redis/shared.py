"""A worker's handle on the crawl that all workers share in Redis.

Keys, per spider (``Keys``; the first three are scrapy-redis's own names):

==================  ======  ==================================================================
requests            ZSET    ids of the requests waiting, scored by -priority
dupefilter          SET     request fingerprints (scrapy-redis's RFPDupeFilter computes them)
items               LIST    the notes, one JSON object each (same fields as the JSON Lines output)
requests:data       HASH    id -> the request as JSON (no token: it is added at the last hop)
leases              ZSET    ids of the requests workers have taken, scored by their deadline
seen_notes:XXX      STRING  ids of the notes already delivered, 11 bytes each (``seen_record``)
seen_notes:other    SET     ids of another form than the API's 24 hex digits
seen_notes:count    STRING  how many notes were delivered
stats               HASH    crawl-wide counters (``scrapy redis status`` shows them)
stop                HASH    why the crawl stopped, set by the worker that saw it
ratelimit           STRING  the token's shared rate, as JSON (account.py)
requests:unreadable HASH    id -> requests no worker could read, set aside for a look
workers:<id>        STRING  one per live worker, expiring unless its heartbeat renews it
==================  ======  ==================================================================

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
        ]

    def notes(self) -> list[str]:
        """What ``scrapy redis reset --notes`` clears as well."""
        return [self.items, self.drain]  # and every seen_notes:* key


# Lua: each script runs atomically in Redis, so a worker killed mid-way leaves all or nothing.
# Times come from Redis's clock, the one clock every worker shares.
_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# KEYS: requests, leases, data, stop, stats. ARGV: lease ms, requeue score. -> {id, request} or nil
POP = (
    _NOW_MS
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

# KEYS: requests, data, dupefilter, leases, stats.
# ARGV: id, request, score, fingerprint ('' = not filtered), id of the lease it replaces (''), '1' if a query's first page
PUSH = """
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

# KEYS: leases, requests, data. ARGV: ids. The request is done: it leaves Redis.
ACK = """
for _, id in ipairs(ARGV) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
return #ARGV
"""

# KEYS: leases, requests. ARGV: requeue score, ids. Give taken requests back to the queue.
RELEASE = """
local n = 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
    n = n + 1
  end
end
return n
"""

# KEYS: leases. ARGV: lease ms, ids. -> how many leases were still ours to renew
RENEW = (
    _NOW_MS
    + """
local n = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
    n = n + 1
  end
end
return n
"""
)

# KEYS: bucket, items, stats, count. ARGV: record ('' = the id is in a plain set), note id, note as JSON.
# A bucket is a string of 11-byte records: about 11 bytes per seen note, exact (a Redis set of
# ids takes about 75). 4,096 buckets: about 2,500 records each at 10 million notes, a 27 KB scan
# in C (string.find, plain) per note. -> 1 when new
ADD_NOTE = """
if ARGV[1] == '' then
  if redis.call('SADD', KEYS[1], ARGV[2]) == 0 then return 0 end
else
  local seen = redis.call('GET', KEYS[1])
  if seen then
    local from = 1
    while true do
      local at = string.find(seen, ARGV[1], from, true)
      if not at then break end
      if (at - 1) % 11 == 0 then return 0 end
      from = at + 1
    end
  end
  -- SET, not APPEND: APPEND keeps room to grow (up to twice the string), SET stores it exactly
  redis.call('SET', KEYS[1], (seen or '') .. ARGV[1])
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
    """The API's note ids are 24 hex digits (MongoDB ObjectIds): the last 3 name the bucket (they
    are the low bits of a counter, so buckets fill evenly) and the first 21 are stored in 11 bytes.
    b'': another form, kept in a plain set."""
    return bytes.fromhex(note_id[:21] + "0") if _OBJECT_ID.fullmatch(note_id) else b""


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

    def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[script](keys=keys, args=args)

    # --- writes that must not be lost: in order, through the outbox ---------------------

    def write(self, op: Callable[[], Any]) -> None:
        self.outbox.append(op)
        if self.health.up:
            self.flush()

    def flush(self) -> bool:
        """Send the waiting writes in order; False if Redis is still away."""
        while self.outbox:
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
        args = [uuid.uuid4().hex, request, score, fingerprint, replaces, "1" if query_start else ""]
        keys = [k.requests, k.data, k.dupefilter, k.leases, k.stats]
        self.write(lambda: self._count_push(self.run("push", keys, args), query_start))

    def _count_push(self, added: int, query_start: bool) -> None:
        if added or self.stats is None:
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
        self.write(lambda: self.run("ack", [k.leases, k.requests, k.data], list(lease_ids)))

    def set_aside(self, lease_id: str, request: str) -> None:
        k = self.keys
        self.write(lambda: self.server.hset(k.unreadable, lease_id, request))
        self.ack(lease_id)

    def count(self, field: str, amount: int = 1) -> None:
        self.write(lambda: self.server.hincrby(self.keys.stats, field, amount))

    # --- reads and best-effort calls: they raise REDIS_ERRORS for the caller to wait on --

    def pop(self) -> tuple[str, str | None] | None:
        k = self.keys
        taken = self.run("pop", [k.requests, k.leases, k.data, k.stop, k.stats], [self.lease_ms, REQUEUE_SCORE])
        return (taken[0], taken[1]) if taken else None

    def release(self, lease_ids: list[str]) -> int:
        return self.run("release", [self.keys.leases, self.keys.requests], [REQUEUE_SCORE, *lease_ids])

    def renew(self, lease_ids: list[str]) -> int:
        """Renew our leases; return how many had already run out and gone to another worker."""
        if not lease_ids:
            return 0
        return len(lease_ids) - self.run("renew", [self.keys.leases], [self.lease_ms, *lease_ids])

    def add_note(self, note_id: str, note: bytes, client: Any = None) -> bool:
        k = self.keys
        keys = [k.seen_bucket(note_id), k.items, k.stats, k.seen_count]
        return bool(self._scripts["add_note"](keys=keys, args=[seen_record(note_id), note_id, note], client=client))

    def stop(self, reason: str, message: str) -> str:
        """Stop every worker; return the reason in force (an earlier stop wins)."""
        return self.run("stop", [self.keys.stop], [reason, message, self.worker_id])

    def stopped(self) -> dict[str, str] | None:
        return self.server.hgetall(self.keys.stop) or None

    def beat(self, held: int, period: float) -> None:
        """Say this worker is alive (the key expires after three missed beats)."""
        value = f"{held} requests in flight, last beat {time.strftime('%H:%M:%S')}"
        self.server.set(self.keys.worker(self.worker_id), value, px=int(period * 3000))

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
    "pop": POP,
    "push": PUSH,
    "ack": ACK,
    "release": RELEASE,
    "renew": RENEW,
    "add_note": ADD_NOTE,
    "stop": STOP,
}
