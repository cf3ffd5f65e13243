"""Clients of a Redis server (``REDIS_URL``): connecting with fail-fast defaults, the URL with its
password masked, the errors that mean "Redis is away", and one log line per outage."""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.retry import Retry
from scrapy_redis.connection import get_redis

from rednote_crawl.config import ConfigError
from rednote_crawl.names import Stat

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

# Redis away (no answer), or answering with an error: it refuses writes for now (NOREPLICAS: its
# replicas lag; MISCONF: a background save failed; OOM: memory full; READONLY: a replica; NOPERM:
# an ACL user without a permission; any other error reply). Either way the caller waits and tries
# again with the same write: nothing Redis refused is dropped (every script is idempotent:
# scripts.py). A missing script (NOSCRIPT) is not among them: the callers load the scripts again.
REDIS_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ResponseError,
)
# Calls fail fast; outages are ridden out by the callers (outbox, polling), not by redis-py's
# own retries.
CONNECTION_DEFAULTS: dict[str, Any] = {
    "socket_timeout": 5,
    "socket_connect_timeout": 3,
    "decode_responses": True,
    "encoding": "utf-8",
}


# Error replies redis-py gives a class of their own, and strips of their code.
_CODES = {
    redis.exceptions.NoPermissionError: "NOPERM",
    redis.exceptions.OutOfMemoryError: "OOM",
    redis.exceptions.ReadOnlyError: "READONLY",
    redis.exceptions.BusyLoadingError: "LOADING",
}


def reply(exc: BaseException) -> str:
    """What Redis answered, as it said it (``NOREPLICAS Not enough good replicas to write.``)."""
    code = next((code for cls, code in _CODES.items() if isinstance(exc, cls)), "")
    text = str(exc)
    return f"{code} {text}" if code and not text.startswith(code) else text


def refused(exc: BaseException) -> bool:
    """Redis answered, with an error: it refuses (writes) for now; not an outage of the network."""
    return isinstance(exc, redis.ResponseError)


def display_url(url: str) -> str:
    """The URL with its user and password masked (``USER:PASSWORD@``, ``?password=``, ``?username=``),
    for logs, stats, status and errors: an ACL user's name is half of its credentials."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = "***" if parts.username else ""
        password = ":***" if parts.password is not None else ""
        parts = parts._replace(netloc=f"{user}{password}@{netloc}")
    query = re.sub(r"(?i)((?:password|username)=)[^&]*", r"\1***", parts.query)
    return urlunsplit(parts._replace(query=query))


def mask(text: str, url: str) -> str:
    """``text`` (an error's message, say) with the URL's user and password masked wherever they appear."""
    parts = urlsplit(url)
    for secret in (parts.password, parts.username):
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text.replace(url, display_url(url))


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
    except (redis.AuthenticationError, redis.ResponseError) as exc:
        raise ConfigError(
            f"Redis at REDIS_URL={display_url(url)!r} refused us ({mask(str(exc), url)}); check its user and password"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ConfigError(
            f"cannot reach Redis at REDIS_URL={display_url(url)!r} ({mask(str(exc), url)}); start redis-server "
            "there, or fix REDIS_URL"
        ) from None


class RedisHealth:
    """Says once that Redis went away (or refuses writes: it answers, with an error) and once that it
    came back; no traceback per call. The worker waits out both alike."""

    def __init__(self, url: str, stats: Any = None) -> None:
        self.raw_url = url
        self.url = display_url(url)
        self.stats = stats
        self.down_since: float | None = None
        self.refusing = False  # this outage: Redis answers, and refuses

    @property
    def up(self) -> bool:
        return self.down_since is None

    def failed(self, exc: Exception) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.refusing = refused(exc)
            why = mask(reply(exc), self.raw_url)
            if self.refusing:
                logger.warning(
                    "Redis at %s answers but refuses writes (%s): pausing this worker's calls until it accepts "
                    "them; nothing is lost",
                    self.url,
                    why,
                )
            else:
                logger.warning("Redis at %s is unreachable (%s): waiting for it; nothing is lost", self.url, why)
            if self.stats is not None:
                self.stats.inc_value(Stat.REDIS_OUTAGES)
                if self.refusing:
                    self.stats.inc_value(Stat.REDIS_REFUSALS)

    def ok(self) -> None:
        if self.down_since is not None:
            down = time.monotonic() - self.down_since
            self.down_since = None
            if self.refusing:
                logger.warning("Redis at %s accepts writes again after %.1f s; carrying on", self.url, down)
            else:
                logger.warning("Redis at %s is back after %.1f s; carrying on", self.url, down)
            if self.stats is not None:
                self.stats.inc_value(Stat.REDIS_OUTAGE_SECONDS, round(down, 1))
