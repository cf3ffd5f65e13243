"""What a run prints at the default level: the plan, progress, warnings and the summary.

Scrapy logs about a hundred lines of its own start-up and end at INFO (versions, the overridden
settings, every enabled component, the stats dump) around the few a user reads. Below
``LOG_LEVEL=DEBUG`` those loggers speak only of warnings; ``-s LOG_LEVEL=DEBUG`` brings them back.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

CHATTY = (
    "scrapy.utils.log",  # "Scrapy started", versions, the reactor
    "scrapy.crawler",  # overridden settings
    "scrapy.addons",  # enabled add-ons
    "scrapy.middleware",  # enabled extensions, middlewares, pipelines
    "scrapy.core.engine",  # spider opened / closing / closed: the summary says how it ended
    "scrapy.extensions.logstats",  # "Crawled N pages": the progress line says it better
    "scrapy.extensions.telnet",
    "scrapy.statscollectors",  # the stats dump (the summary's figures come from it)
    "apprise",  # "Notifying 1 service(s)": run/notify.py says where it sent, masked
)


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def quiet_scrapy(settings: BaseSettings) -> None:
    """Keep Scrapy's start-up and stats dump out of a run's log, unless LOG_LEVEL is DEBUG.

    A filter on each logger, not a level: Scrapy's logging set-up resets the levels of its loggers.
    """
    level = logging.getLevelName(str(settings.get("LOG_LEVEL", "INFO")).upper())
    quiet = isinstance(level, int) and level > logging.DEBUG
    for name in CHATTY:
        logger = logging.getLogger(name)
        if quiet:
            logger.addFilter(_warnings_only)
        else:
            logger.removeFilter(_warnings_only)
