"""``scrapy crawl`` with an exit status that tells what happened (docs/reference.md, "Exit status").

Scrapy's own command exits 0 whatever the finish reason. This one maps the
finish reason (and pages that failed after every retry) to a status a cron job
or scrapyd can act on, and turns a bad argument or setting into one clear
error line instead of a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError

from rednote_crawl.config import ConfigError, SearchArgs
from rednote_crawl.run.monitors import notify_refusal
from rednote_crawl.run.plan import render_plan
from rednote_crawl.run.quiet import quiet_scrapy
from rednote_crawl.seeds import SeedFileError
from rednote_crawl.stops import EXIT_BAD_INPUT, exit_status

if TYPE_CHECKING:
    import argparse

    from scrapy.crawler import Crawler

logger = logging.getLogger("rednote_crawl")


class Command(ScrapyCrawlCommand):
    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--dry-run", action="store_true", help="say how many queries and pages the crawl could cost; call nothing"
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        assert self.settings is not None
        quiet_scrapy(self.settings)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("run one spider: scrapy crawl note_search -a keywords=PATH")
        assert self.crawler_process is not None
        if opts.dry_run:
            self.exitcode = self._dry_run(args[0], opts.spargs)
            return
        try:
            crawler = self._create_crawler(args[0])
        except KeyError:
            spiders = ", ".join(self.crawler_process.spider_loader.list())
            raise UsageError(f"no spider named {args[0]!r}; this project has: {spiders}", print_help=False) from None
        self.bad_input: str | None = None
        started = self.crawler_process.crawl(crawler, **opts.spargs)
        if isinstance(started, asyncio.Future):
            started.add_done_callback(self._check_start)
        else:
            started.addErrback(self._check_start_failure)
        self.crawler_process.start()
        self.exitcode = self._exit_status(crawler)
        if self.bad_input is not None:  # the monitors never ran: the start-up refused the run
            notify_refusal(crawler.settings, crawler.spidercls.name, self.bad_input)

    def _dry_run(self, name: str, spargs: dict[str, Any]) -> int:
        assert self.crawler_process is not None and self.settings is not None
        try:
            spidercls = self.crawler_process.spider_loader.load(name)
            print(render_plan(spidercls.name, SearchArgs.parse(**spargs), self.settings))
        except (ConfigError, SeedFileError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        return 0

    def _check_start(self, task: asyncio.Future[Any]) -> None:
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, (ConfigError, SeedFileError)):
            self.bad_input = str(exc)
            logger.error("Cannot start: %s", exc)
        elif exc is not None:
            logger.error("Crawl failed", exc_info=exc)

    def _check_start_failure(self, failure: Any) -> None:
        if failure.check(ConfigError, SeedFileError):
            self.bad_input = str(failure.value)
            logger.error("Cannot start: %s", failure.value)
            return None
        return failure

    def _exit_status(self, crawler: Crawler) -> int:
        if self.bad_input is not None:
            return EXIT_BAD_INPUT
        if self.crawler_process.bootstrap_failed:
            return 1
        stats = crawler.stats.get_stats() if crawler.stats else {}
        return exit_status(stats.get("finish_reason"), stats)
