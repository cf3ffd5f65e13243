"""Redis's own CPU per paid page, script by script, and what the ids of applied writes cost in memory.

``INFO commandstats`` lumps every script under ``evalsha``, so each script is driven alone here,
many times, against a fresh redis-server, and the ``evalsha`` time Redis measured is read before
and after (``usec``: time inside Redis, not the client's). A page of 20 notes, as the API sends
them; one lease, one booking and one heartbeat per page (what a worker does).

    PYTHONPATH=. python -m bench.redis_cpu            # prints a table (µs of Redis CPU per call)
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from scrapy.settings import Settings

from rednote_crawl.state.redis.shared import SharedCrawl

N = 2000


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("redis-server") or "redis-server"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    return proc, port


def evalsha_usec(client: redis.Redis) -> float:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec", 0))


async def measure(url: str, client: redis.Redis) -> dict[str, float]:
    shared = SharedCrawl(url, Settings(), "note_search", 60)
    shared.join()
    k = shared.keys
    results: dict[str, float] = {}

    async def timed(name: str, run) -> None:  # type: ignore[no-untyped-def]
        before = evalsha_usec(client)
        for i in range(N):
            await run(i)
        results[name] = (evalsha_usec(client) - before) / N

    body = '{"kind": "search", "call": [["keyword", "general", "_0", null], 2, 20, 20, null], "priority": 2}'

    async def push(i: int) -> None:
        await shared.call("push", [k.requests, k.data, k.dupefilter, k.leases, k.stats], [f"r{i}", body, 0, f"fp{i}", "", "1"])

    async def pop(i: int) -> None:
        await shared.pop(1)

    async def page(i: int) -> None:
        notes = []
        for _ in range(20):
            note_id = secrets.token_hex(12)
            notes.append((note_id, b'{"note_id": "%s", "title": "' % note_id.encode() + b"x" * 400 + b'"}'))
        await shared.page(f"r{i}", notes, [(f"n{i}", body, 0, f"nfp{i}", False)])

    async def rate(i: int) -> None:
        await shared.call("rate", [k.ratelimit, k.stats, k.stop], [str(i), '{"epoch": 0}', 0, "budget", "w"])

    async def beat(i: int) -> None:
        await shared.heartbeat([f"n{i}"], 1.0)

    async def ack(i: int) -> None:
        await shared.call("ack", [k.leases, k.requests, k.data, k.stats], ["pages_failed", f"n{i}"])

    await timed("push (a seeded query)", push)
    await timed("pop (one lease)", pop)
    await timed("page (20 notes, next page, ack)", page)
    await timed("rate (booking + budget)", rate)
    await timed("beat (heartbeat)", beat)
    await timed("ack (a failed page)", ack)
    # The ids of applied writes: one key per operation, for scripts.APPLIED_SECONDS.
    applied = [key for key in client.scan_iter(match=k.applied("*"), count=1000)]
    sizes = [client.memory_usage(key) or 0 for key in applied[:500]]
    results["applied ids kept"] = len(applied)
    results["bytes per applied id"] = sum(sizes) / max(1, len(sizes))
    await shared.aclose()
    return results


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    proc, port = start_redis(folder)
    try:
        client = redis.Redis(port=port)
        results = asyncio.run(measure(f"redis://127.0.0.1:{port}/0", client))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
    per_page = sum(v for name, v in results.items() if name.split()[0] in ("pop", "page", "rate", "beat"))
    for name, value in results.items():
        print(f"{name:36s} {value:10.1f}")
    print(f"{'per paid page (pop+page+rate+beat)':36s} {per_page:10.1f} µs of Redis CPU")
    print(f"one Redis core: about {1e6 / per_page:,.0f} pages/s")


if __name__ == "__main__":
    main()
