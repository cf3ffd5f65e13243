"""The Redis home of the crawl's state: one crawl shared by every worker (``REDIS_URL``).

- ``shared.py``   a worker's asynchronous handle on the crawl in Redis: one method per script
- ``outbox.py``   the writes nobody waits for, in order, kept while Redis is away
- ``keys.py``     the crawl's key names, and how a seen note id is stored
- ``client.py``   connecting, the URL masked for logs, the errors of an outage, its log lines
- ``scripts.py``  the Lua scripts that keep every write atomic and idempotent
- ``requests.py`` requests as JSON, with scrapy-redis's fingerprints
- ``leases.py``   the requests this worker holds
- ``account.py``  the token's rate and call budget, one for all workers

Per page, a worker makes about three round trips to Redis: the rate and budget of its call
(one script), the page stored whole (one script: its notes against the seen notes and into
the items list, its next page pushed, its lease acked) and a share of a batched pop; the
heartbeat is one call a second. docs/benchmarks.md measures them.

The Scrapy components that only a Redis home has (the leased scheduler, the worker's heartbeat)
are in ``rednote_crawl/distributed/``; the add-on registers them. ``scrapy redis status`` and
``drain`` are in ``rednote_crawl/run/``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson
import redis
from itemadapter import ItemAdapter
from scrapy.exceptions import DropItem

from rednote_crawl import api, redaction, stops
from rednote_crawl.api import as_dict, dumps, now_iso
from rednote_crawl.config import ApiConfig, ConfigError
from rednote_crawl.names import Meta, Stat
from rednote_crawl.search import DetailCall, search_call_of
from rednote_crawl.state import CallAccount, CrawlState, PageStore, PaidPage, Sleep, Standing, Verdict, crawl_state
from rednote_crawl.state.figures import KeywordFigures
from rednote_crawl.state.limits import token_key
from rednote_crawl.state.redis.account import SharedRateLimiter, stop_event
from rednote_crawl.state.redis.client import REDIS_ERRORS, check_reachable, connect, display_url
from rednote_crawl.state.redis.leases import LeaseBook
from rednote_crawl.state.redis.requests import RequestCodec
from rednote_crawl.state.redis.shared import OldCrawl, SharedCrawl, new_op

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

# token hash -> the limit learned for it (JSON); shared by every crawl on this Redis, kept by `reset`.
TOKEN_LIMITS = "justoneapi:token-limits"
SAFE_LEASE = 10  # seconds: leases are renewed every heartbeat (1 s by default), by Redis calls with 5 s timeouts
CLOSE_WAIT = 10.0  # seconds a closing worker waits for its writes to reach Redis


class RedisAccount(CallAccount):
    """The token's rate and the call budget, one for all workers; a crawl-wide stop written for all."""

    def __init__(self, shared: SharedCrawl, config: ApiConfig) -> None:
        self.shared = shared
        self.token = config.token
        self.rate = SharedRateLimiter(shared, config.max_rps, config.max_requests)

    def start(self) -> None:
        raw = self.shared.sync.hget(TOKEN_LIMITS, token_key(self.token))  # at start-up
        self.rate.start_at(float(orjson.loads(raw)["limit"]) if raw else None)

    async def book_call(self, sleep: Sleep) -> stops.StopEvent | None:
        stop = await self.rate.book_call(sleep)
        return None if stop is None else stop_event(stop, self.shared.worker_id)

    def refund_call(self) -> None:
        self.shared.refund()

    def remember_limit(self, limit: float) -> None:
        entry = orjson.dumps({"limit": round(limit, 3), "at": now_iso()}).decode()
        self.shared.write(("HSET", TOKEN_LIMITS, token_key(self.token), entry), guarded=False)

    def record_stop(self, event: stops.StopEvent) -> None:
        """A stop this worker saw stops every worker (it waits out an outage, like every write)."""
        stop = event.stop
        if event.by is None and stop is not None and stop.crawl_wide:
            self.shared.stop_all(event.reason, redaction.redact(event.message))


class RedisPages(PageStore):
    """A paid page stored whole in one script (its notes, its next page, its lease's ack).

    With ``-a details=`` (the mode travels with the page's call), a new note that wants its details is
    held in Redis by that script and its detail call queued there, leased like a page: whichever worker
    takes the call delivers the note, whole, in the script that acks it (``deliver_held``)."""

    leases_details = True

    def __init__(self, state: RedisState) -> None:
        self.state = state
        self.shared = state.shared
        # Note id -> what the page script found of it (1 new, 2 new and held, 0 not new), until the dedupe pipeline asks.
        self.verdicts: dict[str, list[int]] = {}
        self.delivered: set[str] = set()  # held notes this worker delivered whole, on their way to the pipelines

    async def page_read(self, page: PaidPage) -> None:
        call = search_call_of(page.request)
        mode = call.details if call is not None else "none"
        notes = []
        for item in page.items:
            if not (note_id := ItemAdapter(item).get("note_id")):
                continue
            detail = None
            if mode != "none":
                if api.wants_details(mode, item):
                    detail = self._detail_push(note_id, item)
                else:  # the line in Redis and the item in the pipelines alike
                    item.update(api.merge_details(item, None, api.Details.NOT_ASKED.value))
            notes.append((note_id, dumps(as_dict(item)), detail))
        pushes = []
        for request in page.follow_ups:
            pushes.append(self.state.codec.push(request))
            request.meta[Meta.STORED] = True  # the scheduler does not push it again
        lease = page.request.meta.get(Meta.LEASE, "")
        leases = self.state.leases
        leases.storing.add(lease)
        op = new_op()  # the same id on every try: a store whose answer was lost is not applied twice
        new = await self._until_stored(lambda: self.shared.page(lease, notes, pushes, op))
        leases.done(lease)
        for (note_id, _, _), is_new in zip(notes, new or [], strict=False):
            self.verdicts.setdefault(note_id, []).append(is_new)

    def _detail_push(self, note_id: str, item: dict[str, Any]) -> Any:
        """The note's detail call, as the page script pushes it: it carries the note it delivers."""
        request = self.state.crawler.spider.detail_request(DetailCall(note_id))
        request.meta[Meta.HELD_NOTE] = as_dict(item)
        return self.state.codec.push(request)

    async def deliver_held(self, request: Request, status: str, detail: dict[str, Any] | None) -> dict[str, Any] | None:
        call = request.meta[Meta.CALL]
        item = api.merge_details(request.meta.get(Meta.HELD_NOTE) or {"note_id": call.note_id}, detail, status)
        lease = request.meta.get(Meta.LEASE, "")
        leases = self.state.leases
        leases.storing.add(lease)
        op = new_op()
        delivered = await self._until_stored(lambda: self.shared.detail(lease, call.note_id, dumps(item), status, op))
        leases.done(lease)
        if not delivered or self.shared.lost:
            return None
        self.delivered.add(call.note_id)
        return item

    async def _until_stored(self, call: Any) -> Any:
        """A paid page's write waits out an outage: the throttle sends no more calls meanwhile."""
        while True:
            try:
                answer = await call()
            except REDIS_ERRORS as exc:
                self.shared.health.failed(exc)
                await asyncio.sleep(self.shared.beat)
                continue
            return answer

    async def claim(self, note_id: str, note: dict[str, Any]) -> Verdict:
        """Said by the page script (or by the detail script, for a held note delivered whole); a note that
        came another way is checked and delivered on its own."""
        verdicts = self.verdicts.get(note_id)
        if note_id in self.delivered and "details" in note:
            self.delivered.discard(note_id)
            new: int | None = 1
        elif verdicts:
            new = verdicts.pop(0)
            if not verdicts:
                del self.verdicts[note_id]
        else:
            op = new_op()
            answer = await self._until_stored(lambda: self.shared.page("", [(note_id, dumps(as_dict(note)))], [], op))
            new = None if answer is None else answer[0]
        if self.shared.lost:  # the worker is stopping (state_lost): nothing more is delivered
            raise DropItem(f"note {note_id} not delivered: {self.shared.lost}", log_level="DEBUG")
        if new == HELD:
            raise DropItem(f"note {note_id} is held for its details: its detail call delivers it", log_level="DEBUG")
        return Verdict.NEW if new else Verdict.REPEATED


HELD = 2  # scripts.PAGE's answer for a new note held for its detail call


class RedisState(CrawlState):
    """A worker's part of a crawl all workers share in Redis; ``distributed/`` reaches it through ``redis_state``."""

    def __init__(self, crawler: Crawler, config: ApiConfig) -> None:
        super().__init__(crawler, config)
        url = config.redis_url
        assert url is not None, "RedisState needs REDIS_URL"
        self.shared = SharedCrawl(
            url, crawler.settings, crawler.spidercls.name, config.redis_lease, crawler.stats, config.redis_heartbeat
        )
        self.account = RedisAccount(self.shared, config)
        self.pages = RedisPages(self)
        self.leases = LeaseBook(self.shared, crawler.stats)
        # Requests leased from Redis that the engine has not taken yet (the scheduler's local buffer).
        self.buffer: deque[Request] = deque()
        self.figures: dict[str, int] = {}  # the crawl's, as the last heartbeat read them
        self.remote = (0, 0)  # requests queued and leased in Redis, as last seen
        self.closing = False
        self.crawl_ended: dict[str, Any] | None = None  # the whole crawl's, if this worker claimed its verdict
        self._codec: RequestCodec | None = None

    @property
    def codec(self) -> RequestCodec:
        if self._codec is None:
            self._codec = RequestCodec(self.crawler.spider, self.shared.keys.dupefilter)
        return self._codec

    @classmethod
    def check(cls, config: ApiConfig, settings: BaseSettings) -> None:
        """Redis must answer before the crawl starts: a wrong REDIS_URL is an error, not an outage."""
        assert config.redis_url is not None
        server = connect(config.redis_url, settings)
        try:
            check_reachable(server, config.redis_url)
        finally:
            server.close()

    def open(self, feeds: dict[str, Any]) -> dict[str, Any]:
        check_reachable(self.shared.sync, self.shared.url)
        try:
            self.shared.join()
            self.account.start()
        except OldCrawl as exc:
            raise ConfigError(str(exc)) from None
        except redis.RedisError as exc:
            url = display_url(self.shared.url)
            raise ConfigError(f"Redis at REDIS_URL={url!r} failed as the crawl started ({exc}); check it") from None
        if self.config.redis_lease < SAFE_LEASE:
            logger.warning(
                "JUSTONEAPI_REDIS_LEASE=%s: a lease this short can run out during one slow Redis call (5 s timeouts), "
                "and its page is then paid for twice; use %s or more outside tests",
                self.config.redis_lease,
                SAFE_LEASE,
            )
        return feeds  # the notes go into the items list; a feed only if the user names one

    # --- the heartbeat and the end ----------------------------------------------------------------

    async def heartbeat(self) -> dict[str, str] | None:
        """Renew this worker's leases, say it is alive, read the crawl's figures; the crawl-wide stop or None."""
        stop, figures = await self.leases.renew(self.shared.beat)
        self.shared.health.ok()
        if figures:
            self.figures = {**figures, "stopped": int(stop is not None)}
            self.remote = (figures["queued"], figures["in_flight"])
        return stop

    async def leave(self) -> None:
        """The worker closes (the scheduler's close, before spider_closed: the summary reads the figures):
        give back what it holds, send its writes, read the crawl's figures once more, claim the whole
        crawl's verdict if the crawl has ended and no worker did (the monitors then judge the crawl), leave."""
        self.closing = True
        stats = self.crawler.stats
        if released := await self.leases.release_all(CLOSE_WAIT):
            stats.set_value(Stat.REDIS_GIVEN_BACK, released)
            logger.info("Gave %d requests this worker had taken back to the shared queue", released)
        await self.shared.outbox.flushed(CLOSE_WAIT)
        try:
            if not self.shared.lost:
                await self.heartbeat()
                if not self.shared.outbox:  # its writes are in: the crawl's figures count them
                    self.crawl_ended = await self.shared.claim_verdict()
                    if self.crawl_ended is not None:
                        await self.shared.record_crawl(_history_entry(self.shared.crawl_id, self.crawl_ended))
            await self.shared.leave()
        except REDIS_ERRORS as exc:
            self.shared.health.failed(exc)
        if self.crawl_ended is not None:
            stats.set_value(Stat.REDIS_CRAWL_VERDICT, 1)
        if self.shared.outbox:
            # Not a finished part: a seeder whose queries are not all in Redis must not exit 0 (stops.LOSS_STATS).
            stats.set_value(Stat.REDIS_WRITES_NOT_STORED, len(self.shared.outbox))
            logger.error(
                "Redis at %s is still away or refusing writes: %d writes of this worker are not stored (seeded "
                "queries among them are not in the crawl: seed the keywords again once Redis takes writes; the "
                "requests the others finish go back to the queue when their leases run out, and are done again)",
                self.shared.health.url,
                len(self.shared.outbox),
            )
        stats.set_value(Stat.REDIS_ROUND_TRIPS, self.shared.round_trips)

    def standing(self) -> Standing:
        return Standing(shared=dict(self.figures), items_key=self.shared.keys.items, crawl_ended=self.crawl_ended)

    def history(self, crawls: int) -> list[list[KeywordFigures]]:
        """The last ended crawls of this Redis, the whole crawl each (Redis keeps no per-keyword figures):
        one row a crawl, under ``ALL_KEYWORDS``."""
        try:
            entries = self.shared.crawl_history(crawls)
        except redis.RedisError:
            return []
        return [
            [
                KeywordFigures(
                    n, ALL_KEYWORDS, e.get("pages", 0), e.get("new", 0), e.get("new", 0), e.get("failed", 0), e.get("calls")
                )
            ]
            for n, e in enumerate(entries, 1)
        ]


ALL_KEYWORDS = "(all keywords)"  # a distributed crawl's history row: the whole crawl


def _history_entry(crawl_id: str | None, ended: dict[str, Any]) -> dict[str, Any]:
    stop = ended.get("stop") or {}
    return {
        "crawl": crawl_id,
        "ended": now_iso(),
        "calls": int(ended.get("calls", 0)),
        "new": int(ended.get("notes", 0)),
        "pages": int(ended.get("pages_paid", 0)),
        "failed": int(ended.get("pages_failed", 0)),
        "stop": stop.get("reason"),
    }


def redis_state(crawler: Crawler) -> RedisState:
    """The distributed components' handle on the crawl's state (the add-on registers them with a Redis home)."""
    state = crawl_state(crawler)
    if not isinstance(state, RedisState):
        raise TypeError(f"the distributed components need REDIS_URL; this crawl's state is {type(state).__name__}")
    return state
