"""The whole note: the opt-in note detail call (``-a details=new|cut|brand``), a second stage of the crawl.

A new note that needs details is held here (not delivered) until its detail call ends, then goes
on once, whole: with its details (``api.detail_fields``), or without them and a ``details`` field
that says why (failed after its retries, the note gone, not asked). A detail call that fails never
loses its note.

The call is an ordinary request (``search.DetailCall`` under ``Meta.CALL``) sent through the
engine's downloader: the same throttle (the token's one rate, the one budget, the stops), the same
policy (``api.judge``, with a note's own codes ending only that call) and the same handler (the
token at the last hop). Its answer is stored in the page store before the note goes on
(``detail_read``: with a job folder, in its database, so a resumed run pays for it once and
finishes the notes a stop or a kill held); the throttle hears ``page_stored`` then.

Distributed (Redis), a note is not held here: the page script holds it in Redis and queues its
detail call, leased like a page (``RedisPages``); the worker that takes the call ends it in the
spider's ``parse_detail``/``detail_error`` (``NoteSearchSpider.deliver_held``) deliver the note, whole, in the
script that acks the call's lease. A worker killed meanwhile loses nothing: its lease runs out and
another worker makes the call.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import scrapy
from scrapy.exceptions import DropItem

from rednote_crawl import api, signals
from rednote_crawl.names import Meta, Stat
from rednote_crawl.search import (
    Accounted,
    DetailCall,
    DetailResponse,
    NoteGone,
    record_failed_page,
    stop_storage_failed,
    stopping,
)
from rednote_crawl.state import StorageError, crawl_state

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

STATS = {
    api.Details.FETCHED: Stat.DETAILS_FETCHED,
    api.Details.NOT_ASKED: Stat.DETAILS_NOT_ASKED,
}


class HeldForNextRun(DropItem):
    """A note whose detail call the stopping crawl did not make: the job folder's next run delivers it."""


class NoteDetailPipeline:
    """After the dedupe pipeline: each new note, with its details when ``-a details=`` asks for them."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        state = crawl_state(crawler)
        self.pages = state.pages
        self.config = state.config
        self.stats = crawler.stats
        self.stopping = stopping(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NoteDetailPipeline:
        return cls(crawler)

    @property
    def mode(self) -> str:
        return getattr(getattr(self.crawler.spider, "args", None), "details", "none")

    @property
    def update(self) -> bool:
        args = getattr(self.crawler.spider, "args", None)
        return bool(getattr(args, "details_update", False)) or self.config.details_update

    async def process_item(self, item: Any) -> Any:
        if self.pages.leases_details:  # distributed: already whole (delivered by its detail call), or not asked
            if item.get("details") == api.Details.NOT_ASKED:
                self.stats.inc_value(STATS[api.Details.NOT_ASKED])
            return item
        mode = self.mode
        if mode == "none":
            return item  # today's cost: no detail call, the item as search gave it
        note_id = item["note_id"]
        if not api.wants_details(mode, item) or (not self.update and await self.pages.found_earlier(note_id)):
            return self._out(item, None, api.Details.NOT_ASKED)
        stored = await self.pages.detail_stored(note_id)
        if stored is not None:  # paid by an earlier run of this crawl (a stop or a kill held the note)
            self.stats.inc_value(Stat.DETAILS_REUSED)
            status, detail = stored
            return api.merge_details(item, detail, status)
        status, detail = await self._call(note_id)
        if status is api.Details.NOT_SENT and self.pages.keeps_held_notes:
            self.stats.inc_value(Stat.DETAILS_HELD)
            raise HeldForNextRun(f"note {note_id!r} waits for its details: the next run delivers it", log_level="DEBUG")
        return self._out(item, detail, status)

    def _out(self, item: dict[str, Any], detail: dict[str, Any] | None, status: api.Details) -> dict[str, Any]:
        if status in STATS:
            self.stats.inc_value(STATS[status])
        return api.merge_details(item, detail, status.value)

    async def _call(self, note_id: str) -> tuple[api.Details, dict[str, Any] | None]:
        """Make the note's detail call and store how it ended; (status, the API's note)."""
        request = scrapy.Request(
            api.detail_url(self.config.base_url, note_id), meta={Meta.CALL: DetailCall(note_id)}, dont_filter=True
        )
        detail: dict[str, Any] | None = None
        answered = request
        try:
            response = await self.crawler.engine.download_async(request)
        except NoteGone:
            status = api.Details.NOTE_GONE
        except Accounted:  # out of tries (counted by the policy), or not sent: the crawl is stopping
            status = api.Details.NOT_SENT if self.stopping.now() else api.Details.FAILED
        except Exception as exc:
            if self.stopping.now():
                status = api.Details.NOT_SENT
            else:
                record_failed_page(self.crawler, request, f"{type(exc).__name__}: {exc}")
                status = api.Details.FAILED
        else:
            answered = response.request or request
            if isinstance(response, DetailResponse):
                status, detail = api.Details.FETCHED, response.detail
            else:  # an answer the policy did not read (another component's): no details
                record_failed_page(self.crawler, request, f"HTTP {response.status}, not an answer of the API")
                status = api.Details.FAILED
        try:
            if status is not api.Details.NOT_SENT:
                await self.pages.detail_read(note_id, status.value, detail)
        except StorageError as exc:  # the note still goes on: the output may have room
            stop_storage_failed(self.crawler, str(exc))
        finally:  # stored, or never will be: the throttle may send the next call
            self.crawler.signals.send_catch_log(signals.page_stored, request=answered)
        return status, detail

