"""Detail calls in a distributed crawl (issue 23, point 3): a new note that wants its details is held in
Redis by its page's script, its detail call is leased like a page, and the worker that makes the call
delivers the note, whole, in the script that acks it. Real workers on a real redis-server, the sandbox:
a ``scrapy crawl`` subprocess where a process is killed or two workers share the crawl (the other one
then runs in this process, ``run_worker_here``), a worker in this process otherwise."""

from __future__ import annotations

import re
import signal
from collections import Counter

import orjson
import pytest

from tests.conftest import CONCURRENCY, expected_ids, paid_twice, run_worker_here, wait_until
from tests.test_distributed import KEYS

pytestmark = pytest.mark.crawl

KEYWORDS = ["海信", "小米"]  # two queries (14 pages, 180 notes): work for both workers at once
ONE = ["海信"]  # for the tests of one worker at a time: how many notes does not matter there


def keyword_file(tmp_path, keywords: list[str]):
    path = tmp_path / "keywords.txt"
    path.write_text("\n".join(keywords) + "\n", encoding="utf-8")
    return path


def items(redis_server) -> list[dict]:
    return [orjson.loads(line) for line in redis_server.client().lrange(KEYS.items, 0, -1)]


def assert_whole_once(redis_server, sandbox, keywords: list[str] = KEYWORDS, pages_paid_twice: int = 0) -> list[str]:
    """Every note of the keywords delivered once, each with its details; nothing left held or queued."""
    notes = items(redis_server)
    ids = [note["note_id"] for note in notes]
    assert len(ids) == len(set(ids)), "a note was delivered twice"
    assert set(ids) == expected_ids(keywords), "a note was lost"
    for note in notes:
        assert note["details"] == "fetched" and note["ip_location"] and note["images_original"], note["note_id"]
        assert note["keyword"] in keywords and note["page"] >= 1 and note["rank"] >= 1
    assert set(sandbox.paid_details()) == set(ids), "a detail call for every note"
    twice = paid_twice(sandbox)
    assert sum(n - 1 for n in twice.values()) <= pages_paid_twice, f"search pages paid twice: {twice}"
    client = redis_server.client()
    assert client.hlen(KEYS.held) == 0, "no note left held"
    assert client.zcard(KEYS.requests) == client.zcard(KEYS.leases) == client.hlen(KEYS.data) == 0
    return ids


def test_two_workers_deliver_every_note_once_whole_each_detail_call_paid_once(
    sandbox_factory, workers, seeds, redis_server, tmp_path
):
    sandbox = sandbox_factory(latency=0.02)
    first = workers(sandbox, seeds, "-a", "details=new", CONCURRENT_REQUESTS="4")
    wait_until(lambda: redis_server.client().zcard(KEYS.requests) > 0)
    # The second worker, in this process: no keywords, work from Redis, detail calls too.
    second = run_worker_here(redis_server, sandbox, None, "-a", "details=new", CONCURRENT_REQUESTS="4")
    assert [first.wait(), second.returncode] == [0, 0], first.log[-3000:] + second.log[-3000:]

    ids = assert_whole_once(redis_server, sandbox)
    assert sorted(sandbox.paid_details()) == sorted(ids), "each detail call paid once"
    stats = redis_server.client().hgetall(KEYS.stats)
    assert int(stats["details_held"]) == int(stats["details_fetched"]) == int(stats["notes"]) == len(ids)
    for log in (first.log, second.log):
        assert "Summary of note_search: finished, exit status 0" in log
    for log in (first.log, second.log):  # each made detail calls, the one started without keywords too
        made = re.search(r"details: +(\d+) detail calls of the \d+ calls sent", log)
        assert made and int(made[1]) > 0, log[-2000:]


def test_a_worker_killed_with_kill_9_while_it_holds_detail_calls_loses_no_note(
    sandbox_factory, workers, redis_server, tmp_path
):
    sandbox = sandbox_factory(latency=0.3)
    client = redis_server.client()
    victim = workers(sandbox, keyword_file(tmp_path, ONE), "-a", "details=new")

    def detail_calls_leased() -> int:
        leased = client.zrange(KEYS.leases, 0, -1)
        return sum('"kind":"detail"' in (client.hget(KEYS.data, lease) or "") for lease in leased)

    wait_until(lambda: detail_calls_leased() > 0 and sandbox.paid_details())  # the only worker: its leases
    victim.proc.send_signal(signal.SIGKILL)
    victim.wait()
    held = client.hlen(KEYS.held)
    assert held > 0, "notes were waiting for their details at the kill"
    assert client.llen(KEYS.items) < len(expected_ids(ONE)), "killed midway"
    sandbox.config.latency = 0
    # After the kill, one worker: in this process.
    survivor = run_worker_here(redis_server, sandbox, None, "-a", "details=new", CONCURRENT_REQUESTS="4")
    assert survivor.returncode == 0, survivor.log[-3000:]

    ids = assert_whole_once(redis_server, sandbox, ONE, pages_paid_twice=CONCURRENCY)
    twice = {note: n for note, n in Counter(sandbox.paid_details()).items() if n > 1}
    assert sum(n - 1 for n in twice.values()) <= CONCURRENCY, f"only the killed worker's calls in flight: {twice}"
    assert int(client.hget(KEYS.stats, "leases_expired") or 0) >= 1, "the killed worker's calls came back"
    assert len(ids) == int(client.hget(KEYS.stats, "notes"))


def test_a_failed_detail_call_delivers_its_note_without_details_and_unasked_notes_go_at_once(
    sandbox_factory, redis_server, tmp_path
):
    sandbox = sandbox_factory(faults=["html502@detail"])
    settings = {"JUSTONEAPI_RETRY_TIMES": "1", "CONCURRENT_REQUESTS": "4"}
    seeds = keyword_file(tmp_path, ONE)  # one worker: in this process
    worker = run_worker_here(redis_server, sandbox, seeds, "-a", "details=cut", **settings)
    assert worker.returncode == 0, worker.log[-3000:]

    notes = items(redis_server)
    ids = [note["note_id"] for note in notes]
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(ONE), "each note once, none lost"
    cut = {note["note_id"] for note in notes if note["desc_truncated"]}
    assert cut and {note["note_id"] for note in notes if note["details"] == "failed"} == cut
    assert all(note["details"] == "not_asked" for note in notes if note["note_id"] not in cut)
    detail_calls = [e["note_id"] for e in sandbox.log if e.get("kind") == "detail"]
    assert sorted(detail_calls) == sorted([*cut, *cut]), "one try and one retry each, for the cut previews only"
    assert redis_server.client().hlen(KEYS.held) == 0


def test_a_detail_call_goes_to_redis_as_its_note_and_comes_before_any_page():
    from scrapy.utils.test import get_crawler

    from rednote_crawl.api import Query
    from rednote_crawl.names import Meta
    from rednote_crawl.search import DetailCall, SearchCall
    from rednote_crawl.spiders.note_search import NoteSearchSpider
    from rednote_crawl.state.redis.requests import RequestCodec

    crawler = get_crawler(NoteSearchSpider, {"JUSTONEAPI_TOKEN": "t"})
    spider = NoteSearchSpider.from_crawler(crawler, keyword="a")
    codec = RequestCodec(spider, KEYS.dupefilter)
    request = spider.detail_request(DetailCall("65bf5360000000002c03f684"))
    request.meta[Meta.HELD_NOTE] = {"note_id": "65bf5360000000002c03f684", "title": "t"}
    _, encoded, score, fingerprint, starts_query = codec.push(request)
    assert orjson.loads(encoded)["kind"] == "detail" and "token" not in encoded and not starts_query
    back = codec.decode(encoded)
    assert back.meta[Meta.CALL] == DetailCall("65bf5360000000002c03f684") and back.callback == spider.parse_detail
    assert back.meta[Meta.HELD_NOTE]["title"] == "t", "the call carries the note it delivers"
    assert fingerprint and fingerprint == codec.fingerprint(spider.detail_request(DetailCall("65bf5360000000002c03f684")))
    assert fingerprint != codec.fingerprint(spider.detail_request(DetailCall("65bf5360000000002c03f685")))
    page = spider.page_request(SearchCall(Query("a", "general", "_0", "any"), 1000, 0, 1000))
    assert score < codec.push(page)[2], "a held note's call is taken before any page"
