"""Even sharing (issue 20): the pages each worker of one distributed crawl reads, when the workers
start a moment apart.

    python -m bench.sharing [--workers 2,4] [--rounds N] [--keywords N]     # also: python -m bench.run --only sharing

As the test tests/test_redis_edges.py::test_workers_started_a_moment_apart_share_the_pages_evenly
does it: a redis-server on a free port of 127.0.0.1 (its own process), the sandbox in a thread of
this process answering in 0.05 s, no rate limit; the first worker (``scrapy crawl note_search -a
keywords=FILE`` with ``REDIS_URL``) seeds the keywords, the others start without keywords as soon
as its first requests are queued in Redis. ``CONCURRENT_REQUESTS`` 16 and ``JUSTONEAPI_MAX_RPS`` 10
(the token's rate, shared by all workers: about 10 s of crawl, time for the others to start).
From each worker's summary line ("pages:    N read"): the pages it read, and the fewest of them
over the fair share (pages ÷ workers). A fresh Redis and sandbox for each crawl.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from bench.common import crawl_command, environ, redis_server, start, stop
from rednote_crawl.sandbox.server import SandboxConfig, SandboxServer
from rednote_crawl.state.redis.keys import Keys

# The keywords of tests/test_distributed.py (KEYWORDS): 104 pages on the sandbox.
KEYWORDS = ("海信", "Nike", "小米", "蔚来", "Apple", "喜茶", "华为", "特斯拉", "星巴克", "优衣库")
WORKERS = (2, 4)
LATENCY = 0.05  # seconds the sandbox takes per answer
TIMEOUT = 300  # seconds a crawl may take before it is stopped (and the bench fails)
SETTINGS: dict[str, Any] = {
    "CONCURRENT_REQUESTS": 16,
    "JUSTONEAPI_MAX_RPS": 10,
    "MAX_IDLE_TIME_BEFORE_CLOSE": 1,
    "LOGSTATS_INTERVAL": 0,
}
SUMMARY_PAGES = re.compile(r"^\s+pages:\s+(\d+) read", re.MULTILINE)  # the summary's line, not a monitor's
KEYS = Keys("note_search")


def keywords(count: int) -> list[str]:
    """The test's keywords, cut to ``count``; past 10, generated ones (several pages each)."""
    return list(KEYWORDS[:count]) + [f"品牌{i:04d}" for i in range(max(0, count - len(KEYWORDS)))]


def run_one(workers: int, words: list[str], folder: Path) -> dict[str, Any]:
    seeds = folder / "keywords.txt"
    seeds.write_text("".join(f"{w}\n" for w in words), encoding="utf-8")
    settings = {**SETTINGS, "JUSTONEAPI_STATE_DIR": folder / "state"}  # not the project's .scrapy/
    logs = [folder / f"worker-{n}.log" for n in range(workers)]
    box = SandboxServer(SandboxConfig(latency=LATENCY))
    box.start_in_thread("127.0.0.1")
    procs: list[Any] = []
    try:
        with redis_server() as url:
            client = redis.Redis.from_url(url)
            try:  # the workers stop before Redis and the sandbox do, even on error
                env = environ(box.url, REDIS_URL=url)
                began = time.monotonic()
                procs.append(start(crawl_command("-a", f"keywords={seeds}", settings=settings), env, logs[0]))
                deadline = began + 60
                while not client.zcard(KEYS.requests):
                    if procs[0].poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"no request was queued:\n{_tail(logs[0])}")
                    time.sleep(0.01)
                queued = time.monotonic()
                procs += [start(crawl_command(settings=settings), env, log) for log in logs[1:]]
                deadline = began + TIMEOUT
                while time.monotonic() < deadline and any(p.poll() is None for p in procs):
                    time.sleep(0.1)
                ended = time.monotonic()
                timed_out = any(p.poll() is None for p in procs)
            finally:
                stop(procs)
                client.close()
        read = [_pages_read(log) for log in logs]
        if timed_out or any(p.returncode != 0 for p in procs) or None in read:
            tails = "\n".join(f"--- {log.name}\n{_tail(log)}" for log in logs)
            raise RuntimeError(f"the crawl failed (exit {[p.returncode for p in procs]}, read {read}):\n{tails}")
        paid = box.paid_pages()
    finally:
        box.stop_thread()
    expected = sum(len(box.corpus.layout(w, "general", "_0", "any")) for w in words)
    pages = sum(read)
    fair = pages / workers
    return {
        "workers": workers,
        "keywords": len(words),
        "pages_read": read,
        "pages": pages,
        "expected_pages": expected,
        "paid_pages": len(paid),
        "paid_twice": sum(1 for n in Counter(paid).values() if n > 1),
        "fair_share": round(fair, 1),
        "min_over_fair": round(min(read) / fair, 2) if fair else None,
        "start_gap_s": round(queued - began, 2),  # from the first worker's start to the others'
        "seconds": round(ended - began, 1),
    }


def _pages_read(log: Path) -> int | None:
    found = SUMMARY_PAGES.findall(log.read_text(encoding="utf-8", errors="replace"))
    return int(found[-1]) if found else None


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-1500:] if log.exists() else "(no log)"


def measure(workers: tuple[int, ...] = WORKERS, rounds: int = 1, count: int = len(KEYWORDS)) -> list[dict[str, Any]]:
    results = []
    for n in workers:
        for round_ in range(1, rounds + 1):
            with tempfile.TemporaryDirectory(prefix="bench-sharing-") as folder:
                row = {**run_one(n, keywords(count), Path(folder)), "round": round_}
            print(f"  {n} workers, round {round_}: {row}", flush=True)
            results.append(row)
    return results


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| workers | round | pages read by each | pages (expected) | fair share | fewest ÷ fair share | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["workers"], r.get("round", 1))):
        twice = f", {r['paid_twice']} paid twice" if r.get("paid_twice") else ""
        out.append(
            f"| {r['workers']} | {r.get('round', 1)} | {', '.join(map(str, r['pages_read']))} "
            f"| {r['pages']} ({r['expected_pages']}{twice}) | {r['fair_share']:g} | {r['min_over_fair']:.2f} "
            f"| {r['seconds']} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default=",".join(map(str, WORKERS)), help="worker counts, e.g. 2,4")
    parser.add_argument("--rounds", type=int, default=1, help="crawls of each worker count")
    parser.add_argument("--keywords", type=int, default=len(KEYWORDS), help="keywords the first worker seeds")
    args = parser.parse_args()
    rows = measure(tuple(int(w) for w in args.workers.split(",")), args.rounds, args.keywords)
    print(table(rows))


if __name__ == "__main__":
    main()
