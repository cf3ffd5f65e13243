"""Everything a crawl checks and takes before its first call, in one place (an extension).

Extensions are built after the add-ons and before the engine: before any feed opens (Scrapy's
feed exporter opens ``-O`` files at ``spider_opened``), so a run refused here, for a locked job
folder say, has emptied no output. This extension is built first (its order is the lowest), so
every settings change is made before a component reads it. In order:

1. ``settle``: the token is not on the command line; the sandbox started and the settings pointed
   at it; the crawl's one ``ApiConfig``; the download timeout;
2. the token's masking in logs; the spider's arguments against the settings (the keyword file read
   through once);
3. ``check``: what a dry run checks too, touching nothing (the home's check: Redis answers, the job
   folder is free; every local output can be written);
4. the home's ``open`` takes what the crawl needs, and says where the notes go (``FEEDS``); a local
   output's missing folder is created (the log says so).

A failure raises ``ConfigError`` (or ``SeedFileError``) naming the problem and the fix:
``scrapy crawl`` prints it and exits 2, with nothing sent. Afterwards this extension opens and
ends the run in the state (``begin`` at ``spider_opened``, ``end`` once the feeds are stored).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scrapy import signals as scrapy_signals

from rednote_crawl import redaction
from rednote_crawl.config import (
    SANDBOX_TOKEN,
    ApiConfig,
    ConfigError,
    fixed_output_file,
    flag,
    refuse_token_on_the_command_line,
)
from rednote_crawl.names import Stat
from rednote_crawl.run.report import plural
from rednote_crawl.state import open_state, state_class

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)


class CrawlStart:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.reason: str | None = None
        settings = crawler.settings
        config = settle(settings)
        redaction.install(config.token)
        spider = crawler.spider
        queries = spider.args.check(config)
        check(config, settings)
        self.state = state = open_state(crawler, config)
        feeds = settings.getdict("FEEDS")
        if (wanted := state.open(dict(feeds))) != feeds:
            settings.set("FEEDS", wanted, priority="cmdline")
        for uri in wanted:
            _create_folder(str(uri))
        logger.info("Just One API at %s, token %s", config.base_url, redaction.mask(config.token))
        if len(config.token) < redaction.SHORT_TOKEN and not config.sandbox:
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


def settle(settings: BaseSettings) -> ApiConfig:
    """Every settings change of a run's start (a crawl's, a probe's), made before any component reads
    them; the run's one ``ApiConfig``."""
    refuse_token_on_the_command_line(settings)
    if flag(settings, "JUSTONEAPI_SANDBOX"):
        start_sandbox(settings)
    config = ApiConfig.from_settings(settings)
    settings.set("DOWNLOAD_TIMEOUT", config.timeout, priority="addon")
    return config


def check(config: ApiConfig, settings: BaseSettings) -> None:
    """What a crawl's start checks before it takes anything, touching nothing: a dry run runs only this."""
    state_class(settings).check(config, settings)
    for uri, options in settings.getdict("FEEDS").items():
        _check_writable(str(uri))
        _check_appendable(str(uri), options, config)


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
    """Whether a local output could be written, creating nothing (the start creates its folder)."""
    path = fixed_output_file(uri)
    if path is None:
        return
    problem = f"cannot write the output file {uri!r}"
    if path.is_dir():
        raise ConfigError(f"{problem}: it is a folder; choose a file with -O FILE")
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK) or (existing != path and not existing.is_dir()):
        raise ConfigError(f"{problem}: {existing or path} cannot be written; choose another path with -O FILE")


def _check_appendable(uri: str, options: dict, config: ApiConfig) -> None:
    """A workbook cannot be appended to (-o): without a job folder, one that has notes is refused."""
    path = fixed_output_file(uri)
    if options.get("format") != "xlsx" or options.get("overwrite") or config.job_dir is not None or path is None:
        return
    if path.is_file() and path.stat().st_size > 0:
        raise ConfigError(
            f"cannot append to the workbook {uri!r} (-o): write a new one with -O FILE.xlsx, or crawl with a job "
            "folder (-s JUSTONEAPI_JOB_DIR=DIR), where -o FILE.xlsx holds every note of the job"
        )


def _create_folder(uri: str) -> None:
    """A local output's folder, created as Scrapy's file feeds do; said, so that a typo in -O shows."""
    path = fixed_output_file(uri)
    if path is None or path.parent.exists():
        return
    try:
        path.parent.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the output file {uri!r}: {exc.strerror}; choose another path with -O FILE") from None
    logger.info("Created the folder %s for the output %s", path.parent, path.name)
