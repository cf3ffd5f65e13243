"""The middlewares, the download handler, the pipeline and the exporter, one at a time."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import orjson
import pytest
from scrapy import Request, Spider
from scrapy.exceptions import DropItem, IgnoreRequest
from scrapy.http import TextResponse
from scrapy.utils.test import get_crawler

from rednote_crawl import api, signals, stops
from rednote_crawl.downloader import throttle as throttle_module
from rednote_crawl.downloader.handler import TokenAuthDownloadHandler, UnsignedCall
from rednote_crawl.downloader.policy import UNEXPECTED_LIMIT, ApiPolicyMiddleware
from rednote_crawl.downloader.throttle import TokenThrottleMiddleware
from rednote_crawl.items.dedupe import NoteDedupePipeline
from rednote_crawl.items.export import OrjsonLinesItemExporter
from rednote_crawl.names import Meta
from rednote_crawl.search import ApiResponse, SearchCall
from tests.conftest import until

UNEXPECTED = stops.UNEXPECTED_ANSWERS.reason
BUDGET_SPENT = stops.BUDGET_SPENT.reason

TOKEN = "unit-test-token-123"
URL = "https://api.justoneapi.com/api/xiaohongshu/search-note/v2?keyword=k&page=2&sort=general&noteType=_0"


class RecordingEngine:
    """Stands in for the engine: records the reason the spider is closed with."""

    def __init__(self) -> None:
        self.closed: list[str] = []

    async def close_spider_async(self, *, reason: str) -> None:
        self.closed.append(reason)


def make_crawler(**settings: Any):
    crawler = get_crawler(Spider, {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BACKOFF_BASE": 2, **settings})
    crawler.spider = Spider.from_crawler(crawler, name="unit")
    crawler.engine = RecordingEngine()
    crawler.crawling = True  # as while a crawl runs
    crawler.stats.open_spider()
    return crawler


def api_request(**meta: Any) -> Request:
    return Request(URL, meta={Meta.CALL: SearchCall(api.Query("k"), 2, 20, max_pages=20), **meta})


def stopping(crawler, reason: str) -> None:
    """Another component stops the crawl."""
    crawler.signals.send_catch_log(signals.crawl_stopping, event=stops.StopEvent(reason, "m"))


def answer(request: Request, code: Any = 0, status: int = 200, body: bytes | None = None, **headers: str):
    if body is None:
        body = orjson.dumps({"code": code, "data": {"items": []}, "message": "msg", "recordTime": None})
    return TextResponse(request.url, status=status, body=body, request=request, headers=headers)


def collect(crawler, signal) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        kwargs.pop("signal"), kwargs.pop("sender")
        seen.append(kwargs)

    crawler.signals.connect(receiver, signal=signal, weak=False)
    return seen


# --- ApiPolicyMiddleware -----------------------------------------------------------


def test_code_0_passes_and_is_announced_as_paid():
    crawler = make_crawler()
    paid = collect(crawler, signals.page_paid)
    request = api_request()
    response = answer(request)
    passed = ApiPolicyMiddleware(crawler).process_response(request, response)
    assert isinstance(passed, ApiResponse) and passed.body == response.body and passed.url == response.url
    assert len(paid) == 1
    assert crawler.stats.get_value("justoneapi/answers/code_0") == 1


def test_requests_that_are_not_api_calls_are_left_alone():
    crawler = make_crawler()
    request = Request("https://example.com/x")
    response = answer(request, 301)
    assert ApiPolicyMiddleware(crawler).process_response(request, response) is response


@pytest.mark.parametrize(
    ("code", "status", "body"),
    [(301, 200, None), (500, 500, None), (503, 503, None), (602, 200, None), (None, 502, b"<html>bad gateway</html>")],
)
def test_transient_answers_are_retried_with_backoff(code, status, body):
    crawler = make_crawler()
    request = api_request()
    retry = ApiPolicyMiddleware(crawler).process_response(request, answer(request, code, status, body))
    assert isinstance(retry, Request) and retry.dont_filter
    assert retry.meta["retry_times"] == 1
    assert retry.meta[Meta.CALL] == request.meta[Meta.CALL]

    assert 1 - 0.1 <= retry.meta[Meta.NOT_BEFORE] - time.time() <= 2 + 0.1  # base 2 s x 0.5-1.0
    assert crawler.stats.get_value("justoneapi/retry/count") == 1


def test_backoff_grows_and_is_capped():
    policy = ApiPolicyMiddleware(make_crawler(JUSTONEAPI_BACKOFF_BASE=1, JUSTONEAPI_BACKOFF_MAX=5))
    delays = [max(policy.backoff(n) for _ in range(200)) for n in range(1, 6)]
    assert delays[0] <= 1 < delays[1] <= 2 < delays[2] <= 4 < delays[3] <= 5
    assert delays[4] <= 5


def test_a_page_out_of_tries_fails_loudly():
    crawler = make_crawler(JUSTONEAPI_RETRY_TIMES=2)
    failed = collect(crawler, signals.page_failed)
    request = api_request(retry_times=2)
    with pytest.raises(IgnoreRequest):
        ApiPolicyMiddleware(crawler).process_response(request, answer(request, 301))
    assert failed and "2 retries spent" in failed[0]["reason"]
    assert crawler.stats.get_value("justoneapi/pages/failed") == 1


@pytest.mark.parametrize(("code", "status"), [(302, 200), (302, 429), (None, 429)])
def test_rate_limits_slow_down_without_spending_retries(code, status):
    crawler = make_crawler()
    limited = collect(crawler, signals.rate_limited)
    request = api_request(retry_times=4)
    body = None if code else b'{"code": 302, "message": "rate limit"}'
    retry = ApiPolicyMiddleware(crawler).process_response(
        request, answer(request, code, status, body, **{"Retry-After": "3"})
    )
    assert isinstance(retry, Request)
    assert retry.meta["retry_times"] == 4 and retry.meta[Meta.RATE_LIMITED] == 1
    assert limited == [{"retry_after": 3.0}]


def test_rate_limits_have_their_own_bound():
    crawler = make_crawler(JUSTONEAPI_RATE_LIMIT_RETRIES=3)
    request = api_request(**{Meta.RATE_LIMITED: 3})
    with pytest.raises(IgnoreRequest, match="rate limited 4 times"):
        ApiPolicyMiddleware(crawler).process_response(request, answer(request, 302))


def test_invalid_parameters_drop_the_query():
    crawler = make_crawler()
    rejected = collect(crawler, signals.query_rejected)
    request = api_request()
    with pytest.raises(IgnoreRequest):
        ApiPolicyMiddleware(crawler).process_response(request, answer(request, 400, 400))
    assert rejected[0]["message"] == "msg"
    assert crawler.stats.get_value("justoneapi/queries/rejected") == 1
    assert crawler.stats.get_value("justoneapi/retry/count") is None


@pytest.mark.parametrize("code", sorted(stops.BY_CODE))
def test_fatal_codes_stop_the_crawl_once(code):
    async def scenario():
        crawler = make_crawler()
        stopping = collect(crawler, signals.crawl_stopping)
        policy = ApiPolicyMiddleware(crawler)
        for _ in range(3):
            request = api_request()
            with pytest.raises(IgnoreRequest):
                policy.process_response(request, answer(request, code))
        # A transient answer arriving after the stop is not retried.
        with pytest.raises(IgnoreRequest, match="stopping"):
            policy.process_response(request, answer(request, 301))
        await asyncio.sleep(0)
        return crawler, stopping

    crawler, stopping = asyncio.run(scenario())
    assert crawler.engine.closed == [stops.for_code(code).reason]
    assert [s["event"].reason for s in stopping] == [stops.for_code(code).reason]


def test_connection_errors_are_retried_and_other_errors_fail_the_page():
    from twisted.internet.error import ConnectionRefusedError

    crawler = make_crawler()
    failed = collect(crawler, signals.page_failed)
    policy = ApiPolicyMiddleware(crawler)
    assert isinstance(policy.process_exception(api_request(), ConnectionRefusedError()), Request)
    assert crawler.stats.get_value("justoneapi/answers/exception_ConnectionRefusedError") == 1
    with pytest.raises(IgnoreRequest):
        policy.process_exception(api_request(), ValueError("body larger than DOWNLOAD_MAXSIZE"))
    assert [f["reason"] for f in failed] == ["exception_ValueError: body larger than DOWNLOAD_MAXSIZE"]
    assert policy.process_exception(api_request(), IgnoreRequest()) is None  # already accounted for
    assert policy.process_exception(Request("https://example.com"), ValueError()) is None  # not an API call


def test_a_paid_page_without_items_fails_and_is_not_retried():
    crawler = make_crawler()
    failed = collect(crawler, signals.page_failed)
    request = api_request()
    body = orjson.dumps({"code": 0, "data": None, "message": "success"})
    with pytest.raises(IgnoreRequest):
        ApiPolicyMiddleware(crawler).process_response(request, answer(request, body=body))
    assert "not requested again" in failed[0]["reason"]
    assert crawler.stats.get_value("justoneapi/retry/count") is None


def test_a_code_0_page_is_handed_to_the_spider_read():
    crawler = make_crawler()
    request = api_request()
    note = {"id": "69abb712000000001600a32a", "timestamp": 1764000000}
    body = orjson.dumps({"code": 0, "data": {"items": [{"model_type": "note", "note": note}, {"model_type": "hot_query"}]}})
    response = ApiPolicyMiddleware(crawler).process_response(request, answer(request, body=body))
    assert isinstance(response, ApiResponse) and response.call == request.meta[Meta.CALL]
    # ranks go on from the query's earlier pages (20 notes before page 2)
    assert response.outcome.notes == [(21, note)] and response.outcome.skipped == {"hot_query": 1}
    assert response.outcome.goes_on and response.outcome.next_rank == 21


def test_undocumented_answers_in_a_row_stop_the_crawl():
    async def scenario():
        crawler = make_crawler()
        policy = ApiPolicyMiddleware(crawler)

        def send(**kwargs):
            request = api_request()
            return policy.process_response(request, answer(request, **kwargs))

        for _ in range(3):
            send(body=b"404 page not found", status=404)
        send(code=301)  # a documented answer resets the count
        for _ in range(UNEXPECTED_LIMIT - 1):
            assert isinstance(send(body=b"404 page not found", status=404), Request)
        await asyncio.sleep(0)
        assert crawler.engine.closed == []
        with pytest.raises(IgnoreRequest):
            send(code=602)
        await asyncio.sleep(0)
        return crawler

    assert asyncio.run(scenario()).engine.closed == [UNEXPECTED]


def test_a_stop_from_anywhere_ends_retries():
    crawler = make_crawler()
    policy = ApiPolicyMiddleware(crawler)
    stopping(crawler, BUDGET_SPENT)
    request = api_request()
    with pytest.raises(IgnoreRequest, match="stopping"):
        policy.process_response(request, answer(request, 503))
    with pytest.raises(IgnoreRequest, match="stopping"):
        policy.process_response(request, answer(request, 302))


@pytest.mark.parametrize(
    ("header", "expected"),
    [("1.5", 1.5), ("0", 0.0), ("86400", 2.0), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_is_read_and_capped(header, expected):
    crawler = make_crawler(JUSTONEAPI_BACKOFF_BASE=1, JUSTONEAPI_BACKOFF_MAX=2)
    limited = collect(crawler, signals.rate_limited)
    request = api_request()
    ApiPolicyMiddleware(crawler).process_response(request, answer(request, 302, **{"Retry-After": header}))
    assert limited == [{"retry_after": expected}]


# --- TokenThrottleMiddleware ---------------------------------------------------------


def test_the_budget_stops_the_crawl_before_the_next_call():
    async def scenario():
        crawler = make_crawler(JUSTONEAPI_MAX_REQUESTS=2, JUSTONEAPI_MAX_RPS=0)
        throttle = TokenThrottleMiddleware(crawler)
        await throttle.process_request(api_request())
        await throttle.process_request(api_request())
        with pytest.raises(IgnoreRequest, match=BUDGET_SPENT):
            await throttle.process_request(api_request())
        with pytest.raises(IgnoreRequest):
            await throttle.process_request(api_request())
        await asyncio.sleep(0)
        return crawler

    crawler = asyncio.run(scenario())
    assert crawler.stats.get_value("justoneapi/requests/sent") == 2
    assert crawler.engine.closed == [BUDGET_SPENT]


def test_nothing_is_sent_once_the_crawl_is_stopping():
    async def scenario():
        crawler = make_crawler(JUSTONEAPI_MAX_RPS=0)
        throttle = TokenThrottleMiddleware(crawler)
        stopping(crawler, "justoneapi_insufficient_balance")
        with pytest.raises(IgnoreRequest, match="justoneapi_insufficient_balance"):
            await throttle.process_request(api_request())
        assert await throttle.process_request(Request("https://example.com")) is None  # not an API call
        return crawler

    assert asyncio.run(scenario()).stats.get_value("justoneapi/requests/not_sent") == 1


def test_backoff_and_rate_waits_are_spent_before_sending():
    async def scenario():
        crawler = make_crawler(JUSTONEAPI_MAX_RPS=20)
        throttle = TokenThrottleMiddleware(crawler)

        await throttle.process_request(api_request(**{Meta.NOT_BEFORE: time.time() + 0.05}))
        await throttle.process_request(api_request())
        crawler.signals.send_catch_log(signals.rate_limited, retry_after=None)
        await throttle.process_request(api_request())
        return crawler, throttle

    crawler, throttle = asyncio.run(scenario())
    assert 0.04 < crawler.stats.get_value("justoneapi/retry/backoff_seconds") < 1  # the wait itself, wall-clock
    assert crawler.stats.get_value("justoneapi/ratelimit/held_seconds") > 0, "the 302 paused the next call"
    # nothing accepted to measure the limit by yet: the rate holds until a 302 can measure it
    assert throttle.limiter.rate == 20 and crawler.stats.get_value("justoneapi/ratelimit/rate") == 20


# --- TokenAuthDownloadHandler ----------------------------------------------------------


class RecordingHandler:
    """Stands in for Scrapy's HTTP client: records what it was asked to fetch."""

    def __init__(self, fail: bool = False) -> None:
        self.urls: list[str] = []
        self.fail = fail

    async def download_request(self, request: Request):
        self.urls.append(request.url)
        request.meta["download_latency"] = 0.5  # as Scrapy's HTTP handler notes it
        if self.fail:
            raise TimeoutError(f"Getting {request.url} took longer than 60 seconds.")
        return TextResponse(request.url, body=b"{}", request=request)

    async def close(self) -> None:
        pass


def test_the_token_is_added_at_the_last_hop_only():
    async def scenario(fail: bool):
        inner = RecordingHandler(fail)
        handler = TokenAuthDownloadHandler(make_crawler(), inner)
        request = api_request()
        response = await handler.download_request(request)
        return request, response, inner

    request, response, inner = asyncio.run(scenario(False))
    assert inner.urls == [URL + "&token=" + TOKEN]
    assert request.url == URL and response.url == URL and TOKEN not in repr(response)
    assert request.meta["download_latency"] == 0.5, "AutoThrottle reads it from the crawl's own request"
    with pytest.raises(TimeoutError) as excinfo:
        asyncio.run(scenario(True))
    assert TOKEN not in str(excinfo.value) and "unit…" in str(excinfo.value)


def test_other_requests_get_no_token():
    async def scenario():
        inner = RecordingHandler()
        handler = TokenAuthDownloadHandler(make_crawler(), inner)
        await handler.download_request(Request("https://example.com/?a=1"))
        return inner

    assert asyncio.run(scenario()).urls == ["https://example.com/?a=1"]


# --- pipeline and exporter -----------------------------------------------------------------


def test_dedupe_keeps_the_first_copy_of_each_note():
    crawler = make_crawler()
    pipeline = NoteDedupePipeline.from_crawler(crawler)
    first = {"note_id": "69abb712000000001600a32a", "keyword": "a"}

    async def scenario():
        assert await pipeline.process_item(first) is first
        assert await pipeline.process_item({"note_id": "not-hex-id", "keyword": "a"})
        for item in ({"note_id": "69abb712000000001600a32a", "keyword": "b"}, {"note_id": "not-hex-id"}):
            with pytest.raises(DropItem) as excinfo:
                await pipeline.process_item(item)
            assert excinfo.value.log_level == "DEBUG"

    asyncio.run(scenario())
    assert crawler.stats.get_value("justoneapi/notes/unique") == 2
    assert crawler.stats.get_value("justoneapi/notes/duplicate") == 2


def test_exporter_writes_one_utf8_object_per_line():
    out = io.BytesIO()
    exporter = OrjsonLinesItemExporter(out)
    exporter.start_exporting()
    exporter.export_item({"note_id": "a", "title": '海信 "x"\n', "user": {"nickname": "猫"}})
    exporter.export_item({"note_id": "b", "title": None})
    exporter.finish_exporting()
    lines = out.getvalue().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert orjson.loads(lines[0])["title"] == '海信 "x"\n' and "海信".encode() in lines[0]
    selected = io.BytesIO()
    OrjsonLinesItemExporter(selected, fields_to_export=["title", "note_id"]).export_item(
        {"note_id": "a", "title": "t", "x": 1}
    )
    assert selected.getvalue() == b'{"title":"t","note_id":"a"}\n'


def test_a_stop_wakes_requests_waiting_on_backoff():
    async def scenario():
        crawler = make_crawler(JUSTONEAPI_MAX_RPS=0)
        throttle = TokenThrottleMiddleware(crawler)
        waiting = asyncio.ensure_future(throttle.process_request(api_request(**{Meta.NOT_BEFORE: time.time() + 30})))
        await until(lambda: throttle._backoff.inside)  # the request sleeps out its backoff
        started = time.monotonic()
        stopping(crawler, "justoneapi_quota_exceeded")
        with pytest.raises(IgnoreRequest, match="justoneapi_quota_exceeded"):
            await waiting
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 5, "not the 30 s of backoff"


def test_a_shutdown_wakes_requests_waiting_on_the_rate_limit(monkeypatch):
    # No signal tells of a shutdown: a sleeper looks every STOP_POLL seconds (1 s; 0.05 s here).
    monkeypatch.setattr(throttle_module, "STOP_POLL", 0.05)

    async def scenario():
        crawler = make_crawler(JUSTONEAPI_MAX_RPS=0.2)  # one call per 5 s
        throttle = TokenThrottleMiddleware(crawler)
        await throttle.process_request(api_request())
        waiting = asyncio.ensure_future(throttle.process_request(api_request()))
        await until(lambda: throttle._held.inside or throttle._held_by_ceiling.inside)  # it waits for its turn
        crawler.crawling = False  # what Ctrl-C does; no signal tells us
        with pytest.raises(IgnoreRequest, match="shutdown"):
            await waiting

    asyncio.run(asyncio.wait_for(scenario(), timeout=4))


def test_the_token_goes_only_to_the_configured_api():
    """A search call to another host is not sent at all: never unsigned (issue 20)."""

    async def scenario():
        inner = RecordingHandler()
        handler = TokenAuthDownloadHandler(make_crawler(), inner)
        elsewhere = URL.replace("https://api.justoneapi.com", "https://redirected.example")
        with pytest.raises(UnsignedCall, match=r"redirected\.example"):
            await handler.download_request(api_request().replace(url=elsewhere))
        return inner

    assert asyncio.run(scenario()).urls == []
