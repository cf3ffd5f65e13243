"""Item pipelines: each note once per run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from itemadapter import ItemAdapter
from scrapy.exceptions import DropItem

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class NoteDedupePipeline:
    """Drops a note whose ``note_id`` already went out in this run.

    The same note comes back on consecutive pages and under many keywords; the
    first copy to arrive wins, so ``keyword`` is the seed keyword whose page
    brought it first.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.stats = crawler.stats
        self.seen: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NoteDedupePipeline:
        return cls(crawler)

    async def process_item(self, item: Any) -> Any:
        note_id = ItemAdapter(item).get("note_id")
        if note_id in self.seen:
            self.stats.inc_value("justoneapi/notes/duplicate")
            raise DropItem(f"duplicate note {note_id}", log_level="DEBUG")
        self.seen.add(note_id)
        self.stats.inc_value("justoneapi/notes/unique")
        return item
