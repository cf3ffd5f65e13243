"""The whole distributed crawl judged once (issue 24, point 1): two workers on a real redis-server,
the sandbox, and a real webhook on 127.0.0.1. Each worker tells its own run; the one that sees the
crawl end claims its verdict in Redis and tells the crawl's, with the crawl's figures.

Two workers at once are two processes: a ``scrapy crawl`` subprocess and a worker in this process
(``scrapy crawl`` on this process's reactor, ``run_worker_here``); a crawl of one worker at a time runs
in this process only."""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest

from rednote_crawl.state.redis.keys import Keys
from tests import test_distributed, test_monitors
from tests.conftest import expected_ids, run_worker_here, wait_until

receiver = test_monitors.receiver  # the fixture: a webhook receiver on 127.0.0.1

pytestmark = pytest.mark.crawl

KEYWORDS = ["海信", "Nike", "小米", "蔚来"]  # 4 queries: work for two workers of CONCURRENCY 2 at once
ONE_AT_A_TIME = ["海信", "小米"]  # a crawl of one worker: what its figures are does not matter, only that they agree
KEYS = Keys("note_search")
WHOLE = "the whole distributed crawl"


def split(posts: list[tuple[str, dict]]) -> tuple[list[dict], list[dict]]:
    """(the crawl's messages, the workers' own)."""
    messages = [body for _, body in posts]
    return [m for m in messages if WHOLE in m["title"]], [m for m in messages if WHOLE not in m["title"]]


def figure(body: str, name: str) -> int:
    found = re.search(rf"{name}: (\d+)", body)
    assert found, (name, body)
    return int(found.group(1))


def test_the_worker_that_sees_the_crawl_end_tells_the_whole_crawl_once(
    sandbox_factory, workers, seeds, redis_server, receiver, tmp_path
):
    sandbox = sandbox_factory(latency=0.05)
    notify = {"JUSTONEAPI_NOTIFY": receiver.url, "JUSTONEAPI_NOTIFY_ON": "always"}
    first = workers(sandbox, seeds, **notify)
    wait_until(lambda: redis_server.client().zcard(KEYS.requests) > 0)
    second = run_worker_here(redis_server, sandbox, None, **notify)  # no keywords: work from Redis
    assert [first.wait(), second.returncode] == [0, 0], first.log[-3000:] + second.log[-3000:]

    crawl, own = split(receiver.posts)
    assert len(own) == 2, "each worker tells its own run"
    assert len(crawl) == 1, [m["title"] for m in crawl]
    (message,) = crawl
    assert message["title"] == f"rednote_crawl note_search, {WHOLE}: OK, exit status 0"
    body = message["message"]
    stats = redis_server.client().hgetall(KEYS.stats)
    notes = len(expected_ids(KEYWORDS))
    assert figure(body, "New notes") == int(stats["notes"]) == notes
    assert figure(body, "calls") == int(stats["calls"]) == len(sandbox.log)
    assert f"pages: {stats['pages_paid']} read, 0 failed" in body
    assert "Exit status 0: finished" in body
    # The workers' own figures are parts of the crawl's: none of them alone is the whole.
    assert sum(figure(m["message"], "New notes") for m in own) == notes
    judged = [log for log in (first.log, second.log) if "The whole crawl: exit status 0, finished" in log]
    assert len(judged) == 1, "one worker judges the crawl"
    verdict = redis_server.client().get(KEYS.verdict)
    assert verdict.startswith(redis_server.client().get(KEYS.crawl) + " finished ")


def test_a_failed_crawl_gives_one_crawl_wide_failure_message(
    sandbox_factory, workers, seeds, redis_server, receiver, tmp_path
):
    broke = "tok-with-no-balance"
    sandbox = sandbox_factory(latency=0.1, token_codes={broke: 601})
    notify = {"JUSTONEAPI_NOTIFY": receiver.url}  # on failure, the default
    env = {"JUSTONEAPI_TOKEN": broke}
    first = workers(sandbox, seeds, env=env, **notify)
    client = redis_server.client()
    wait_until(lambda: client.zcard(KEYS.requests) > 0 or client.exists(KEYS.stop))  # the crawl is seeded
    second = run_worker_here(redis_server, sandbox, None, env=env, **notify)
    assert [first.wait(), second.returncode] == [5, 5], first.log[-3000:] + second.log[-3000:]

    crawl, own = split(receiver.posts)
    assert len(own) == 2 and all("FAILED, exit status 5" in m["title"] for m in own)
    assert len(crawl) == 1, [m["title"] for m in crawl]
    (message,) = crawl
    assert message["title"] == f"rednote_crawl note_search, {WHOLE}: FAILED, exit status 5"
    body = message["message"]
    assert "balance" in body and "finish reason justoneapi_insufficient_balance" in body
    assert figure(body, "calls") == int(redis_server.client().hget(KEYS.stats, "calls")) == len(sandbox.log)
    assert "scrapy redis resume" in body, "the next step is the crawl's"
    assert redis_server.client().get(KEYS.verdict).split()[1] == "justoneapi_insufficient_balance"


def test_the_verdict_is_claimed_once_when_the_crawl_has_ended_and_reset_and_resume_clear_it(redis_server):
    client = redis_server.client()
    one, two = test_distributed.shared_crawl(redis_server), test_distributed.shared_crawl(redis_server)

    async def scenario() -> list[dict | None]:
        answers = []
        client.zadd(KEYS.requests, {"r1": 0})
        answers.append(await one.claim_verdict())  # a request is queued: the crawl goes on
        client.delete(KEYS.requests)
        client.hset(KEYS.stats, mapping={"calls": 7, "notes": 40})
        answers += [await one.claim_verdict(), await two.claim_verdict()]
        await one.aclose()
        await two.aclose()
        return answers

    assert asyncio.run(scenario()) == [None, {"calls": 7, "notes": 40, "stop": None}, None], "claimed once, at the end"
    assert test_distributed.redis_command(redis_server, "reset").returncode == 0
    assert client.get(KEYS.verdict) is None
    client.set(KEYS.verdict, "x finished w")
    client.hset(KEYS.stop, mapping={"reason": "justoneapi_insufficient_balance", "message": "m", "worker": "w"})
    assert test_distributed.redis_command(redis_server, "resume").returncode == 0
    assert client.get(KEYS.verdict) is None, "a resumed crawl will end again"


def test_the_crawl_wide_verdict_judges_the_history_redis_keeps(sandbox_factory, redis_server, receiver, tmp_path):
    """Each ended crawl's figures go into a history list in Redis; the next crawl's verdict compares
    with them: a crawl with no new note after crawls with some is a silent crawl. One worker at a
    time: in this process."""
    seeds = tmp_path / "keywords.txt"
    seeds.write_text("\n".join(ONE_AT_A_TIME) + "\n", encoding="utf-8")
    sandbox = sandbox_factory()
    monitor = {"JUSTONEAPI_NOTIFY": receiver.url, "JUSTONEAPI_MONITOR_SILENT_AFTER": "1", "CONCURRENT_REQUESTS": "8"}
    crawl = run_worker_here(redis_server, sandbox, seeds, **monitor)
    assert crawl.returncode == 0, crawl.log[-3000:]
    client = redis_server.client()
    (first,) = [orjson.loads(entry) for entry in client.lrange(KEYS.history, 0, -1)]
    notes = len(expected_ids(ONE_AT_A_TIME))
    assert (first["new"], first["calls"], first["pages"], first["stop"]) == (notes, len(sandbox.log), len(sandbox.log), None)
    assert receiver.posts == [], "nothing failed: no message (on failure, the default)"

    assert test_distributed.redis_command(redis_server, "reset").returncode == 0  # a new crawl, the same seen notes
    again = run_worker_here(redis_server, sandbox, seeds, **monitor)
    assert again.returncode == 0, again.log[-3000:]
    assert [orjson.loads(e)["new"] for e in client.lrange(KEYS.history, 0, -1)] == [notes, 0]
    crawl, _ = split(receiver.posts)
    assert len(crawl) == 1, [m["title"] for m in receiver.posts]
    assert "no new note for (all keywords) after 1 crawl with some" in crawl[0]["message"]
    assert "The whole crawl: exit status 0, finished; 0 new notes" in again.log
    assert "failed monitors: silent_keywords" in again.log
