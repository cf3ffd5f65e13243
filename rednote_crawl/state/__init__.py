"""The crawl's state: what a crawl remembers and shares, behind one interface with two homes.

==================  ===============================  =======================================
part                local (``local.LocalState``)     Redis (``redis.RedisState``)
==================  ===============================  =======================================
pages paid for      the job folder's database        the leased queue and its dupefilter
                    (``JUSTONEAPI_JOB_DIR``)
seen notes          memory, plus earlier crawls      ``seen_notes`` buckets (all workers,
                    of the job folder                all crawls until ``reset --notes``)
where notes go      the feeds (``-o``/``-O``; the    the list ``<spider>:items`` (in the
                    job folder's ``crawl-N.jsonl``)  seen-notes script), plus any feed
the token's rate    ``rate.AdaptiveRateLimiter``     the same rules on one Redis key
call budget, stops  counted in memory                one script per call, for all workers
request queue       Scrapy's own scheduler           leases, a local buffer, the outbox
==================  ===============================  =======================================

The add-on picks the home once (``JUSTONEAPI_STATE_CLASS``) and registers the components that
fit it; every component gets the same object from ``crawl_state(crawler)`` and never asks which
home it is. The interface is plain: only the components know Scrapy's engine.
"""

from __future__ import annotations

import enum
import weakref
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scrapy.utils.misc import load_object

from rednote_crawl import api, signals
from rednote_crawl.config import ApiConfig
from rednote_crawl.state.rate import AdaptiveRateLimiter
from rednote_crawl.stops import StopEvent

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

    from rednote_crawl.state.figures import CrawlFigures, QueryProgress

Sleep = Callable[[float], Awaitable[bool | None]]  # returns False when the wait was cut short


class StorageError(Exception):
    """A write the crawl depends on failed (disk full, an I/O error, a read-only folder): the
    message names the file. Nothing more may be paid for: the crawl stops."""


class Verdict(enum.Enum):
    """What the seen notes say of a note that arrives."""

    NEW = "new"  # first time: it goes on to the output
    REPEATED = "repeated"  # already delivered in this crawl (or, distributed, by any crawl)
    WRITTEN = "written"  # already in the output, written by an earlier run of this (resumed) crawl
    EARLIER = "earlier"  # found by an earlier crawl of the job folder (JUSTONEAPI_SEEN_NOTES=skip)


@dataclass(frozen=True, slots=True)
class PaidPage:
    """A code-0 page as the spider read it: what a state stores before its notes go on."""

    query: api.Query
    page: int
    items: list[dict[str, Any]]
    end: str | None  # why its query ended here (None: it goes on)
    next_rank: int
    calls: int  # calls it took (retries included)
    request: Request
    follow_ups: list[Request] = field(default_factory=list)  # the requests its output made: the next page


class CrawlState(ABC):
    """One crawl's memory. Built once per crawler (``crawl_state``), without I/O; ``open`` does the I/O."""

    config: ApiConfig
    rate: AdaptiveRateLimiter
    # Whether this process sees the whole crawl (one machine) or one worker's part of it.
    whole_crawl: bool = True

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.config = ApiConfig.from_settings(crawler.settings)
        self.stopped: StopEvent | None = None
        crawler.signals.connect(self._on_stopping, signal=signals.crawl_stopping)

    # --- start-up and the run -----------------------------------------------------------

    @abstractmethod
    def open(self, settings: BaseSettings) -> None:
        """Check the state can be used and take it (before any feed opens and any call):
        raise ``ConfigError`` naming the problem and the fix. May set where notes go (FEEDS)."""

    def begin(self) -> None:  # noqa: B027 - optional hook
        """The spider opened: a run begins."""

    def end(self, reason: str, stats: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """The run is over and its output stored."""

    def last_crawl_started(self) -> str | None:
        """When the job's previous crawl began (ISO 8601), for ``-a since=last``; None: unknown."""
        return None

    # --- pages already paid for ------------------------------------------------------------

    async def progress(self, query: api.Query) -> QueryProgress | None:
        """What earlier runs of this crawl did of ``query``: None when nothing (or not kept here)."""
        return None

    async def replay(self, progress: QueryProgress) -> list[dict[str, Any]]:
        """The notes of the pages earlier runs paid for, to go through the pipelines again."""
        return []

    async def page_read(self, page: PaidPage) -> None:  # noqa: B027 - optional hook
        """A paid page and its notes, stored before the notes go on to the output (``StorageError``: not stored)."""

    def page_failed(self, query: api.Query, page: int, reason: str, calls: int = 1) -> None:  # noqa: B027
        pass

    def query_rejected(self, query: api.Query, page: int) -> None:  # noqa: B027 - optional hook
        pass

    # --- seen notes, and where notes go ---------------------------------------------------

    @abstractmethod
    async def claim(self, note_id: str, note: dict[str, Any]) -> Verdict:
        """Whether the note is new; a new note is delivered (Redis: into the items list) at once."""

    # --- the token's rate limit, as learned --------------------------------------------------

    def learned_limit(self) -> float | None:
        """The token's limit an earlier crawl measured (None: not known)."""
        return None

    def remember_limit(self, limit: float) -> None:  # noqa: B027 - optional hook
        """Keep the token's limit as measured now, for the next crawl."""

    # --- the call budget and stops -----------------------------------------------------------

    async def book_call(self, sleep: Sleep) -> StopEvent | None:
        """Wait for the call's turn at the token's rate, then count it against the budget; a StopEvent
        instead when the crawl must stop (the budget is spent, or another worker stopped the crawl):
        do not send it then."""
        await self.rate.acquire(sleep)
        return await self.spend_call(sleep)

    async def spend_call(self, sleep: Sleep) -> StopEvent | None:
        """Count one call against the budget (``book_call``)."""
        return None

    def refund_call(self) -> None:  # noqa: B027 - optional hook
        """A call counted by ``book_call`` never reached the API: it does not count."""

    def _on_stopping(self, event: StopEvent) -> None:
        if self.stopped is None:
            self.stopped = event
            self.record_stop(event)

    def record_stop(self, event: StopEvent) -> None:  # noqa: B027 - optional hook
        """Keep a stop where the rest of the crawl sees it (Redis: every worker)."""

    # --- the end -------------------------------------------------------------------------------

    def crawl_figures(self) -> CrawlFigures | None:
        """The whole crawl per keyword, every run of it together (None: only this run is known)."""
        return None


    @abstractmethod
    def next_steps(self, reason: str, unfinished: bool) -> list[str]:
        """The summary's last lines: where the crawl stands and what to do next."""


_STATES: weakref.WeakKeyDictionary[Any, CrawlState] = weakref.WeakKeyDictionary()


def crawl_state(crawler: Crawler) -> CrawlState:
    """The crawler's state, built on first use from ``JUSTONEAPI_STATE_CLASS`` (set by the add-on)."""
    state = _STATES.get(crawler)
    if state is None:
        path = crawler.settings.get("JUSTONEAPI_STATE_CLASS") or "rednote_crawl.state.local.LocalState"
        state = _STATES[crawler] = load_object(path)(crawler)
    return state
