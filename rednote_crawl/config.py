"""The ``JUSTONEAPI_*`` settings and the spider's arguments, read and validated in one place.

``ApiConfig.from_settings`` checks the settings (the add-on calls it first, so a bad value
stops the crawl before anything starts; the crawl state keeps the one copy every component
reads). ``SearchArgs.parse`` checks the spider's arguments on their own, and
``SearchArgs.check`` against the settings: the crawl's start-up and ``--dry-run`` both call it.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from rednote_crawl import api
from rednote_crawl.seeds import Keywords

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

SANDBOX_TOKEN = "sandbox-demo-token"

# Defaults of the JUSTONEAPI_* settings (docs/usage.md's settings table lists them).
DEFAULTS: dict[str, Any] = {
    "JUSTONEAPI_TOKEN": None,  # better: the JUSTONEAPI_TOKEN environment variable
    "JUSTONEAPI_BASE_URL": None,  # or the environment variable; else api.DEFAULT_BASE_URL
    "JUSTONEAPI_TIMEOUT": 60,
    "JUSTONEAPI_MAX_RPS": 50,  # a ceiling: below it the crawl finds the token's limit (state/rate.py)
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
    "JUSTONEAPI_DETAILS_UPDATE": False,  # -a details=: fetch the details of notes earlier crawls found too
    "JUSTONEAPI_REDIS_LEASE": 60,  # distributed: seconds before a dead worker's requests go to another
    "JUSTONEAPI_REDIS_HEARTBEAT": 1.0,  # distributed: seconds between a worker's heartbeats, looks for work, retries
    "JUSTONEAPI_STATE_DIR": None,  # where learned rate limits are kept (default: .scrapy/, else the user's cache)
    # Where the crawl's state lives: set by the add-on (local, or Redis when REDIS_URL is set).
    "JUSTONEAPI_STATE_CLASS": None,
    # Notifications (run/notify.py): Apprise URLs, when to send, how long to wait for them.
    "JUSTONEAPI_NOTIFY": None,
    "JUSTONEAPI_NOTIFY_ON": "failure",
    "JUSTONEAPI_NOTIFY_TIMEOUT": 30,
    # Monitors at the end of every run (run/monitors.py): their thresholds.
    "JUSTONEAPI_MONITOR_FAILED_PAGES": 0,  # the most failed pages a run may have
    "JUSTONEAPI_MONITOR_RATE_LIMITED": 0.05,  # the largest share of calls answered 302 / HTTP 429
    "JUSTONEAPI_MONITOR_COST_FACTOR": 3.0,  # calls per new note above this times the job's median (0: off)
    "JUSTONEAPI_MONITOR_HISTORY": 7,  # earlier crawls of the job the history monitors compare with
    "JUSTONEAPI_MONITOR_SILENT_AFTER": 3,  # a keyword without new notes after this many crawls with some (0: off)
}
SEEN_NOTES = ("skip", "update")
NOTIFY_ON = ("failure", "always")


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


def refuse_token_on_the_command_line(settings: BaseSettings) -> None:
    """The token as ``-s`` (or a scrapyd job's ``setting=``) is refused, by a real run and a dry run alike."""
    from scrapy.settings import SETTINGS_PRIORITIES

    if settings.getpriority("JUSTONEAPI_TOKEN") == SETTINGS_PRIORITIES["cmdline"]:
        raise ConfigError(
            "the token must not be passed with -s JUSTONEAPI_TOKEN=... (or a scrapyd job's setting=): command "
            "lines show up in process lists and scrapyd's logs and listjobs.json. Set the JUSTONEAPI_TOKEN "
            "environment variable where the crawl runs (for scrapyd: in the scrapyd service's environment)"
        )


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


def apprise() -> Any:
    """The Apprise module, its plugins loaded. Apprise 2.3 imports the standard library's ``imghdr``
    (deprecated, removed in Python 3.13) when it loads its e-mail plugin: that one warning is ignored."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'imghdr' is deprecated", category=DeprecationWarning)
        import apprise as module

        module.Apprise.instantiate("json://localhost")  # loads every plugin, here, with the warning ignored
    return module


def notify_urls(settings: BaseSettings, environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """``JUSTONEAPI_NOTIFY`` (a setting, else the environment variable: the URLs hold secrets, as the token):
    Apprise URLs, a list or one string (separated by spaces or commas), each one Apprise can send to
    (checked here, so that a typo fails at start-up, not at 3 a.m. when the run fails)."""
    raw = _get(settings, "JUSTONEAPI_NOTIFY") or environ.get("JUSTONEAPI_NOTIFY")
    if not raw:
        return ()
    parts = raw if isinstance(raw, (list, tuple)) else re.split(r"[\s,]+", str(raw))
    urls = tuple(str(part).strip() for part in parts if str(part).strip())
    if not urls:
        return ()
    from rednote_crawl.redaction import mask_url

    for url in urls:
        if "://" not in url or apprise().Apprise.instantiate(url) is None:
            raise ConfigError(
                f"JUSTONEAPI_NOTIFY: {mask_url(url)} is not a notification URL Apprise can send to; write one like "
                "json://HOST:PORT/PATH, mailtos://USER:PASSWORD@HOST, dingtalk://TOKEN, feishu://TOKEN, "
                "wecombot://KEY or slack://... (https://github.com/caronc/apprise/wiki)"
            )
    return urls


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When the end-of-run monitors call a run a failure (``JUSTONEAPI_MONITOR_*``)."""

    failed_pages: int = DEFAULTS["JUSTONEAPI_MONITOR_FAILED_PAGES"]
    rate_limited: float = DEFAULTS["JUSTONEAPI_MONITOR_RATE_LIMITED"]
    cost_factor: float = DEFAULTS["JUSTONEAPI_MONITOR_COST_FACTOR"]
    history: int = DEFAULTS["JUSTONEAPI_MONITOR_HISTORY"]
    silent_after: int = DEFAULTS["JUSTONEAPI_MONITOR_SILENT_AFTER"]

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> Thresholds:
        share = _number(settings, "JUSTONEAPI_MONITOR_RATE_LIMITED", float, 0)
        if share > 1:
            raise ConfigError(f"JUSTONEAPI_MONITOR_RATE_LIMITED={share!r} is a share of the calls; set 0 to 1 (0.05: 5%)")
        return cls(
            failed_pages=_number(settings, "JUSTONEAPI_MONITOR_FAILED_PAGES", int, 0),
            rate_limited=share,
            cost_factor=_number(settings, "JUSTONEAPI_MONITOR_COST_FACTOR", float, 0),
            history=_number(settings, "JUSTONEAPI_MONITOR_HISTORY", int, 1),
            silent_after=_number(settings, "JUSTONEAPI_MONITOR_SILENT_AFTER", int, 0),
        )


@dataclass(frozen=True, slots=True)
class ApiConfig:
    token: str = field(repr=False)
    base_url: str
    timeout: float
    max_rps: float  # a ceiling (0: none); below it the limiter finds the token's limit
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
    details_update: bool = False
    job_dir: str | None = None
    state_dir: str | None = None
    redis_url: str | None = field(default=None, repr=False)  # distributed mode (it may hold a password)
    redis_lease: float = DEFAULTS["JUSTONEAPI_REDIS_LEASE"]
    redis_heartbeat: float = DEFAULTS["JUSTONEAPI_REDIS_HEARTBEAT"]
    sandbox: bool = False  # the offline sandbox (it brings its own token)
    notify: tuple[str, ...] = field(default=(), repr=False)  # Apprise URLs (they hold webhook keys, passwords)
    notify_on: str = DEFAULTS["JUSTONEAPI_NOTIFY_ON"]
    notify_timeout: float = DEFAULTS["JUSTONEAPI_NOTIFY_TIMEOUT"]
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_settings(
        cls, settings: BaseSettings, environ: Mapping[str, str] = os.environ, require_token: bool = True
    ) -> ApiConfig:
        token = str(_get(settings, "JUSTONEAPI_TOKEN") or environ.get("JUSTONEAPI_TOKEN") or "").strip()
        sandbox = flag(settings, "JUSTONEAPI_SANDBOX")
        if not token and require_token and not sandbox:
            raise ConfigError(
                "no API token: set the JUSTONEAPI_TOKEN environment variable. To try without a token, add "
                "-s JUSTONEAPI_SANDBOX=1 (the offline sandbox) to the command, as in "
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
        notify_on = str(_get(settings, "JUSTONEAPI_NOTIFY_ON"))
        if notify_on not in NOTIFY_ON:
            raise ConfigError(f"JUSTONEAPI_NOTIFY_ON={notify_on!r} is not valid; use one of: {', '.join(NOTIFY_ON)}")
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
        redis_lease = _number(settings, "JUSTONEAPI_REDIS_LEASE", float, 2)
        redis_heartbeat = _number(settings, "JUSTONEAPI_REDIS_HEARTBEAT", float, 0.05)
        if redis_lease < 2 * redis_heartbeat:
            raise ConfigError(
                f"JUSTONEAPI_REDIS_LEASE={redis_lease} is shorter than two heartbeats (JUSTONEAPI_REDIS_HEARTBEAT="
                f"{redis_heartbeat}): a live worker's leases would run out; raise the lease or shorten the heartbeat"
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
            details_update=flag(settings, "JUSTONEAPI_DETAILS_UPDATE"),
            job_dir=str(settings.get("JUSTONEAPI_JOB_DIR") or "").strip() or None,
            state_dir=str(settings.get("JUSTONEAPI_STATE_DIR") or "").strip() or None,
            redis_url=redis,
            redis_lease=redis_lease,
            redis_heartbeat=redis_heartbeat,
            sandbox=sandbox,
            notify=notify_urls(settings, environ),
            notify_on=notify_on,
            notify_timeout=_number(settings, "JUSTONEAPI_NOTIFY_TIMEOUT", float, 1),
            thresholds=Thresholds.from_settings(settings),
        )


def local_path(uri: str) -> Path | None:
    """The file a feed URI names, or None for remote storage and stdout."""
    path = uri.removeprefix("file://")
    if "://" in path or path.startswith("stdout:"):
        return None
    return Path(path).expanduser()


def fixed_output_file(uri: str) -> Path | None:
    """The local file a feed URI names once and for all; None for remote storage, stdout, or a name
    made at open time from the spider or the time (``%(time)s``): those are checked when they open."""
    path = local_path(uri)
    return None if path is None or "%(" in str(path) else path


def query_hash(key: Iterable[str]) -> int:
    return int.from_bytes(hashlib.blake2b(orjson.dumps(list(key)), digest_size=16).digest(), "big")


def queries_fingerprint(keys: Iterable[Iterable[str]]) -> str:
    """Which queries a crawl covers, whatever their order, in 32 hex digits (a crawl of a
    million keywords keeps this, not the list)."""
    return f"{sum(query_hash(key) for key in keys) % 2**128:032x}"


ARGUMENTS = ("keywords", "keyword", "sort", "note_type", "note_time", "max_pages", "since", "details")
NO_KEYWORDS = (
    "no keywords: pass -a keywords=PATH, a file with one keyword per line (see seeds/brands.txt), "
    "or -a keyword=海信,Nike; "
    "only a worker of a distributed crawl (REDIS_URL set) runs without keywords"
)
SINCE_LAST_NEEDS_JOB = (
    "-a since=last needs -s JUSTONEAPI_JOB_DIR=DIR: the job folder remembers when its last crawl began"
)


@dataclass(slots=True)
class SearchArgs:
    """The spider's arguments (``-a name=value``), each checked on its own by ``parse``."""

    keywords: Keywords | None
    sorts: tuple[str, ...] = (api.DEFAULT_SORT,)
    note_types: tuple[str, ...] = (api.DEFAULT_NOTE_TYPE,)
    note_times: tuple[str, ...] = (api.DEFAULT_NOTE_TIME,)
    max_pages: int | None = None  # None: JUSTONEAPI_MAX_PAGES
    since: int | str | None = None  # epoch seconds, or "last"
    details: str = "none"  # which new notes get a note detail call (api.DETAILS_MODES)
    details_update: bool = False  # ",update": notes earlier crawls found too
    fingerprint: str | None = None  # which queries (queries_fingerprint), found by check() for a job folder

    @classmethod
    def parse(
        cls,
        keywords: str | None = None,
        keyword: str | None = None,
        sort: str | None = None,
        note_type: str | None = None,
        note_time: str | None = None,
        max_pages: str | int | None = None,
        since: str | None = None,
        details: str | None = None,
        **others: Any,
    ) -> SearchArgs:
        if secret := [name for name in others if "token" in name.lower()]:
            raise ConfigError(
                f"the token must not be a spider argument (-a {secret[0]}=...): arguments show up in logs "
                "and process lists. Set the JUSTONEAPI_TOKEN environment variable instead."
            )
        # A mistyped argument would crawl, and pay for, the unfiltered defaults. Names starting
        # with "_" belong to the tools that run spiders (scrapyd's _job).
        if unknown := [name for name in others if not name.startswith("_")]:
            close = difflib.get_close_matches(unknown[0], ARGUMENTS, n=1)
            raise ConfigError(
                f"unknown spider argument -a {unknown[0]}=...; the arguments are: {', '.join(ARGUMENTS)}"
                + (f"; did you mean -a {close[0]}=...?" if close else "")
            )
        if keywords and keyword:
            raise ConfigError("pass -a keywords=FILE or -a keyword=WORD,WORD, not both")
        if keyword and (files := [k for k in keyword.split(",") if k.strip() and Path(k.strip()).is_file()]):
            # It would search the path's text, and pay for every page of it.
            raise ConfigError(
                f"-a keyword={files[0].strip()} names a file: keyword= takes the keywords themselves; "
                f"for a keyword file, pass -a keywords={files[0].strip()}"
            )
        return cls(
            keywords=Keywords.from_file(keywords) if keywords else Keywords.from_inline(keyword) if keyword else None,
            sorts=_choices("sort", sort, api.SORTS, api.DEFAULT_SORT),
            note_types=_choices("note_type", note_type, api.NOTE_TYPES, api.DEFAULT_NOTE_TYPE),
            note_times=_choices("note_time", note_time, api.NOTE_TIMES, api.DEFAULT_NOTE_TIME),
            max_pages=_max_pages(max_pages),
            since=_since(since),
            **_details(details),
        )

    def check(self, config: ApiConfig) -> int:
        """Check the arguments against the settings and read the keyword file through once
        (``SeedFileError`` on a bad one). Returns the number of queries (0: a worker without keywords)."""
        if self.keywords is None and not config.redis_url:
            raise ConfigError(NO_KEYWORDS)
        if self.since == "last" and not config.job_dir:
            raise ConfigError(SINCE_LAST_NEEDS_JOB)
        if self.keywords is None:
            return 0
        if not config.job_dir:
            return len(self.keywords) * self.combinations
        # A job folder tells its open crawl by the queries it covers: found in the same pass.
        total = 0

        def add(keyword: str) -> None:
            nonlocal total
            for sort, note_type, note_time in self.filters():
                total += query_hash((keyword, sort, note_type, note_time))

        count = self.keywords.check(visit=add)
        self.fingerprint = f"{total % 2**128:032x}"
        return count * self.combinations

    def filters(self) -> Iterator[tuple[str, str, str]]:
        return itertools.product(self.sorts, self.note_types, self.note_times)

    @property
    def combinations(self) -> int:
        """Filter combinations per keyword."""
        return len(self.sorts) * len(self.note_types) * len(self.note_times)

    def queries(self) -> Iterator[api.Query]:
        """Every keyword with every filter combination, streamed from the keyword file."""
        for keyword in self.keywords or ():
            for sort, note_type, note_time in self.filters():
                yield api.Query(keyword, sort, note_type, note_time)


def _choices(option: str, raw: str | None, choices: dict[str, str], default: str) -> tuple[str, ...]:
    try:
        return tuple(api.parse_choices(option, raw, choices, default))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _details(raw: str | None) -> dict[str, Any]:
    """``-a details=none|new|cut|brand``, with ``,update`` for notes earlier crawls found."""
    parts = [part.strip().lower() for part in str(raw or "none").split(",") if part.strip()]
    update = "update" in parts
    modes = [part for part in parts if part != "update"] or (["new"] if update else ["none"])
    if len(modes) != 1 or modes[0] not in api.DETAILS_MODES:
        raise ConfigError(
            f"-a details={raw} is not valid; use one of: {', '.join(api.DETAILS_MODES)} "
            "(add ,update to fetch the details of notes earlier crawls found too)"
        )
    return {"details": modes[0], "details_update": update}


def _max_pages(raw: str | int | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"max_pages={raw!r} is not a whole number >= 1; pass e.g. -a max_pages=20")
    return value


def _since(raw: str | None) -> int | str | None:
    """``2026-11-20`` (UTC midnight), an ISO 8601 time, or ``last``."""
    if raw is None or not str(raw).strip():
        return None
    text = str(raw).strip()
    if text == "last":
        return "last"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"since={raw!r} is not a date; pass -a since=2026-11-20, -a since=2026-11-20T08:00:00+08:00 or -a since=last"
        ) from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
