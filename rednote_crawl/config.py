"""The ``JUSTONEAPI_*`` settings, read and validated in one place.

``ApiConfig.of(crawler)`` builds the config once per crawler (the add-on does
it first, at start-up, so a bad value stops the crawl before any request) and
hands the same object to every component afterwards.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rednote_crawl import api

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

SANDBOX_TOKEN = "sandbox-demo-token"

# Defaults of the JUSTONEAPI_* settings (the README's settings table lists them).
DEFAULTS: dict[str, Any] = {
    "JUSTONEAPI_TOKEN": None,  # better: the JUSTONEAPI_TOKEN environment variable
    "JUSTONEAPI_BASE_URL": None,  # or the environment variable; else api.DEFAULT_BASE_URL
    "JUSTONEAPI_TIMEOUT": 60,
    "JUSTONEAPI_MAX_RPS": 10,
    "JUSTONEAPI_MAX_REQUESTS": 0,
    "JUSTONEAPI_MAX_PAGES": 20,
    "JUSTONEAPI_NOTE_TIME_STYLE": "vendor",
    "JUSTONEAPI_RETRY_TIMES": 5,
    "JUSTONEAPI_RATE_LIMIT_RETRIES": 30,
    "JUSTONEAPI_BACKOFF_BASE": 1.0,
    "JUSTONEAPI_BACKOFF_MAX": 60.0,
    "JUSTONEAPI_KEEP_ADS": False,
    "JUSTONEAPI_KEEP_RAW": False,
    "JUSTONEAPI_SANDBOX": False,
    "JUSTONEAPI_JOB_DIR": None,  # a job state folder: makes the crawl resumable (jobstate.py)
    "JUSTONEAPI_SEEN_NOTES": "skip",  # notes found by an earlier crawl of the job: skip or update
    "JUSTONEAPI_REDIS_LEASE": 60,  # distributed: seconds before a dead worker's requests go to another
}
SEEN_NOTES = ("skip", "update")


class ConfigError(ValueError):
    """A setting or argument with a bad value; the message names it and the fix."""


def _get(settings: BaseSettings, name: str) -> Any:
    return settings.get(name, DEFAULTS[name])


def _number(settings: BaseSettings, name: str, kind: type, minimum: float) -> Any:
    raw = _get(settings, name)
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name}={raw!r} is not {'a whole number' if kind is int else 'a number'}; set a number >= {minimum}"
        ) from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not a finite number; set a number >= {minimum}")
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} is too small; set a number >= {minimum}")
    return value


def flag(settings: BaseSettings, name: str) -> bool:
    try:
        return settings.getbool(name, DEFAULTS[name])
    except ValueError:
        raise ConfigError(f"{name}={_get(settings, name)!r} is not a boolean; use true/false or 1/0") from None


def _base_url(raw: str) -> str:
    """Scheme and host in lower case (Scrapy lower-cases request URLs), no trailing slash."""
    problem = f"JUSTONEAPI_BASE_URL={raw!r} is not an http(s) base URL like {api.DEFAULT_BASE_URL}"
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{problem}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(problem)
    if any(c.isspace() for c in raw.strip()):
        raise ConfigError(f"{problem}: it holds a space")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def redis_url(settings: BaseSettings, environ: Mapping[str, str] = os.environ) -> str | None:
    """``REDIS_URL`` from the settings, else from the environment; None: single-machine mode."""
    url = str(settings.get("REDIS_URL") or environ.get("REDIS_URL") or "").strip() or None
    if url is not None:
        parts = urlsplit(url)
        db = parts.path.strip("/")
        if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and db and not db.isdigit()):
            shown = re.sub(r"//[^@/]*@", "//***@", url)
            raise ConfigError(f"REDIS_URL={shown!r} is not a Redis URL; use redis://HOST:PORT/DB (DB a number)")
    return url


def _check_names(settings: BaseSettings) -> None:
    """A mistyped JUSTONEAPI_ setting would be ignored, and the crawl would run, and pay, without it."""
    for name in settings:
        if name.startswith("JUSTONEAPI_") and name not in DEFAULTS:
            close = difflib.get_close_matches(name, DEFAULTS, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; the settings are: {', '.join(DEFAULTS)}"
            raise ConfigError(f"unknown setting {name}{hint}")


@dataclass(frozen=True, slots=True)
class ApiConfig:
    token: str = field(repr=False)
    base_url: str
    timeout: float
    max_rps: float  # 0: no fixed ceiling (the limiter still backs off after 302)
    max_requests: int  # 0: no budget
    max_pages: int
    note_time_style: str
    retry_times: int
    rate_limit_retries: int
    backoff_base: float
    backoff_max: float
    keep_ads: bool
    keep_raw: bool
    seen_notes: str
    redis_url: str | None = field(default=None, repr=False)  # distributed mode (it may hold a password)
    redis_lease: float = DEFAULTS["JUSTONEAPI_REDIS_LEASE"]

    @classmethod
    def from_settings(
        cls, settings: BaseSettings, environ: Mapping[str, str] = os.environ, require_token: bool = True
    ) -> ApiConfig:
        token = str(_get(settings, "JUSTONEAPI_TOKEN") or environ.get("JUSTONEAPI_TOKEN") or "").strip()
        if not token and require_token:
            raise ConfigError(
                "no API token: set the JUSTONEAPI_TOKEN environment variable (or setting). "
                "To try the crawler without a token, run it against the offline sandbox: "
                "scrapy crawl note_search -a keywords=seeds/brands.txt -s JUSTONEAPI_SANDBOX=1"
            )
        base_url = _base_url(
            str(_get(settings, "JUSTONEAPI_BASE_URL") or environ.get("JUSTONEAPI_BASE_URL") or api.DEFAULT_BASE_URL)
        )
        style = str(_get(settings, "JUSTONEAPI_NOTE_TIME_STYLE"))
        if style not in api.NOTE_TIME_STYLES:
            raise ConfigError(
                f"JUSTONEAPI_NOTE_TIME_STYLE={style!r} is not valid; use one of: {', '.join(api.NOTE_TIME_STYLES)}"
            )
        seen_notes = str(_get(settings, "JUSTONEAPI_SEEN_NOTES"))
        if seen_notes not in SEEN_NOTES:
            raise ConfigError(f"JUSTONEAPI_SEEN_NOTES={seen_notes!r} is not valid; use one of: {', '.join(SEEN_NOTES)}")
        backoff_base = _number(settings, "JUSTONEAPI_BACKOFF_BASE", float, 0)
        backoff_max = _number(settings, "JUSTONEAPI_BACKOFF_MAX", float, 0)
        if backoff_max < backoff_base:
            raise ConfigError(
                f"JUSTONEAPI_BACKOFF_MAX={backoff_max} is below JUSTONEAPI_BACKOFF_BASE={backoff_base}; raise it"
            )
        _check_names(settings)
        redis = redis_url(settings, environ)
        if redis and settings.get("JUSTONEAPI_JOB_DIR"):
            raise ConfigError(
                "JUSTONEAPI_JOB_DIR and REDIS_URL do not go together: in a distributed crawl Redis keeps the "
                "crawl's state (leave out JUSTONEAPI_JOB_DIR), on one machine the job folder does (leave out REDIS_URL)"
            )
        if redis and seen_notes == "update":
            raise ConfigError(
                "JUSTONEAPI_SEEN_NOTES=update does not apply to a distributed crawl: "
                "to deliver notes that earlier crawls found, forget them with `scrapy redis reset --notes`"
            )
        return cls(
            token=token,
            base_url=base_url,
            timeout=_number(settings, "JUSTONEAPI_TIMEOUT", float, 1),
            max_rps=_number(settings, "JUSTONEAPI_MAX_RPS", float, 0),
            max_requests=_number(settings, "JUSTONEAPI_MAX_REQUESTS", int, 0),
            max_pages=_number(settings, "JUSTONEAPI_MAX_PAGES", int, 1),
            note_time_style=style,
            retry_times=_number(settings, "JUSTONEAPI_RETRY_TIMES", int, 0),
            rate_limit_retries=_number(settings, "JUSTONEAPI_RATE_LIMIT_RETRIES", int, 0),
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            keep_ads=flag(settings, "JUSTONEAPI_KEEP_ADS"),
            keep_raw=flag(settings, "JUSTONEAPI_KEEP_RAW"),
            seen_notes=seen_notes,
            redis_url=redis,
            redis_lease=_number(settings, "JUSTONEAPI_REDIS_LEASE", float, 2),
        )

    @classmethod
    def of(cls, crawler: Crawler) -> ApiConfig:
        """The crawler's config, built and validated on first use."""
        config = _CACHE.get(crawler)
        if config is None:
            config = _CACHE[crawler] = cls.from_settings(crawler.settings)
        return config


_CACHE: weakref.WeakKeyDictionary[Any, ApiConfig] = weakref.WeakKeyDictionary()
