"""Broken answers: no page disappears, and an answer that arrived whole is not paid for again and again.

Every way a search request ends is a page read, a failed page (exit 3), or, once the crawl is
stopping, a call not sent: an ``IgnoreRequest`` from a component the project did not write (Scrapy's
HttpCompressionMiddleware dropping a gzip body that inflates past DOWNLOAD_MAXSIZE, a custom
downloader middleware) included; distributed, the page's lease is acked and the worker closes.
An answer that arrived whole but breaks the contract (invalid UTF-8 in a string, JSON nested too
deep) is read as far as it goes, its other notes kept, and not retried; a cut-off body stays transient.
The tests run the crawl in this process against the in-thread sandbox, the Redis worker too.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import TextResponse
from scrapy.settings import Settings
from scrapy.utils.conf import feed_process_params_from_cli
from scrapy.utils.test import get_crawler
from twisted.python.failure import Failure

from rednote_crawl import api, signals, stops
from rednote_crawl.downloader.policy import ApiPolicyMiddleware
from rednote_crawl.names import Meta
from rednote_crawl.run.redis_status import crawl_status
from rednote_crawl.search import Accounted, SearchCall
from rednote_crawl.spiders.note_search import NoteSearchSpider
from rednote_crawl.state.redis.keys import Keys
from tests.conftest import TOKEN, WORKER, crawl_args, crawl_here, expected_ids, paid_twice, scrapy_in_process

KEYWORDS = ["海信", "Nike"]


# --- helpers: a crawl in this process -------------------------------------------------------


def crawl_to_file(server, tmp_path: Path, keywords: list[str] = KEYWORDS, **settings: Any) -> tuple[int, Crawler, list]:
    """``scrapy crawl note_search -a keyword=... -O FILE -s ...`` in this process: (exit status, crawler, notes)."""
    out = tmp_path / "notes.jsonl"
    feeds = feed_process_params_from_cli(Settings(), [], overwrite_output=[str(out)])
    status, crawler = crawl_here(server, tmp_path, keywords, FEEDS=feeds, **settings)
    notes = [orjson.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []
    return status, crawler, notes


def calls_of(server, keyword: str, page: int) -> int:
    return sum(1 for e in server.log if e["keyword"] == keyword and e["page"] == str(page))


class DropOnePage:
    """A downloader middleware someone else wrote: it drops page 2 of Nike before it is sent."""

    def process_request(self, request: Request) -> None:
        call = request.meta.get(Meta.CALL)
        if call is not None and call.query.keyword == "Nike" and call.page == 2:
            raise IgnoreRequest("not today")


# --- 1. no page disappears -------------------------------------------------------------------


def test_a_page_dropped_by_scrapys_decompression_limit_fails_and_the_crawl_exits_3(
    sandbox_factory, environment, tmp_path
):
    server = sandbox_factory(faults=["gzipbomb@Nike#2"])
    status, crawler, notes = crawl_to_file(server, tmp_path, DOWNLOAD_MAXSIZE=str(2**20))
    stats = crawler.stats.get_stats()
    assert status == stops.EXIT_INCOMPLETE
    assert stats["finish_reason"] == "finished"
    assert stats["justoneapi/pages/failed"] == 1
    assert calls_of(server, "Nike", 2) == 1  # failed, not retried
    assert calls_of(server, "Nike", 3) == 0  # its query is incomplete, said so
    assert {n["note_id"] for n in notes} <= expected_ids(KEYWORDS)
    assert expected_ids(["海信"]) <= {n["note_id"] for n in notes}


def test_a_page_dropped_by_a_middleware_the_project_did_not_write_fails(sandbox, environment, tmp_path):
    middlewares = {f"{__name__}.DropOnePage": 600}
    status, crawler, _ = crawl_to_file(sandbox, tmp_path, DOWNLOADER_MIDDLEWARES=middlewares)
    assert status == stops.EXIT_INCOMPLETE
    assert crawler.stats.get_value("justoneapi/pages/failed") == 1
    assert calls_of(sandbox, "Nike", 2) == 0


def test_the_spiders_errback_records_every_end_but_the_ones_already_accounted():
    crawler = get_crawler(NoteSearchSpider, {"JUSTONEAPI_TOKEN": TOKEN})
    spider = NoteSearchSpider.from_crawler(crawler, keyword="x")
    crawler.spider = spider
    failed: list[str] = []
    crawler.signals.connect(lambda request, reason, **_: failed.append(reason), signal=signals.page_failed, weak=False)
    request = spider.page_request(SearchCall(api.Query("x"), 1, 0, 5))

    def end(exc: Exception) -> None:
        failure = Failure(exc)
        failure.request = request  # type: ignore[attr-defined]
        spider.page_error(failure)

    end(Accounted("already said"))
    assert failed == []
    end(IgnoreRequest("someone else's"))
    end(ValueError("a bug in a middleware"))
    assert len(failed) == 2 and "dropped by another component" in failed[0] and "ValueError" in failed[1]
    assert crawler.stats.get_value("justoneapi/pages/failed") == 2


def test_a_stop_keeps_its_own_exit_status_and_refused_calls_are_not_failed_pages(
    sandbox_factory, environment, tmp_path
):
    server = sandbox_factory(faults=["601@Nike#2"])
    status, crawler, _ = crawl_to_file(server, tmp_path)
    assert status == stops.INSUFFICIENT_BALANCE.exit_status
    assert crawler.stats.get_value("justoneapi/pages/failed") is None


# --- 2. broken is not transient --------------------------------------------------------------


def envelope(*items: Any) -> bytes:
    return orjson.dumps({"code": 0, "data": {"items": list(items)}, "message": "ok"})


def note(note_id: str, desc: str = "text") -> dict[str, Any]:
    return {"model_type": "note", "note": {"id": note_id, "desc": desc, "xsec_token": "x"}}


def test_invalid_utf8_in_a_string_is_replaced_and_counted_and_the_page_is_read():
    body = envelope(note("a" * 24, "MARK"), note("b" * 24)).replace(b"MARK", b"ok \xff\xfe \xc3")
    answer = api.judge(200, body)
    assert answer.action is api.Action.PARSE and answer.replaced == 3
    page = api.read_page(answer.envelope)
    assert [n["id"] for n in page.notes] == ["a" * 24, "b" * 24]
    assert page.notes[0]["desc"] == "ok \ufffd\ufffd \ufffd"


def test_an_item_nested_too_deep_is_skipped_and_counted_and_the_others_kept():
    body = envelope(note("a" * 24, "MARK"), note("b" * 24)).replace(b'"MARK"', b"[" * 3000 + b"]" * 3000)
    answer = api.judge(200, body)
    assert answer.action is api.Action.PARSE
    page = api.read_page(answer.envelope)
    assert [n["id"] for n in page.notes] == ["b" * 24]
    assert page.skipped == Counter({"unparseable": 1})
    assert page.size == 2  # still a page with items: not the end of the query


def test_a_cut_off_body_stays_transient_and_a_whole_unreadable_one_is_tried_once_more():
    body = envelope(note("a" * 24), note("b" * 24))
    cut = api.judge(200, body[: len(body) - 10])
    assert (cut.action, cut.label, cut.retries) == (api.Action.RETRY, "http_200_truncated", None)
    whole = api.judge(200, b'{"code": 0, "data": {"items": []}, oops}')
    assert (whole.action, whole.label, whole.retries) == (api.Action.RETRY, "http_200_unreadable", 1)


def test_the_policy_keeps_a_broken_page_and_a_whole_unreadable_answer_costs_two_calls_at_most():
    crawler = get_crawler(Spider, {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_RETRY_TIMES": 5})
    crawler.spider = crawler._create_spider("s")
    policy = ApiPolicyMiddleware(crawler)
    request = Request("https://api.justoneapi.com/x", meta={Meta.CALL: SearchCall(api.Query("k"), 1, 0, 5)})
    body = envelope(note("a" * 24, "MARK"), note("b" * 24)).replace(b"MARK", b"\xff")
    read = policy.process_response(request, TextResponse(request.url, body=body, request=request))
    assert [n["id"] for _, n in read.outcome.notes] == ["a" * 24, "b" * 24]
    assert crawler.stats.get_value("justoneapi/answers/invalid_utf8_replaced") == 1
    unreadable = TextResponse(request.url, body=b'{"code": 0, oops}', request=request)
    retry = policy.process_response(request, unreadable)
    assert isinstance(retry, Request)
    with pytest.raises(Accounted):
        policy.process_response(retry, TextResponse(request.url, body=b'{"code": 0, oops}', request=retry))
    assert crawler.stats.get_value("justoneapi/pages/failed") == 1


def test_broken_pages_in_a_crawl_are_paid_once_and_their_other_notes_delivered(sandbox_factory, environment, tmp_path):
    server = sandbox_factory(faults=["badutf8@Nike#1", "deepjson@海信#2"])
    status, crawler, notes = crawl_to_file(server, tmp_path)
    stats = crawler.stats.get_stats()
    assert status == 0, stats
    assert calls_of(server, "Nike", 1) == 1 and calls_of(server, "海信", 2) == 1
    assert not paid_twice(server)
    assert stats["justoneapi/answers/invalid_utf8_replaced"] == 3
    assert stats["justoneapi/items/skipped/unparseable"] == 1
    ids = [n["note_id"] for n in notes]
    assert len(ids) == len(set(ids))
    missing = expected_ids(KEYWORDS) - set(ids)
    assert len(missing) <= 1  # the one note nobody can read (unless another page has it too)
    assert any("\ufffd" in (n["desc"] or "") for n in notes)


# --- 1, distributed: the lease of a dropped page is acked, the worker closes -------------------


@pytest.mark.crawl
def test_a_dropped_page_on_redis_is_acked_and_the_worker_exits_3(sandbox_factory, redis_server, tmp_path):
    """`scrapy crawl` as a Redis worker (the distributed tests' WORKER settings), in this process: its
    exit status and log are the command's."""
    server = sandbox_factory(faults=["gzipbomb@Nike#2"])
    seeds = tmp_path / "keywords.txt"
    seeds.write_text("\n".join(KEYWORDS) + "\n", encoding="utf-8")
    settings = {**WORKER, "DOWNLOAD_MAXSIZE": str(2**20)}
    cmd = crawl_args(seeds=seeds, settings=settings, state=tmp_path / "state")
    environ = {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BASE_URL": server.url, "REDIS_URL": redis_server.url}
    proc = scrapy_in_process(*cmd, env=environ, timeout=90)
    log = proc.stderr + proc.stdout
    assert proc.returncode == stops.EXIT_INCOMPLETE, log[-3000:]
    assert "dropped by another component" in log
    status = crawl_status(redis_server.client(), Keys("note_search"))
    assert (status["queued"], status["in_flight"]) == (0, 0)
    assert status["stats"].get("pages_failed") == 1
    assert calls_of(server, "Nike", 2) == 1


# --- 5. ids checked at the edge ------------------------------------------------------------------


def test_a_note_id_of_another_form_is_kept_counted_length_limited_and_quoted_in_its_url():
    odd = "../" + "x" * 5000 + "\nevil?a=b#c"
    body = envelope(note(odd), note("6a86f912000000002202dd15"))
    answer = api.judge(200, body)
    outcome = api.page_outcome(answer.envelope, page=1, rank_offset=0, max_pages=5, since=None, sort="general")
    assert outcome.odd_ids == 1 and len(outcome.notes) == 2
    item = api.note_item(outcome.notes[0][1], query=api.Query("k"), note_time_sent=None, page=1, rank=1, fetched_at="t")
    assert len(item["note_id"]) == api.NOTE_ID_MAX and item["note_id"].startswith("../xxx")
    other = dict(outcome.notes[0][1], id=odd + "2")  # another long id with the same beginning stays apart
    assert (
        api.note_item(other, query=api.Query("k"), note_time_sent=None, page=1, rank=1, fetched_at="t")["note_id"]
        != item["note_id"]
    )
    url = item["url"]
    assert url.startswith("https://www.xiaohongshu.com/explore/..%2Fxxx") and "\n" not in url
    assert "/../" not in url and "?a=b" not in url
    assert api.odd_note_id("6a86f912000000002202dd15") is False


def test_the_policy_counts_odd_ids():
    crawler = get_crawler(Spider, {"JUSTONEAPI_TOKEN": TOKEN})
    crawler.spider = crawler._create_spider("s")
    policy = ApiPolicyMiddleware(crawler)
    request = Request("https://api.justoneapi.com/x", meta={Meta.CALL: SearchCall(api.Query("k"), 1, 0, 5)})
    body = envelope(note("NOT-HEX"), note("6a86f912000000002202dd15"))
    read = policy.process_response(request, TextResponse(request.url, body=body, request=request))
    assert len(read.outcome.notes) == 2
    assert crawler.stats.get_value("justoneapi/notes/odd_id") == 1
