"""Every note that goes out, checked against the output's JSON Schema (``rednote_crawl/schema``).

A note that does not validate is counted (``Stat.ITEMS_INVALID``, which the ``invalid_items``
monitor reads) and the first few are logged with what is wrong, but it still goes out: a note the
API returned and the crawl paid for is never dropped for its shape. jsonschema-rs checks a note in
about 2 microseconds, 0.2% of the crawl's CPU per note (docs/benchmarks.md, "CPU per note"), so
every note is checked, not a sample.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from rednote_crawl.names import Stat
from rednote_crawl.schema import note_schema

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

LOGGED = 3  # invalid notes logged a run, with what is wrong; the rest are counted


class NoteSchemaPipeline:
    def __init__(self, crawler: Crawler) -> None:
        self.stats = crawler.stats
        self.validator = jsonschema_rs.validator_for(note_schema())
        self.stats.set_value(Stat.ITEMS_INVALID, 0)  # checked: 0 is a verdict, a missing stat is none

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NoteSchemaPipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        if self.validator.is_valid(item):
            return item
        invalid = self.stats.get_value(Stat.ITEMS_INVALID, 0) + 1
        self.stats.set_value(Stat.ITEMS_INVALID, invalid)
        if invalid <= LOGGED:
            error = next(self.validator.iter_errors(item), None)
            where = "/".join(str(p) for p in error.instance_path) if error is not None else ""
            logger.warning(
                "Note %s does not match the output's schema%s: %s (it is written all the same)",
                item.get("note_id") if isinstance(item, dict) else None,
                f" at {where}" if where else "",
                error.message if error is not None else "invalid",
            )
        return item
