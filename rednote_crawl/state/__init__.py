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

A home (``CrawlState``) holds two small things: a ``PageStore`` (what the crawl remembers) and a
``CallAccount`` (what it spends). The add-on picks the home once (``JUSTONEAPI_STATE_CLASS``);
every component gets the same object from ``crawl_state(crawler)`` and never asks which home it
is. The interface is plain: only the components know Scrapy's engine.
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
from rednote_crawl.config import ApiConfig, redis_url
from rednote_crawl.state.figures import KeywordFigures
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


class PageStore(ABC):
    """What the crawl remembers: the calls already done, each paid answer with its notes, the notes claimed."""

    async def progress(self, query: api.Query) -> QueryProgress | None:
        """What earlier runs of this crawl did of ``query``: None when nothing (or not kept here)."""
        return None

    async def replay(self, progress: QueryProgress) -> list[dict[str, Any]]:
        """The notes of the pages earlier runs paid for, to go through the pipelines again."""
        return []

    @abstractmethod
    async def page_read(self, page: PaidPage) -> None:
        """A paid page and its notes, stored before the notes go on to the output (``StorageError``: not stored)."""

    def page_failed(self, query: api.Query, page: int, reason: str, calls: int = 1) -> None:  # noqa: B027
        """A page ran out of tries."""

    def query_rejected(self, query: api.Query, page: int) -> None:  # noqa: B027 - optional hook
        """The API rejected a query (code 400)."""

    @abstractmethod
    async def claim(self, note_id: str, note: dict[str, Any]) -> Verdict:
        """Whether the note is new; a new note is delivered (Redis: into the items list) at once."""

    # The note detail calls (-a details=): a new note that needs details is held until its call ends.
    keeps_held_notes = False  # whether a note held when the run stops is finished by the next run

    async def detail_stored(self, note_id: str) -> tuple[str, dict[str, Any] | None] | None:
        """How this crawl's detail call of the note ended, if an earlier run paid for it: (status, the
        API's note); None when it has to be made."""
        return None

    async def detail_read(self, note_id: str, status: str, detail: dict[str, Any] | None) -> None:  # noqa: B027
        """A detail call ended (``detail``: the API's note when it came): stored before the note goes on
        (``StorageError``: not stored)."""

    # Distributed (Redis): a note is held in the shared state, and its detail call is leased like a page.
    leases_details = False  # whether the page store holds notes for detail calls in its queue (deliver_held)

    async def deliver_held(self, request: Request, status: str, detail: dict[str, Any] | None) -> dict[str, Any] | None:
        """A held note's detail call ended: the note, whole, delivered with the call's ack; None when it was
        delivered before (or the crawl is gone)."""
        raise NotImplementedError("only a page store that holds notes in its queue delivers them (Redis)")

    async def found_earlier(self, note_id: str) -> bool:
        """Whether an earlier crawl of the job found the note (its details are fetched again only when asked)."""
        return False


class CallAccount(ABC):
    """What the crawl spends: the token's rate (and its learned limit), the call budget, the stops."""

    rate: AdaptiveRateLimiter

    @abstractmethod
    async def book_call(self, sleep: Sleep) -> StopEvent | None:
        """Wait for the call's turn at the token's rate, then count it against the budget; a StopEvent
        instead when the crawl must stop (the budget is spent, or another worker stopped the crawl):
        do not send it then."""

    @abstractmethod
    def refund_call(self) -> None:
        """A call counted by ``book_call`` never reached the API: it does not count."""

    @abstractmethod
    def remember_limit(self, limit: float) -> None:
        """Keep the token's limit as measured now, for the next crawl."""

    def record_stop(self, event: StopEvent) -> None:  # noqa: B027 - optional hook
        """Keep a stop where the rest of the crawl sees it (Redis: every worker)."""


@dataclass(frozen=True, slots=True)
class Standing:
    """Where the crawl stands as a run ends, as data (``run/summary.py`` says it in words).

    ``shared`` is None when this process saw the whole crawl; for a worker of a shared crawl, the
    crawl's figures as last read (``queued``, ``in_flight``, ``items``, ``stopped``; empty: unreadable).

    ``crawl_ended`` is set on the one worker that saw the shared crawl end and claimed its verdict
    (once per crawl): the whole crawl's counters as Redis keeps them (``calls``, ``pages_paid``,
    ``pages_failed``, ``notes``, ``queries``, ``queries_rejected``...) and ``stop`` (``reason``,
    ``message``, ``worker``; None: the crawl ran out of work). None everywhere else.
    """

    job_folder: str | None = None  # the job folder that carries the crawl on (None: none)
    shared: dict[str, int] | None = None
    items_key: str = ""  # where the shared crawl's notes wait
    crawl_ended: dict[str, Any] | None = None


class CrawlState(ABC):
    """A home of the crawl's state: its page store and call account, its start-up and its end.

    Built once per crawl from its ``ApiConfig`` (``open_state``), without I/O; ``check`` looks
    without touching anything (the dry run calls only that), ``open`` takes what the crawl needs.
    """

    pages: PageStore
    account: CallAccount

    def __init__(self, crawler: Crawler, config: ApiConfig) -> None:
        self.crawler = crawler
        self.config = config
        crawler.signals.connect(self._on_stopping, signal=signals.crawl_stopping)

    @classmethod
    @abstractmethod
    def check(cls, config: ApiConfig, settings: BaseSettings) -> None:
        """Whether the crawl could start here, touching nothing: ``ConfigError`` naming the problem and the fix."""

    @abstractmethod
    def open(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Take what the crawl needs (after ``check``), before any feed opens and any call; the
        feeds the crawl writes (``FEEDS``), given the ones the user named."""

    def begin(self) -> None:  # noqa: B027 - optional hook
        """The spider opened: a run begins."""

    def end(self, reason: str, stats: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """The run is over and its output stored."""

    def last_crawl_started(self) -> str | None:
        """When the job's previous crawl began (ISO 8601), for ``-a since=last``; None: unknown."""
        return None

    def crawl_figures(self) -> CrawlFigures | None:
        """The whole crawl per keyword, every run of it together (None: only this run is known)."""
        return None

    def history(self, crawls: int) -> list[list[KeywordFigures]]:
        """The last ``crawls`` crawls of the job, each as its figures per keyword, oldest first, this
        crawl last (as the run left it). Empty where no history is kept (a run without a job folder); in
        Redis the crawls that ended, the whole crawl each (no per-keyword figures are kept there)."""
        return []

    @abstractmethod
    def standing(self) -> Standing:
        """Where the crawl stands now."""

    def _on_stopping(self, event: StopEvent) -> None:
        self.account.record_stop(event)


_STATES: weakref.WeakKeyDictionary[Any, CrawlState] = weakref.WeakKeyDictionary()


LOCAL_STATE = "rednote_crawl.state.local.LocalState"
REDIS_STATE = "rednote_crawl.state.redis.RedisState"


def state_class(settings: BaseSettings) -> type[CrawlState]:
    """The home of the crawl's state: ``JUSTONEAPI_STATE_CLASS`` (the add-on sets it), else Redis with ``REDIS_URL``."""
    return load_object(settings.get("JUSTONEAPI_STATE_CLASS") or (REDIS_STATE if redis_url(settings) else LOCAL_STATE))


def open_state(crawler: Crawler, config: ApiConfig) -> CrawlState:
    """Build the crawler's state from its one ``ApiConfig`` (the start-up does, before any component asks)."""
    state = _STATES[crawler] = state_class(crawler.settings)(crawler, config)
    return state


def crawl_state(crawler: Crawler) -> CrawlState:
    """The crawler's state; built on first use where no start-up ran (a component on its own, in a test)."""
    state = _STATES.get(crawler)
    if state is None:
        state = open_state(crawler, ApiConfig.from_settings(crawler.settings))
    return state
