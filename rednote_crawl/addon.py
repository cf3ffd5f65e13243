"""The project's add-on (``ADDONS`` in settings.py): settings and components, nothing else.

It picks the home of the crawl's state once (Redis when ``REDIS_URL`` is set, else local) and
registers the components that fit it, as scrapy-zyte-api's add-on does; the components never ask
which home they run in. Every other settings change, and every check, is the start-up's
(``run/startup.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy.utils.misc import load_object

from rednote_crawl.config import redis_url
from rednote_crawl.state import LOCAL_STATE, REDIS_STATE

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

# Every crawl: the policy, the throttle, the page bookkeeping, the dedupe, the start-up and summary.
COMPONENTS = {
    "DOWNLOADER_MIDDLEWARES": {
        "rednote_crawl.downloader.policy.ApiPolicyMiddleware": 550,
        "rednote_crawl.downloader.throttle.TokenThrottleMiddleware": 950,
    },
    "SPIDER_MIDDLEWARES": {"rednote_crawl.spidermw.pages.PageBookMiddleware": 950},
    # Each note once, then checked against the output's schema (counted, never dropped).
    "ITEM_PIPELINES": {
        "rednote_crawl.items.dedupe.NoteDedupePipeline": 100,
        "rednote_crawl.items.details.NoteDetailPipeline": 120,  # -a details=: a new note held for its details
        "rednote_crawl.items.validate.NoteSchemaPipeline": 150,
    },
    # The start-up is built first (lowest order), before the feed exporter reads FEEDS.
    # At engine_stopped (in this order): the start-up ends the run in the state, the monitors judge
    # it, the summary says it last.
    "EXTENSIONS": {
        "rednote_crawl.run.startup.CrawlStart": -1000,
        "rednote_crawl.run.monitors.CrawlMonitors": 400,
        "rednote_crawl.run.summary.CrawlSummary": 500,
    },
}
# With REDIS_URL: the state in Redis, and what only it needs.
REDIS_COMPONENTS = {
    "EXTENSIONS": {"rednote_crawl.distributed.worker.DistributedWorker": 500},
}
LEASED_SCHEDULER = "rednote_crawl.distributed.scheduler.LeasedScheduler"


class JustOneApiAddon:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> JustOneApiAddon:
        return cls(crawler)

    def update_settings(self, settings: BaseSettings) -> None:
        _register(settings, COMPONENTS)
        if redis_url(settings):
            _register(settings, REDIS_COMPONENTS)
            settings.set("JUSTONEAPI_STATE_CLASS", REDIS_STATE, priority="addon")
            settings.set("SCHEDULER", LEASED_SCHEDULER, priority="addon")
            settings.set("SCHEDULER_PERSIST", True, priority="addon")
        else:
            settings.set("JUSTONEAPI_STATE_CLASS", LOCAL_STATE, priority="addon")


def _register(settings: BaseSettings, components: dict[str, dict[str, int]]) -> None:
    """Add each component unless the project or the command line already lists it (None: off)."""
    for name, entries in components.items():
        for path, order in entries.items():
            settings.setdefault_in_component_priority_dict(name, load_object(path), order)
