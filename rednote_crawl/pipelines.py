"""Item pipelines: each note once per run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from itemadapter import ItemAdapter
from scrapy.exceptions import DropItem, NotConfigured

from rednote_crawl.config import ApiConfig
from rednote_crawl.distributed.shared import shared_crawl
from rednote_crawl.middlewares.resume import job_state

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class NoteDedupePipeline:
    """Drops a note whose ``note_id`` already went out.

    The same note comes back on consecutive pages and under many keywords; the
    first copy to arrive wins, so ``keyword`` is the seed keyword whose page
    brought it first. With a job state folder, the notes already in the output
    of a resumed crawl count as gone out, and so, unless
    ``JUSTONEAPI_SEEN_NOTES=update``, do the notes that earlier crawls found.
    """

    def __init__(self, crawler: Crawler) -> None:
        if shared_crawl(crawler) is not None:
            raise NotConfigured  # distributed: RedisNotePipeline dedupes in Redis
        self.stats = crawler.stats
        state = job_state(crawler)
        self.seen: set[str] = set(state.exported) if state else set()
        skip_earlier = state is not None and ApiConfig.of(crawler).seen_notes == "skip"
        self.earlier: set[str] = state.history - self.seen if skip_earlier and state else set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NoteDedupePipeline:
        return cls(crawler)

    async def process_item(self, item: Any) -> Any:
        note_id = ItemAdapter(item).get("note_id")
        if not await self.first_time(note_id, item):
            self.stats.inc_value("justoneapi/notes/duplicate")
            raise DropItem(f"duplicate note {note_id}", log_level="DEBUG")
        if note_id in self.earlier:
            self.stats.inc_value("justoneapi/notes/found_by_an_earlier_crawl")
            raise DropItem(f"note {note_id} was found by an earlier crawl", log_level="DEBUG")
        self.stats.inc_value("justoneapi/notes/unique")
        return item

    async def first_time(self, note_id: str, item: Any) -> bool:
        if note_id in self.seen:
            return False
        self.seen.add(note_id)
        return True
