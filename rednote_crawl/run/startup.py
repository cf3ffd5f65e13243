"""Everything a crawl checks and takes before its first call, in one place (an extension).

Extensions are built after the add-ons and before the engine: before any feed opens (Scrapy's
feed exporter opens ``-O`` files at ``spider_opened``), so a run refused here, for a locked job
folder say, has emptied no output. This extension is built first (its order is the lowest), so
the feeds it sets are the ones the feed exporter reads. In order:

1. ``JUSTONEAPI_SANDBOX``: start the offline sandbox and point the crawl at it;
2. the settings (building the crawl state validates them) and the token's masking in logs;
3. the spider's arguments against the settings, reading the keyword file through once;
4. the crawl state's own checks: Redis answers, or the job folder is free (and then taken);
   where the notes go (FEEDS);
5. every local output file can be written (a missing folder is created, and the log says so).

A failure raises ``ConfigError`` (or ``SeedFileError``) naming the problem and the fix:
``scrapy crawl`` prints it and exits 2, with nothing sent. Afterwards this extension opens and
ends the run in the state (``begin`` at ``spider_opened``, ``end`` once the feeds are stored).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scrapy import signals as scrapy_signals

from rednote_crawl import redaction
from rednote_crawl.config import SANDBOX_TOKEN, ConfigError, fixed_output_file, flag
from rednote_crawl.names import Stat
from rednote_crawl.run.report import plural
from rednote_crawl.state import crawl_state

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)


class CrawlStart:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.reason: str | None = None
        settings = crawler.settings
        self.sandbox = start_sandbox(settings) if flag(settings, "JUSTONEAPI_SANDBOX") else None
        self.state = state = crawl_state(crawler)
        config = state.config
        redaction.install(config.token)
        spider = crawler.spider
        queries = spider.args.check(config)
        state.open(settings)
        for uri in settings.getdict("FEEDS"):
            _check_writable(str(uri))
        logger.info("Just One API at %s, token %s", config.base_url, redaction.mask(config.token))
        if len(config.token) < redaction.SHORT_TOKEN and self.sandbox is None:
            logger.warning(
                "JUSTONEAPI_TOKEN is %d characters long: too short for a real token (only the sandbox accepts any token); "
                "check it with `scrapy probe KEYWORD`",
                len(config.token),
            )
        host = urlsplit(config.base_url).hostname or ""
        if config.base_url.startswith("http://") and host not in ("localhost", "::1") and not host.startswith("127."):
            logger.warning("JUSTONEAPI_BASE_URL uses plain http: the token crosses the network unencrypted")
        if queries:
            crawler.stats.set_value(Stat.QUERIES_TOTAL, queries)
            keywords = queries // spider.args.combinations
            logger.info(
                "Searching %s x %s = %s, at most %d pages each",
                plural(keywords, "keyword"),
                plural(spider.args.combinations, "filter combination"),
                plural(queries, "query"),
                spider.max_pages,
            )
        crawler.signals.connect(self.spider_opened, signal=scrapy_signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=scrapy_signals.spider_closed)
        crawler.signals.connect(self.engine_stopped, signal=scrapy_signals.engine_stopped)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlStart:
        return cls(crawler)

    def spider_opened(self) -> None:
        self.state.begin()

    def spider_closed(self, reason: str) -> None:
        self.reason = reason

    def engine_stopped(self) -> None:
        """The feeds are stored by now: the state may record the run as complete."""
        if self.reason is not None:
            self.state.end(self.reason, self.crawler.stats.get_stats())


def start_sandbox(settings: BaseSettings) -> object:
    """The offline sandbox, in a thread of this process; the settings point at it (and its token)."""
    from rednote_crawl.sandbox import SandboxServer

    sandbox = SandboxServer()
    url = sandbox.start_in_thread()
    settings.set("JUSTONEAPI_BASE_URL", url, priority="cmdline")
    if not settings.get("JUSTONEAPI_TOKEN"):
        settings.set("JUSTONEAPI_TOKEN", SANDBOX_TOKEN, priority="cmdline")
    logger.warning("JUSTONEAPI_SANDBOX is on: calling the offline sandbox at %s, not the real API", url)
    return sandbox


def _check_writable(uri: str) -> None:
    """Fail before any paid call when a local output file cannot be written (nothing in it is lost)."""
    path = fixed_output_file(uri)
    if path is None:
        return
    problem = f"cannot write the output file {uri!r}"
    try:
        if not path.parent.exists():  # as Scrapy's file feeds do; said, so that a typo in -O shows
            path.parent.mkdir(parents=True)
            logger.info("Created the folder %s for the output %s", path.parent, path.name)
        if path.is_dir():
            raise ConfigError(f"{problem}: it is a folder; choose a file with -O FILE")
        existed = path.exists()
        with path.open("ab"):  # opened to append: nothing in it is lost
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise ConfigError(f"{problem}: {exc.strerror}; choose another path with -O FILE") from None
