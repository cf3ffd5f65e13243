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
RETRY_REDIS = 1.0  # seconds between tries while Redis is away


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
                self.stats.inc_value(Stat.REDIS_OUTAGES)

    def ok(self) -> None:
        if self.down_since is not None:
            down = time.monotonic() - self.down_since
            self.down_since = None
            logger.warning("Redis at %s is back after %.1f s; carrying on", self.url, down)
            if self.stats is not None:
                self.stats.inc_value(Stat.REDIS_OUTAGE_SECONDS, round(down, 1))
