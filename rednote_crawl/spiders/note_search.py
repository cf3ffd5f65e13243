"""``note_search``: every keyword of a seed file, every filter combination, every page."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import scrapy
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from twisted.python.failure import Failure

from rednote_crawl import api
from rednote_crawl.config import ApiConfig, ConfigError, redis_url
from rednote_crawl.middlewares import ENVELOPE_META, PAGE_META, QUERY_END_META, QUERY_META, record_failed_page
from rednote_crawl.middlewares.resume import job_state
from rednote_crawl.seeds import parse_inline, read_keywords

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

ARGUMENTS = ("keywords", "keyword", "sort", "note_type", "note_time", "max_pages", "since")
NO_KEYWORDS = (
    "no keywords: pass -a keywords=PATH, a file with one keyword per line (see seeds/brands.txt), "
    "or -a keyword=海信,Nike; "
    "only a worker of a distributed crawl (REDIS_URL set) runs without keywords"
)


class NoteSearchSpider(scrapy.Spider):
    """Spider arguments (``-a name=value``):

    keywords   path of the seed file (one keyword a line)            required, or:
    keyword    the keywords themselves, comma-separated (one-off jobs)
    sort       general, popularity_descending/popular, time_descending/latest,
               comment_descending/comments, collect_descending/collects   general
    note_type  all/_0, video/_1, normal/_2 (image)                    all
    note_time  any, day, week, half_year (or the API's own values)   any
    max_pages  the deepest page of one query                         JUSTONEAPI_MAX_PAGES
    Several values, comma-separated, crawl every combination.
    """

    name = "note_search"

    def __init__(
        self,
        keywords: str | None = None,
        keyword: str | None = None,
        sort: str | None = None,
        note_type: str | None = None,
        note_time: str | None = None,
        max_pages: str | int | None = None,
        since: str | None = None,
        **kwargs: Any,
    ) -> None:
        if secret := [name for name in kwargs if "token" in name.lower()]:
            raise ConfigError(
                f"the token must not be a spider argument (-a {secret[0]}=...): arguments show up in logs "
                "and process lists. Set the JUSTONEAPI_TOKEN environment variable instead."
            )
        # A mistyped argument would crawl, and pay for, the unfiltered defaults. Names starting
        # with "_" belong to the tools that run spiders (scrapyd's _job).
        if unknown := [name for name in kwargs if not name.startswith("_")]:
            raise ConfigError(f"unknown spider argument -a {unknown[0]}=...; the arguments are: {', '.join(ARGUMENTS)}")
        super().__init__(**kwargs)
        if keywords and keyword:
            raise ConfigError("pass -a keywords=FILE or -a keyword=WORD,WORD, not both")
        self.keywords = read_keywords(keywords) if keywords else parse_inline(keyword) if keyword else []
        self.sorts = _choices("sort", sort, api.SORTS, api.DEFAULT_SORT)
        self.note_types = _choices("note_type", note_type, api.NOTE_TYPES, api.DEFAULT_NOTE_TYPE)
        self.note_times = _choices("note_time", note_time, api.NOTE_TIMES, api.DEFAULT_NOTE_TIME)
        self._max_pages = _max_pages(max_pages)
        self._since = _since(since)

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> NoteSearchSpider:
        spider: NoteSearchSpider = super().from_crawler(crawler, *args, **kwargs)
        if not spider.keywords and not redis_url(crawler.settings):
            raise ConfigError(NO_KEYWORDS)
        if spider._since == "last" and not crawler.settings.get("JUSTONEAPI_JOB_DIR"):
            raise ConfigError(
                "-a since=last needs -s JUSTONEAPI_JOB_DIR=DIR: the job folder remembers when its last crawl began"
            )
        return spider

    @cached_property
    def since(self) -> int | None:
        """The cutoff (epoch seconds) of an incremental crawl, or None."""
        if self._since != "last":
            return self._since
        state = job_state(self.crawler)
        started = state.previous_crawl_started if state else None
        if started is None:
            logger.info("-a since=last: this is the job's first crawl, so every note counts")
            return None
        logger.info("-a since=last: notes published since %s, when the job's last crawl began", started)
        return int(datetime.fromisoformat(started).timestamp())

    @property
    def config(self) -> ApiConfig:
        # Settings are final only after the spider is built (add-ons run later).
        return ApiConfig.of(self.crawler)

    @property
    def max_pages(self) -> int:
        return self._max_pages or self.config.max_pages

    def queries(self) -> Iterator[api.Query]:
        for keyword, sort, note_type, note_time in itertools.product(
            self.keywords, self.sorts, self.note_types, self.note_times
        ):
            yield api.Query(keyword, sort, note_type, note_time)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        if not self.keywords:
            logger.info("No keywords: working on the queries already in Redis")
            return
        count = len(self.keywords) * len(self.sorts) * len(self.note_types) * len(self.note_times)
        self.crawler.stats.set_value("justoneapi/queries/total", count)
        logger.info(
            "Searching %d keywords x %d filter combinations = %d queries, at most %d pages each",
            len(self.keywords),
            count // len(self.keywords),
            count,
            self.max_pages,
        )
        for query in self.queries():
            yield self.page_request(query, 1, rank_offset=0)

    def page_request(self, query: api.Query, page: int, rank_offset: int, **options: Any) -> scrapy.Request:
        """``options``: the query's ``max_pages`` and ``since`` when not this spider's own."""
        url = api.search_url(self.config.base_url, query.params(page, self.config.note_time_style))
        return scrapy.Request(
            url,
            callback=self.parse,
            errback=self.page_error,
            meta={QUERY_META: query, PAGE_META: page},
            # The crawl's options travel with the request: in a distributed crawl, the worker that
            # fetches a page may have been started with other arguments, or none.
            cb_kwargs={"rank_offset": rank_offset, "max_pages": self.max_pages, "since": self.since, **options},
            priority=page,  # finish started queries before opening new ones
        )

    def parse(
        self, response: Response, rank_offset: int = 0, max_pages: int | None = None, since: int | None = None
    ) -> Iterator[Any]:
        max_pages = max_pages or self.max_pages
        query: api.Query = response.meta[QUERY_META]
        page_number: int = response.meta[PAGE_META]
        envelope = response.meta.pop(ENVELOPE_META, None) or api.judge(response.status, response.body).envelope or {}
        page = api.read_page(envelope, keep_ads=self.config.keep_ads)
        stats = self.crawler.stats
        stats.inc_value("justoneapi/pages/read")
        for model_type, count in page.skipped.items():
            stats.inc_value(f"justoneapi/items/skipped/{model_type}", count)
        note_time_sent = query.params(page_number, self.config.note_time_style).get("noteTime")
        fetched_at = api.now_iso()
        older = 0
        for rank, note in enumerate(page.notes, start=rank_offset + 1):
            published = api.epoch_seconds(note.get("timestamp"))
            if since is not None and published is not None and published < since:
                older += 1
                continue
            yield api.note_item(
                note,
                query=query,
                note_time_sent=note_time_sent,
                page=page_number,
                rank=rank,
                fetched_at=fetched_at,
                keep_raw=self.config.keep_raw,
            )
        stats.inc_value("justoneapi/notes/seen", len(page.notes))
        if older:
            stats.inc_value("justoneapi/notes/older_than_since", older)
        # Sorted by time, the first older note means every later page is older too; otherwise
        # a page with nothing new is the best sign there is (the cutoff is approximate then).
        since_reached = older > 0 and (query.sort == "time_descending" or older == len(page.notes))
        if page.is_last or page_number >= max_pages or since_reached:
            end = "empty_page" if page.is_last else "max_pages" if page_number >= max_pages else "since"
            stats.inc_value(f"justoneapi/queries/finished/{end}")
            response.meta[QUERY_END_META] = end  # for the job journal: only an empty page is final
            return
        yield self.page_request(query, page_number + 1, rank_offset + len(page.notes), max_pages=max_pages, since=since)

    def page_error(self, failure: Failure) -> None:
        """A page that ended in an error the middlewares did not already account for."""
        if failure.check(IgnoreRequest):
            return  # failed, rejected or not sent: the policy and throttle middlewares said so
        reason = f"{failure.type.__name__ if failure.type else 'error'}: {failure.getErrorMessage()}"
        record_failed_page(self.crawler, failure.request, reason)  # type: ignore[attr-defined]


def _choices(option: str, raw: str | None, choices: dict[str, str], default: str) -> list[str]:
    try:
        return api.parse_choices(option, raw, choices, default)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _max_pages(raw: str | int | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"max_pages={raw!r} is not a whole number >= 1; pass e.g. -a max_pages=20")
    return value


def _since(raw: str | None) -> int | str | None:
    """``2026-11-20`` (UTC midnight), an ISO 8601 time, or ``last``."""
    if raw is None or not str(raw).strip():
        return None
    text = str(raw).strip()
    if text == "last":
        return "last"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"since={raw!r} is not a date; pass -a since=2026-11-20, -a since=2026-11-20T08:00:00+08:00 or -a since=last"
        ) from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
