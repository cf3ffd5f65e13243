"""A shared crawl under what a production Redis and a team really do (issue 20): Redis refusing
writes while it answers, batches sent again after a timeout, workers that differ, two drains.

A worker alone runs in this process (``run_worker_here``), with a thread beside it that breaks
Redis; two workers at once are a ``scrapy crawl`` subprocess and one here; the even sharing is
measured between worker processes alike, all subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import orjson
import pytest
import redis
from scrapy import Request
from scrapy.settings import Settings
from scrapy.utils.test import get_crawler

import rednote_crawl.state.redis as redis_state
from bench.redis_proxy import DelayProxy
from rednote_crawl.api import Query
from rednote_crawl.downloader.handler import TokenAuthDownloadHandler, UnsignedCall
from rednote_crawl.names import Meta
from rednote_crawl.run.drain import TRIM, DrainBusy, drain
from rednote_crawl.search import SearchCall
from rednote_crawl.spiders.note_search import NoteSearchSpider
from rednote_crawl.state.redis import RedisState, scripts
from rednote_crawl.state.redis.client import display_url
from rednote_crawl.state.redis.keys import Keys
from rednote_crawl.state.redis.shared import OldCrawl, SharedCrawl
from tests.conftest import (
    REACTOR_LOOP,
    CrawlerProcessInTests,
    Here,
    RedisServer,
    Worker,
    expected_ids,
    paid_twice,
    run_worker_here,
    wait_until,
)
from tests.test_distributed import (
    ALONE,
    CORPUS,
    FEW,
    FEW_PAGES,
    KEYWORDS,
    delivered,
    everything_in,
    keyword_file,
    worker_count,
)

pytestmark = pytest.mark.crawl

KEYS = Keys("note_search")
BEAT = 0.2  # seconds: how often a SharedCrawl made here tries a refused write again


def joined(url: str, **params: object) -> SharedCrawl:
    shared = SharedCrawl(url, Settings({"REDIS_PARAMS": params}), "note_search", 60, beat=BEAT)
    shared.join()
    return shared


class Refusal:
    """Redis refusing writes for real, while it answers, and accepting them again."""

    def __init__(self, server: RedisServer, tmp_path: Path) -> None:
        self.server = server
        self.tmp_path = tmp_path
        self.admin = server.client()

    def on(self, kind: str) -> None:
        if kind == "NOREPLICAS":
            self.admin.config_set("min-replicas-to-write", 1)
        elif kind == "OOM":
            self.admin.config_set("maxmemory-policy", "noeviction")
            self.admin.config_set("maxmemory", 1)
        elif kind == "MISCONF":  # a background save fails (its process killed)
            self.admin.config_set("stop-writes-on-bgsave-error", "yes")
            self.admin.config_set("save", "3600 1")  # writes stop on a failed save only with a save point
            self.admin.config_set("rdb-key-save-delay", 1_000_000)
            self.admin.bgsave()
            children = Path(f"/proc/{self.server.proc.pid}/task/{self.server.proc.pid}/children")
            wait_until(lambda: children.read_text().strip() != "", 10)
            os.kill(int(children.read_text().split()[0]), signal.SIGKILL)
            wait_until(lambda: self.admin.info("persistence")["rdb_last_bgsave_status"] == "err", 10)
        elif kind == "NOPERM":
            self.admin.acl_setuser("worker", enabled=True, commands=["-evalsha"])
        else:
            raise ValueError(kind)

    def off(self, kind: str) -> None:
        if kind == "NOREPLICAS":
            self.admin.config_set("min-replicas-to-write", 0)
        elif kind == "OOM":
            self.admin.config_set("maxmemory", 0)
        elif kind == "MISCONF":
            self.admin.config_set("rdb-key-save-delay", 0)
            wait_until(lambda: self.admin.info("persistence")["rdb_bgsave_in_progress"] == 0, 10)
            self.admin.bgsave()
            wait_until(lambda: self.admin.info("persistence")["rdb_last_bgsave_status"] == "ok", 10)
            self.admin.config_set("save", "")
        elif kind == "NOPERM":
            self.admin.acl_setuser("worker", enabled=True, commands=["+evalsha"])


def acl_user(server: RedisServer, name: str = "worker", password: str = "s3cret-pw-42") -> str:
    """An ACL user with every permission a worker needs (docs/distributed.md); its URL."""
    server.client().acl_setuser(
        name, enabled=True, passwords=[f"+{password}"], keys=["~*"], channels=["&*"], commands=["+@all"], reset=True
    )
    return f"redis://{name}:{password}@127.0.0.1:{server.port}/0"


# --- 1. refused writes are an outage, not a loss ---------------------------------------------------


@pytest.mark.parametrize("kind", ["NOREPLICAS", "OOM", "MISCONF", "NOPERM"])
def test_a_refused_write_stays_in_order_until_redis_takes_it(redis_server, tmp_path, caplog, kind):
    url = acl_user(redis_server)
    refusal = Refusal(redis_server, tmp_path)
    shared = joined(url)
    client = redis_server.client()
    answers: list[object] = []

    async def scenario() -> None:
        shared.push([("one", "{}", 0, "fp-1", "", True)], answers.append)
        assert await shared.outbox.flushed(5)
        lease = (await shared.pop(1))[2][0][0]
        client.zadd(KEYS.leases, {lease: 0})  # its lease ran out: the next pop gives it back first
        refusal.on(kind)
        shared.push([("two", "{}", 0, "fp-2", "", True)], answers.append)
        shared.ack([lease], "pages_failed")
        with pytest.raises(redis.ResponseError):  # a script is refused whole: nothing of it runs
            await shared.pop(1)
        await asyncio.sleep(3 * BEAT)  # the outbox tries again every BEAT
        assert len(shared.outbox) == 2 and answers == [[1]], "a refused write was dropped or ran"
        assert not shared.health.up
        refusal.off(kind)
        assert await shared.outbox.flushed(5)
        assert shared.health.up
        await shared.aclose()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert answers == [[1], [1]], "each push's callback got its answer, not an error"
    assert client.zrange(KEYS.requests, 0, -1) == ["two"] and client.zcard(KEYS.leases) == 0
    assert client.hget(KEYS.stats, "pages_failed") == "1" and client.hget(KEYS.stats, "leases_expired") is None
    said = [r.getMessage() for r in caplog.records if "Redis at" in r.getMessage()]
    assert len(said) == 2 and "refuses writes" in said[0] and kind in said[0] and "accepts writes again" in said[1]
    assert "unreachable" not in caplog.text
    assert "s3cret-pw-42" not in caplog.text and "worker:" not in caplog.text


def test_workers_ride_out_refused_writes_mid_crawl_and_pay_nothing_twice(
    sandbox_factory, workers, redis_server, tmp_path
):
    sandbox = sandbox_factory(latency=ALONE)
    seeds = keyword_file(tmp_path, FEW)
    settings = {"JUSTONEAPI_REDIS_LEASE": "30"}
    client = redis_server.client()
    refusal = Refusal(redis_server, tmp_path)
    joined: list[Worker] = []

    def refuse_twice(first: Here) -> None:
        wait_until(lambda: client.zcard(KEYS.requests) > 0)
        second = workers(sandbox, None, **settings)
        joined.append(second)
        wait_until(lambda: worker_count(redis_server) == 2)
        sandbox.config.latency = 0.05
        for n, (kind, at) in enumerate((("NOREPLICAS", FEW_PAGES * 0.3), ("OOM", FEW_PAGES * 0.6)), 1):
            wait_until(lambda at=at: len(sandbox.paid_pages()) >= at)
            refusal.on(kind)
            try:
                # Both workers have met the refusal, and their calls in flight then have landed.
                wait_until(lambda n=n: all(w.log.count("refuses writes") >= n for w in (first, second)), 30)
                time.sleep(0.25)
                paid = len(sandbox.paid_pages())
                time.sleep(0.5)  # two heartbeats of each worker, two tries of its writes
                assert len(sandbox.paid_pages()) <= paid + 2, "the workers went on calling while Redis refused writes"
            finally:
                refusal.off(kind)

    first = run_worker_here(redis_server, sandbox, seeds, meanwhile=refuse_twice, **settings)
    (second,) = joined
    assert [first.returncode, second.wait()] == [0, 0], first.log[-3000:] + second.log[-3000:]
    ids = delivered(redis_server)
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(FEW)
    assert paid_twice(sandbox) == {}
    assert len(sandbox.paid_pages()) == FEW_PAGES
    stats = redis_server.client().hgetall(KEYS.stats)
    assert int(stats["pages_paid"]) == FEW_PAGES and int(stats.get("pages_failed", 0)) == 0
    for worker in (first, second):
        assert "refuses writes" in worker.log and "unreachable" not in worker.log, worker.log[-3000:]
        assert "Traceback" not in worker.log and " 0 failed" in worker.log.split("Summary of note_search")[-1]


def refused_once_joined(monkeypatch: pytest.MonkeyPatch, refusal: Refusal, kind: str) -> None:
    """Redis refuses writes from the moment a worker in this process has joined the crawl: before it
    seeds a query (its pushes wait in its outbox) or takes a request (so no call is made meanwhile)."""
    opened = RedisState.open

    def open_then_refuse(self: RedisState, feeds: dict) -> dict:
        feeds = opened(self, feeds)
        refusal.on(kind)
        return feeds

    monkeypatch.setattr(RedisState, "open", open_then_refuse)


def test_a_seeder_refused_while_seeding_seeds_every_query(sandbox_factory, redis_server, tmp_path, monkeypatch):
    keywords = [f"kw{i:03d}" for i in range(120)]
    path = tmp_path / "many.txt"
    path.write_text("\n".join(keywords) + "\n", encoding="utf-8")
    sandbox = sandbox_factory()
    refusal = Refusal(redis_server, tmp_path)
    client = redis_server.client()
    refused_once_joined(monkeypatch, refusal, "NOREPLICAS")

    def accept_again(seeder: Here) -> None:
        wait_until(lambda: "refuses writes" in seeder.log, 30)
        time.sleep(1)  # four heartbeats of the seeder, and four tries of its writes
        refusal.off("NOREPLICAS")

    seeder = run_worker_here(redis_server, sandbox, path, "-a", "max_pages=1", meanwhile=accept_again)
    assert seeder.returncode == 0, seeder.log[-3000:]
    stats = client.hgetall(KEYS.stats)
    assert int(stats["queries"]) == len(keywords) and int(stats["pages_paid"]) == len(keywords)
    assert len(sandbox.paid_pages()) == len(keywords) and paid_twice(sandbox) == {}
    assert seeder.log.count("refuses writes") == 1 and "TypeError" not in seeder.log and "ERROR" not in seeder.log


def test_a_seeder_that_could_not_seed_does_not_exit_0(sandbox_factory, redis_server, tmp_path, monkeypatch):
    sandbox = sandbox_factory()
    refusal = Refusal(redis_server, tmp_path)
    path = tmp_path / "few.txt"
    path.write_text("a\nb\nc\n", encoding="utf-8")
    refused_once_joined(monkeypatch, refusal, "NOREPLICAS")
    # A closing worker waits CLOSE_WAIT (10 s) for its writes to reach Redis: here, 4 heartbeats.
    monkeypatch.setattr(redis_state, "CLOSE_WAIT", 1.0)
    crawls: list[CrawlerProcessInTests] = []
    made = CrawlerProcessInTests.__init__

    def keep(self: CrawlerProcessInTests, *args: object, **kwargs: object) -> None:
        made(self, *args, **kwargs)
        crawls.append(self)

    monkeypatch.setattr(CrawlerProcessInTests, "__init__", keep)

    def ctrl_c(seeder: Here) -> None:
        wait_until(lambda: "refuses writes" in seeder.log, 30)
        # Ctrl-C while its pushes wait in the outbox: what Scrapy's handler of a first Ctrl-C does
        REACTOR_LOOP.call_soon_threadsafe(lambda: REACTOR_LOOP.create_task(crawls[0].stop()))

    seeder = run_worker_here(redis_server, sandbox, path, "-a", "max_pages=1", meanwhile=ctrl_c)
    refusal.off("NOREPLICAS")
    assert seeder.returncode != 0
    assert "writes of this worker are not stored" in seeder.log
    assert not sandbox.log, "no request was taken while Redis refused writes"


# --- 2. every write idempotent ---------------------------------------------------------------------


def test_every_script_sent_twice_changes_nothing_the_second_time(redis_server):
    shared = joined(redis_server.url)
    k = shared.keys

    async def twice(script: str, keys: list[str], args: list[object], op: str = "") -> object:
        op = op or "op-" + script
        first = await shared.call(script, keys, args, op)
        before = sorted(everything_in(redis_server).splitlines())
        second = await shared.call(script, keys, args, op)
        assert second == first, script
        assert sorted(everything_in(redis_server).splitlines()) == before, f"{script} sent again changed Redis"
        return first

    async def scenario() -> None:
        push = [k.requests, k.data, k.dupefilter, k.leases, k.stats]
        await twice("push", push, ["r1", "{}", 0, "", "", "1", "r2", "{}", 0, "fp", "", "1"])
        pop = await shared.call("pop", [k.requests, k.leases, k.data, k.stop, k.stats], [shared.lease_ms, -1e9, 1], "p")
        lease = pop[2]
        await twice("pop", [k.requests, k.leases, k.data, k.stop, k.stats], [shared.lease_ms, -1e9, 1])
        note = "65f0a1b2c3d4e5f6a7b8c9d0"
        page = [k.items, k.stats, k.seen_count, k.requests, k.data, k.dupefilter, k.leases, k.held, k.seen_bucket(note)]
        args = [lease, 1, 1, bytes.fromhex(note[:20]), note[20], note, b"{}", "", "", "", "", "r3", "{}", 0, "", ""]
        await twice("page", page, args)
        assert await shared.call("page", page, args, "op-page") == [1], "the note is still new, as the first time"
        await twice("ack", [k.leases, k.requests, k.data, k.stats], ["pages_failed", "r2"])
        # A note held for its details (-a details=): its detail call queued, then the note delivered whole.
        held = "65f0a1b2c3d4e5f6a7b8c9d1"
        page = [k.items, k.stats, k.seen_count, k.requests, k.data, k.dupefilter, k.leases, k.held, k.seen_bucket(held)]
        args = ["", 1, 0, bytes.fromhex(held[:20]), held[20], held, b"{}", "d1", "{}", 0, "fp-d1"]
        assert await twice("page", page, args, "op-held") == [2], "held, not delivered"
        detail = [k.items, k.held, k.leases, k.requests, k.data, k.stats]
        assert await twice("detail", detail, ["d1", held, b'{"details":"fetched"}', "fetched"]) == 1
        assert await shared.call("detail", detail, ["d1", held, b"{}", "fetched"], "op-other") == 0, "delivered once"
        await twice("release", [k.leases, k.requests], [-1e9, "r3"])
        await twice("rate", [k.ratelimit, k.stats, k.stop], ["0", b'{"epoch": 0}', 100, "budget", "w"])
        await twice("send", [k.ratelimit, k.stats, k.stop], ["0", 100, "budget", "w"])
        await twice("refund", [k.stats], [])
        await shared.aclose()

    asyncio.run(scenario())
    stats = redis_server.client().hgetall(KEYS.stats)
    assert stats["pages_paid"] == "1" and stats["notes"] == "2" and stats["pages_failed"] == "1"
    assert stats["details_held"] == stats["details_fetched"] == "1"
    assert redis_server.client().lrange(KEYS.items, 0, -1) == ["{}", '{"details":"fetched"}']
    assert stats["calls"] == "1", "two calls spent (rate, send), one refunded: each once"


def test_replies_later_than_the_client_timeout_cost_no_call_twice(sandbox_factory, redis_server, tmp_path):
    """A proxy delays Redis's replies past the worker's timeout now and then: every timed-out write
    is sent again, and each is applied once: the budget, the calls and the pages are exact."""
    keywords = ["海信", "小米", "华为", "优衣库"]  # short queries (24 pages): each a few late replies long
    pages = sum(len(CORPUS.layout(k, "general", "_0", "any")) for k in keywords)
    seeds = tmp_path / "four.txt"
    seeds.write_text("\n".join(keywords) + "\n", encoding="utf-8")
    sandbox = sandbox_factory(latency=0.05)
    with DelayProxy(redis_server.port, delay=0.0) as proxy:

        def late_now_and_then(worker: Here) -> None:
            wait_until(lambda: redis_server.client().zcard(KEYS.requests) > 0)
            while not worker.ended.wait(0.45):
                proxy.delay = 0.6  # past the 0.3 s timeout below
                worker.ended.wait(0.25)
                proxy.delay = 0.0

        worker = run_worker_here(
            redis_server,
            sandbox,
            seeds,
            env={"REDIS_URL": proxy.url},
            meanwhile=late_now_and_then,
            REDIS_PARAMS='{"socket_timeout": 0.3}',
            JUSTONEAPI_MAX_REQUESTS=str(pages),
            JUSTONEAPI_MAX_RPS="30",
            JUSTONEAPI_REDIS_LEASE="30",
        )
    assert worker.returncode == 0, worker.log[-3000:]
    assert "Redis at" in worker.log, "replies did come late"
    stats = redis_server.client().hgetall(KEYS.stats)
    assert int(stats["calls"]) == len(sandbox.log) == pages
    assert int(stats["pages_paid"]) == pages and paid_twice(sandbox) == {}
    ids = delivered(redis_server)
    assert int(stats["notes"]) == len(ids) == len(set(ids))
    assert set(ids) == expected_ids(keywords)
    assert f"{len(ids)} new" in worker.log, "a new note was reported as repeated"


def test_a_stop_gives_back_the_calls_booked_and_never_sent(sandbox_factory, seeds, redis_server):
    broke = "tok-with-no-balance"
    sandbox = sandbox_factory(latency=0.3, token_codes={broke: 601})
    worker = run_worker_here(redis_server, sandbox, seeds, env={"JUSTONEAPI_TOKEN": broke}, CONCURRENT_REQUESTS="8")
    assert worker.returncode == 5
    assert int(redis_server.client().hget(KEYS.stats, "calls")) == len(sandbox.log)


def test_the_ids_of_applied_writes_expire(redis_server):
    shared = joined(redis_server.url)

    async def scenario() -> None:
        shared.refund()
        assert await shared.outbox.flushed(5)
        await shared.aclose()

    asyncio.run(scenario())
    client = redis_server.client()
    (key,) = list(client.scan_iter(match=KEYS.applied("*")))
    assert 0 < client.pttl(key) <= scripts.APPLIED_SECONDS * 1000


def test_display_url_masks_user_and_password():
    assert display_url("redis://worker:pw@h:6379/0") == "redis://***:***@h:6379/0"
    assert display_url("rediss://:pw@h:6379/0") == "rediss://:***@h:6379/0"
    assert display_url("redis://h:6379/0?username=u&password=p") == "redis://h:6379/0?username=***&password=***"



# --- 3. a request is the worker's to send --------------------------------------------------------------


def test_workers_on_different_api_hosts_finish_one_crawl(sandbox_factory, workers, tmp_path, redis_server):
    """Two sandboxes (two newcomers, each with its own): each worker signs and sends the calls it
    takes to its own API base; nothing in Redis names a host."""
    here, there = sandbox_factory(latency=ALONE), sandbox_factory(latency=0.05)
    seeds = keyword_file(tmp_path, FEW)
    joined: list[Worker] = []

    def second_joins(first: Here) -> None:
        wait_until(lambda: redis_server.client().zcard(KEYS.requests) > 0)
        joined.append(workers(there, None))
        wait_until(lambda: worker_count(redis_server) == 2)
        here.config.latency = 0.05

    first = run_worker_here(redis_server, here, seeds, meanwhile=second_joins)
    (second,) = joined
    assert [first.returncode, second.wait()] == [0, 0], first.log[-3000:] + second.log[-3000:]
    ids = delivered(redis_server)
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(FEW)
    pages = here.paid_pages() + there.paid_pages()
    assert len(pages) == len(set(pages)) == FEW_PAGES, "each page paid once, across both hosts"
    assert there.paid_pages(), "the second worker sent its calls to its own host"
    assert all(entry.get("code") == 0 for entry in [*here.log, *there.log]), "every call was signed"
    for host in (here.url, there.url):
        assert host.encode() not in everything_in(redis_server)


def test_a_crawl_of_the_earlier_format_is_refused_not_half_read(redis_server):
    client = redis_server.client()
    client.set(KEYS.crawl, "0123456789abcdef0123456789abcdef")  # an id as the earlier version wrote it
    client.hset(KEYS.data, "r", '{"url": "http://127.0.0.1:1/api/xiaohongshu/search-note/v2?keyword=x&page=1"}')
    with pytest.raises(OldCrawl, match=r"earlier version.*scrapy redis reset"):
        joined(redis_server.url)
    assert client.hlen(KEYS.data) == 1, "nothing of it was touched"


def test_a_search_call_to_another_host_is_never_sent_unsigned():
    crawler = get_crawler(NoteSearchSpider, {"JUSTONEAPI_TOKEN": "tok-123456", "JUSTONEAPI_BASE_URL": "http://a:1"})
    sent: list[str] = []

    class Inner:
        async def download_request(self, request):
            sent.append(request.url)

    handler = TokenAuthDownloadHandler(crawler, inner=Inner())
    call = SearchCall(Query("x", "general", "_0", None), 1, 0, 5)
    request = Request("http://b:1/api/xiaohongshu/search-note/v2?keyword=x&page=1", meta={Meta.CALL: call})
    with pytest.raises(UnsignedCall, match="b:1 is not to this worker's JUSTONEAPI_BASE_URL \\(a:1\\)"):
        asyncio.run(handler.download_request(request))
    assert sent == []


# --- 4. even sharing ------------------------------------------------------------------------------------


def pages_read(log: str) -> int:
    found = re.search(r"pages:\s+(\d+) read", log)
    assert found, log[-2000:]
    return int(found.group(1))


class GateProxy:
    """redis-server behind two more ports on 127.0.0.1: ``url`` forwards at once; ``gated_url`` holds
    what a client sends until ``gate`` is set (a worker started early joins the crawl only then)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.gate = threading.Event()
        self._sockets: list[socket.socket] = []
        self.url = self._listen(gated=False)
        self.gated_url = self._listen(gated=True)

    def _listen(self, gated: bool) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        self._sockets.append(listener)
        threading.Thread(target=self._accept, args=(listener, gated), daemon=True).start()
        return f"redis://127.0.0.1:{listener.getsockname()[1]}/0"

    def _accept(self, listener: socket.socket, gated: bool) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._connect, args=(client, gated), daemon=True).start()

    def _connect(self, client: socket.socket, gated: bool) -> None:
        self._sockets.append(client)
        if gated:
            self.gate.wait()
        try:
            server = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:  # redis-server is gone: so is this connection
            client.close()
            return
        self._sockets.append(server)
        for source, sink in ((client, server), (server, client)):
            source.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._forward, args=(source, sink), daemon=True).start()

    @staticmethod
    def _forward(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):  # one side closed: close the other
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> GateProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.gate.set()
        for sock in self._sockets:
            sock.close()


SHARED_PAGES = 5  # pages a query: 49 pages in all, 10 queries (-a max_pages)


@pytest.mark.parametrize("count", [2, 4])
def test_workers_started_a_moment_apart_share_the_pages_evenly(sandbox_factory, workers, seeds, redis_server, count):
    """The first worker seeds and crawls; the others join a moment later (once it has paid for 5
    pages), however long their processes take to start on a busy machine: they start with it, and a
    proxy holds their first words to Redis until then. Every worker reaches Redis through the proxy."""
    sandbox = sandbox_factory(latency=0.05)
    pages = sum(min(len(CORPUS.layout(k, "general", "_0", "any")), SHARED_PAGES) for k in KEYWORDS)
    settings = {"CONCURRENT_REQUESTS": "16", "JUSTONEAPI_MAX_RPS": "10"}  # about 5 s
    with GateProxy(redis_server.port) as proxy:
        first = workers(sandbox, seeds, "-a", f"max_pages={SHARED_PAGES}", env={"REDIS_URL": proxy.url}, **settings)
        others = [workers(sandbox, None, env={"REDIS_URL": proxy.gated_url}, **settings) for _ in range(count - 1)]
        wait_until(lambda: len(sandbox.paid_pages()) >= 5)
        proxy.gate.set()
        ended = [w.wait() for w in (first, *others)]
    assert ended == [0] * count, first.log[-2000:]
    read = [pages_read(w.log) for w in (first, *others)]
    assert sum(read) == pages and paid_twice(sandbox) == {}
    fair = pages / count
    assert min(read) >= fair / 3, f"pages read by each worker: {read} (fair: {fair:.0f})"


# --- 5. one drain at a time ----------------------------------------------------------------------------


def fill(client: redis.Redis, count: int) -> list[str]:
    notes = [orjson.dumps({"note_id": f"n{i:05d}"}).decode() for i in range(count)]
    client.rpush(KEYS.items, *notes)
    return notes


def test_a_drain_that_lost_its_lock_writes_nothing_more_and_takes_its_batch_back(tmp_path, redis_server):
    client = redis_server.client()
    notes = fill(client, 30)
    out = tmp_path / "notes.jsonl"
    stale = drain(client, KEYS, out, batch=10)
    assert next(stale) == 10
    lock = f"{KEYS.drain}:lock"
    client.set(lock, "elsewhere:1:abc")  # it stalled past its lock, and another drain took over
    with pytest.raises(DrainBusy, match="another one took over"):
        next(stale)
    assert out.read_bytes().splitlines() == [n.encode() for n in notes[:10]], "nothing written after the loss"
    client.delete(lock)

    # Lost between writing a batch and taking it out of Redis: the batch is cut back off the file.
    racing = drain(client, KEYS, out, batch=10)
    real_eval = client.eval

    def eval_after_a_takeover(script, *args):
        if script == TRIM:
            client.set(lock, "elsewhere:1:abc")
        return real_eval(script, *args)

    client.eval = eval_after_a_takeover
    try:
        with pytest.raises(DrainBusy):
            next(racing)
    finally:
        client.eval = real_eval
    assert out.read_bytes().splitlines() == [n.encode() for n in notes[:10]], "the unfinished batch was cut back"
    assert client.llen(KEYS.items) == 20
    client.delete(lock)
    assert list(drain(client, KEYS, out, batch=10))[-1] == 20
    lines = out.read_bytes().splitlines()
    assert lines == [n.encode() for n in notes], "every note once, no line cut"


def test_two_drains_never_write_one_file(tmp_path, redis_server):
    client = redis_server.client()
    fill(client, 20)
    out = tmp_path / "notes.jsonl"
    first = drain(client, KEYS, out, batch=10)
    assert next(first) == 10
    client.delete(f"{KEYS.drain}:lock")  # its Redis lock gone (expired, say): the file's lock still holds
    with pytest.raises(DrainBusy, match="another drain is writing to"):
        next(drain(client, KEYS, out, batch=10))
    assert len(out.read_bytes().splitlines()) == 10
