"""Each note once: the crawl state's seen notes decide."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from itemadapter import ItemAdapter
from scrapy.exceptions import DropItem

from rednote_crawl.names import Stat
from rednote_crawl.state import Verdict, crawl_state

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

STATS = {
    Verdict.NEW: Stat.NOTES_NEW,
    Verdict.REPEATED: Stat.NOTES_REPEATED,
    Verdict.EARLIER: Stat.NOTES_EARLIER,
    Verdict.WRITTEN: Stat.NOTES_WRITTEN,
}


class NoteDedupePipeline:
    """Drops a note whose ``note_id`` already went out.

    The same note comes back on consecutive pages and under many keywords; the first copy to
    arrive wins, so ``keyword`` is the seed keyword whose page brought it first. What "already
    went out" covers is the state's: this crawl (and, with a job folder, what a resumed crawl
    already wrote and, unless ``JUSTONEAPI_SEEN_NOTES=update``, what earlier crawls found), or,
    distributed, every note any worker delivered (a new note goes into the Redis list then).
    """

    def __init__(self, crawler: Crawler) -> None:
        self.pages = crawl_state(crawler).pages
        self.stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NoteDedupePipeline:
        return cls(crawler)

    async def process_item(self, item: Any) -> Any:
        note_id = ItemAdapter(item).get("note_id")
        verdict = await self.pages.claim(note_id, item)
        self.stats.inc_value(STATS[verdict])
        if verdict is Verdict.REPEATED:
            raise DropItem(f"duplicate note {note_id!r}", log_level="DEBUG")
        if verdict is Verdict.EARLIER:
            raise DropItem(f"note {note_id!r} was found by an earlier crawl", log_level="DEBUG")
        if verdict is Verdict.WRITTEN:
            raise DropItem(f"note {note_id!r} is in the output already (an earlier run)", log_level="DEBUG")
        return item
