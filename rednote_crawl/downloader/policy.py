"""Judging every API answer by its business code, not its HTTP status.

``api.judge`` says what an answer means; this middleware acts on it: a code-0 answer goes to
the spider as an ``ApiResponse`` with its page read, transient failures are retried with
backoff, rate limits slow the token down, a 400 drops its query, a fatal code stops the crawl
(``stops.py``), and answers nobody documented, ``UNEXPECTED_LIMIT`` in a row, stop it too.
The table of every answer and what happens to it is in docs/reference.md ("What happens to each answer").
"""

from __future__ import annotations

import logging
import random
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.exceptions import CannotResolveHostError, DownloadConnectionRefusedError, IgnoreRequest
from scrapy.utils.misc import load_object
from twisted.internet.error import ConnectionRefusedError, DNSLookupError, NoRouteError

from rednote_crawl import api, signals, stops
from rednote_crawl.names import Meta, Stat
from rednote_crawl.search import (
    Accounted,
    ApiResponse,
    DetailCall,
    DetailResponse,
    NoteGone,
    SearchCall,
    call_of,
    record_failed_page,
    stop_crawl,
    stopping,
)
from rednote_crawl.state import crawl_state

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger(__name__)

UNEXPECTED_LIMIT = 10  # undocumented answers in a row (unknown codes, 404 pages) stop the crawl
# Failures that mean the call never reached the API: no such host, nobody listening, no route.
# (A host that drops packets silently is a timeout: retried, as any transient failure.)
UNREACHABLE = (CannotResolveHostError, DNSLookupError, DownloadConnectionRefusedError, ConnectionRefusedError, NoRouteError)
UNREACHABLE_GRACE = 10.0  # seconds such failures are retried before the API has answered once in the run
UNREACHABLE_RETRY = 1.0  # seconds between those tries


class ApiPolicyMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.config = crawl_state(crawler).config
        self.stats = crawler.stats
        self.retry_exceptions = tuple(
            load_object(x) if isinstance(x, str) else x for x in crawler.settings.getlist("RETRY_EXCEPTIONS")
        )
        self.stopping = stopping(crawler)
        self.unexpected_in_a_row = 0
        self.answered = False  # the API answered once in this run
        self.unreachable_since: float | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ApiPolicyMiddleware:
        return cls(crawler)

    def process_response(self, request: Request, response: Response) -> Request | Response:
        call = call_of(request)
        if call is None:
            return response
        self.answered = True
        detail = isinstance(call, DetailCall)
        answer = api.judge(response.status, response.body, api.DETAIL if detail else api.SEARCH)
        self.stats.inc_value(Stat.ANSWERS + answer.label)
        self._count_unexpected(answer.unexpected, answer.label, answer.message)
        if answer.action is api.Action.NOTE_GONE:
            self.stats.inc_value(Stat.DETAILS_NOTE_GONE)
            logger.info("No details of note %s: %s (%s)", call.note_id, answer.message, answer.label)
            raise NoteGone(f"{answer.label}: {answer.message}")
        if answer.action is api.Action.PARSE and isinstance(call, DetailCall):
            assert answer.envelope is not None
            note = api.detail_note(answer.envelope)
            assert note is not None  # judge() says NOTE_GONE otherwise
            self.crawler.signals.send_catch_log(signals.page_paid, request=request)
            return response.replace(cls=DetailResponse, detail=note)
        if answer.action is api.Action.PARSE:
            assert isinstance(call, SearchCall)
            assert answer.envelope is not None
            outcome = api.page_outcome(
                answer.envelope,
                page=call.page,
                rank_offset=call.rank_offset,
                max_pages=call.max_pages,
                since=call.since,
                sort=call.query.sort,
                keep_ads=self.config.keep_ads,
            )
            self._count_repairs(call, answer, outcome)
            self.crawler.signals.send_catch_log(signals.page_paid, request=request)
            return response.replace(cls=ApiResponse, outcome=outcome)
        if answer.action is api.Action.RETRY:
            return self._retry(request, answer.label, answer.message, answer.retries)
        if answer.action is api.Action.SLOW_DOWN:
            return self._retry_rate_limited(request, response)
        if answer.action is api.Action.UNUSABLE:
            self._fail(request, f"{answer.message} (paid for, so not requested again)")
        if answer.action is api.Action.DROP_QUERY:
            self._reject(request, answer)
        else:
            self._stop(answer)
        raise Accounted(f"{answer.label}: {answer.message}")

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if call_of(request) is None or isinstance(exception, IgnoreRequest):
            return None
        label = f"exception_{type(exception).__name__}"
        self.stats.inc_value(Stat.ANSWERS + label)
        if isinstance(exception, UNREACHABLE):
            self.crawler.signals.send_catch_log(signals.call_not_delivered, request=request)
            if not self.answered:
                return self._unreachable(request, exception)
        if isinstance(exception, self.retry_exceptions):
            return self._retry(request, label, str(exception))
        self._fail(request, f"{label}: {exception}")
        return None  # not reached: _fail raises

    def _unreachable(self, request: Request, exception: Exception) -> Request:
        """Before the API has answered once: a wrong host or no network, unless it passes within the grace."""
        now = time.monotonic()
        self.unreachable_since = self.unreachable_since or now
        if self.stopping.reason:
            raise Accounted(f"not retried: the crawl is stopping ({self.stopping.reason})")
        if now - self.unreachable_since >= UNREACHABLE_GRACE:
            host = urlsplit(request.url).netloc  # the host tried: this worker's JUSTONEAPI_BASE_URL
            message = f"cannot reach the API at {host}: {type(exception).__name__}: {exception}"
            logger.error("Stopping the crawl: %s; %s", message, stops.API_UNREACHABLE.fix)
            stop_crawl(self.crawler, stops.StopEvent(stops.API_UNREACHABLE.reason, message))
            raise Accounted(message)
        retry = request.copy()
        retry.dont_filter = True
        retry.meta[Meta.NOT_BEFORE] = time.time() + UNREACHABLE_RETRY
        self.stats.inc_value(Stat.RETRY_UNREACHABLE)
        return retry

    def backoff(self, retry_times: int) -> float:
        """Exponential backoff with jitter: base * 2**(n-1), capped, times 0.5-1.0."""
        delay = min(self.config.backoff_max, self.config.backoff_base * 2 ** (retry_times - 1))
        return delay * random.uniform(0.5, 1.0)

    def _count_repairs(self, call: SearchCall, answer: api.Answer, outcome: api.PageOutcome) -> None:
        """A page that arrived whole but not as the contract says: read as far as it goes, and said."""
        unparseable = outcome.skipped.get("unparseable", 0)
        if outcome.odd_ids:
            self.stats.inc_value(Stat.NOTES_ODD_ID, outcome.odd_ids)
        if answer.replaced:
            self.stats.inc_value(Stat.INVALID_UTF8_REPLACED, answer.replaced)
        if answer.replaced or unparseable:
            logger.warning(
                "Page %d of %s arrived whole but broken: %d invalid UTF-8 sequences replaced with U+FFFD, "
                "%d items nobody can read skipped; its other notes are kept and it is not asked for again",
                call.page,
                call.query.describe(),
                answer.replaced,
                unparseable,
            )

    def _retry(self, request: Request, label: str, message: str, retries: int | None = None) -> Request:
        if self.stopping.reason:
            raise Accounted(f"not retried: the crawl is stopping ({self.stopping.reason})")
        retries = self.config.retry_times if retries is None else min(retries, self.config.retry_times)
        retry = get_retry_request(
            request,
            spider=self.crawler.spider,
            reason=label,
            max_retry_times=retries,
            stats_base_key=Stat.RETRY,
            give_up_log_level=logging.DEBUG,  # _fail() says it once, with the query
        )
        if retry is None:
            self._fail(request, f"{label} ({message}), {retries} retries spent")
        retry.meta[Meta.NOT_BEFORE] = time.time() + self.backoff(retry.meta["retry_times"])
        return retry

    def _retry_rate_limited(self, request: Request, response: Response) -> Request:
        if self.stopping.reason:
            raise Accounted(f"not retried: the crawl is stopping ({self.stopping.reason})")
        retry_after = _retry_after(response, self.config.backoff_max)
        self.crawler.signals.send_catch_log(signals.rate_limited, retry_after=retry_after)
        times = request.meta.get(Meta.RATE_LIMITED, 0) + 1
        if times > self.config.rate_limit_retries:
            self._fail(
                request, f"rate limited {times} times (JUSTONEAPI_RATE_LIMIT_RETRIES={self.config.rate_limit_retries})"
            )
        self.stats.inc_value(Stat.RATE_LIMIT_RETRIES)
        retry = request.copy()
        retry.meta[Meta.RATE_LIMITED] = times
        retry.dont_filter = True
        return retry

    def _fail(self, request: Request, reason: str) -> None:
        record_failed_page(self.crawler, request, reason)
        raise Accounted(reason)

    def _reject(self, request: Request, answer: api.Answer) -> None:
        call = call_of(request)
        assert isinstance(call, SearchCall)  # a detail call's 400 concerns its note: NOTE_GONE
        self.stats.inc_value(Stat.QUERIES_REJECTED)
        logger.error(
            "The API rejected query %s as invalid (code %s: %s); dropped, not retried",
            call.describe(),
            answer.code,
            answer.message,
        )
        self.crawler.signals.send_catch_log(signals.query_rejected, request=request, message=answer.message)

    def _stop(self, answer: api.Answer) -> None:
        if self.stopping.reason:
            return
        stop = answer.stop
        assert stop is not None
        logger.error("Stopping the crawl: the API answered code %s (%s): %s", answer.code, answer.message, stop.what)
        stop_crawl(self.crawler, stops.StopEvent(stop.reason, answer.message))

    def _count_unexpected(self, unexpected: bool, label: str, message: str) -> None:
        """Stop when answers keep being ones nobody documented: a wrong base URL or an account-level problem."""
        if not unexpected:
            self.unexpected_in_a_row = 0
            return
        self.unexpected_in_a_row += 1
        if self.unexpected_in_a_row >= UNEXPECTED_LIMIT and not self.stopping.reason:
            logger.error(
                "Stopping the crawl: %d answers in a row were ones the API does not give (last: %s, %s); "
                "check JUSTONEAPI_BASE_URL (now %s)",
                self.unexpected_in_a_row,
                label,
                message,
                self.config.base_url,
            )
            stop_crawl(self.crawler, stops.StopEvent(stops.UNEXPECTED_ANSWERS.reason, message))


def _retry_after(response: Response, cap: float) -> float | None:
    """``Retry-After`` in seconds or as an HTTP date, capped."""
    value = response.headers.get(b"Retry-After")
    if not value:
        return None
    text = value.decode("latin-1").strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), cap)
