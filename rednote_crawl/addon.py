"""Start-up of every crawl in this project (``ADDONS`` in settings.py).

Add-ons run before Scrapy logs or builds anything, so this is where the
``JUSTONEAPI_*`` settings are validated (a bad value fails the crawl before any
request), where the token is hidden from every log line, and where
``JUSTONEAPI_SANDBOX`` starts the offline sandbox and points the crawl at it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import redis
from scrapy.settings import SETTINGS_PRIORITIES

from rednote_crawl import redaction
from rednote_crawl.config import SANDBOX_TOKEN, ApiConfig, ConfigError, flag
from rednote_crawl.distributed.shared import REDIS_ERRORS, connect, display_url
from rednote_crawl.jobstate import JobState, local_path, note_ids, query_key, repair_jsonl
from rednote_crawl.middlewares.resume import job_state, local_feeds

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

# The feed used when the command line names none (-o/-O) and FEEDS is empty; with a job
# state folder, JUSTONEAPI_JOB_DIR/crawl-NNNN.jsonl.
DEFAULT_FEED_OPTIONS = {"format": "jsonlines", "encoding": "utf-8"}
SAFE_LEASE = 10  # seconds: leases are renewed every second, by Redis calls with 5 s timeouts
DEFAULT_FEEDS = {"output/%(name)s-%(time)s.jsonl": DEFAULT_FEED_OPTIONS}


class JustOneApiAddon:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.sandbox = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> JustOneApiAddon:
        return cls(crawler)

    def update_settings(self, settings: BaseSettings) -> None:
        if settings.getpriority("JUSTONEAPI_TOKEN") == SETTINGS_PRIORITIES["cmdline"]:
            raise ConfigError(
                "the token must not be passed with -s JUSTONEAPI_TOKEN=... (or a scrapyd job's setting=): command "
                "lines show up in process lists and scrapyd's logs and listjobs.json. Set the JUSTONEAPI_TOKEN "
                "environment variable where the crawl runs (for scrapyd: in the scrapyd service's environment)"
            )
        if flag(settings, "JUSTONEAPI_SANDBOX"):
            self._start_sandbox(settings)
        config = ApiConfig.of(self.crawler)
        redaction.install(config.token)
        settings.set("DOWNLOAD_TIMEOUT", config.timeout, priority="addon")
        state = job_state(self.crawler)
        if config.redis_url:
            _distributed(settings, config.redis_url, config.redis_lease)
        elif not settings.getdict("FEEDS"):
            feeds = {str(state.output): DEFAULT_FEED_OPTIONS} if state else DEFAULT_FEEDS
            settings.set("FEEDS", feeds, priority="addon")
        for uri in settings.getdict("FEEDS"):
            _check_writable(str(uri))
        if state is not None and state.resuming:
            self._resume_feeds(settings, state)
        logger.info("Just One API at %s, token %s", config.base_url, redaction.mask(config.token))
        host = urlsplit(config.base_url).hostname or ""
        if config.base_url.startswith("http://") and host not in ("localhost", "::1") and not host.startswith("127."):
            logger.warning("JUSTONEAPI_BASE_URL uses plain http: the token crosses the network unencrypted")

    def _resume_feeds(self, settings: BaseSettings, state: JobState) -> None:
        """Resume only the same crawl; append to its outputs (even with -O), mended first.

        The notes this crawl already wrote (from the offset where it began in each file) are
        not written again.
        """
        spider = self.crawler.spider
        planned = {tuple(q) for q in state.crawl_record.get("queries", [])}
        if planned and planned != {query_key(q) for q in spider.queries()}:
            raise ConfigError(
                f"the open crawl {state.crawl} in JUSTONEAPI_JOB_DIR={str(state.folder)!r} was started with other "
                "keywords or filters: run it again with the same arguments to finish it, or name another job folder"
            )
        offsets = state.crawl_record.get("outputs", {})
        feeds = {}
        readable = local_feeds(settings)
        for uri, options in settings.getdict("FEEDS").items():
            path = local_path(str(uri))
            if path is not None and path in readable:
                state.exported |= note_ids(repair_jsonl(path, start=offsets.get(str(path), 0)))
            else:
                logger.warning(
                    "Feed %s is not one fixed local JSON Lines file: a resumed job cannot tell what it holds", uri
                )
            feeds[uri] = {**options, "overwrite": False}
        settings.set("FEEDS", feeds, priority="cmdline")
        logger.info("Resuming: %d notes this crawl already wrote are not written again", len(state.exported))

    def _start_sandbox(self, settings: BaseSettings) -> None:
        from rednote_crawl.sandbox import SandboxServer

        self.sandbox = SandboxServer()
        url = self.sandbox.start_in_thread()
        settings.set("JUSTONEAPI_BASE_URL", url, priority="cmdline")
        if not settings.get("JUSTONEAPI_TOKEN"):
            settings.set("JUSTONEAPI_TOKEN", SANDBOX_TOKEN, priority="cmdline")
        logger.warning("JUSTONEAPI_SANDBOX is on: crawling the offline sandbox at %s, not the real API", url)


def _distributed(settings: BaseSettings, url: str, lease: float) -> None:
    """REDIS_URL: the queue, the dupefilter, note dedupe and the notes themselves live in Redis.

    The notes go to the list ``<spider>:items`` (``scrapy redis drain`` writes them to a file),
    so there is no default feed; ``-o FILE`` still writes the notes this worker delivered.
    """
    try:
        connect(url, settings).ping()
    except REDIS_ERRORS as exc:
        raise ConfigError(
            f"cannot reach Redis at REDIS_URL={display_url(url)!r} ({exc}); start redis-server there, or fix REDIS_URL"
        ) from None
    except redis.RedisError as exc:
        raise ConfigError(f"Redis at REDIS_URL={display_url(url)!r} refused us ({exc}); check its password") from None
    if lease < SAFE_LEASE:
        logger.warning(
            "JUSTONEAPI_REDIS_LEASE=%s: a lease this short can run out during one slow Redis call (5 s timeouts), "
            "and its page is then paid for twice; use %s or more outside tests",
            lease,
            SAFE_LEASE,
        )
    settings.set("SCHEDULER", "rednote_crawl.distributed.scheduler.LeasedScheduler", priority="addon")
    settings.set("SCHEDULER_PERSIST", True, priority="addon")


def _check_writable(uri: str) -> None:
    """Fail before any paid call when a local output file cannot be written."""
    path = local_path(uri)
    if path is None or "%(" in str(path):
        return  # remote, or named after the spider or the time: checked when the feed opens
    problem = f"cannot write the output file {uri!r}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise ConfigError(f"{problem}: it is a folder; choose a file with -O FILE")
        existed = path.exists()
        with path.open("ab"):  # opened to append: nothing in it is lost
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise ConfigError(f"{problem}: {exc.strerror}; choose another path with -O FILE") from None
