"""Redis at a distance (issue 12, point 6): a distributed crawl's pages/s when Redis is a few
milliseconds away, and the round trips a page costs.

    python -m bench.redis_distance [--quick]      # also: python -m bench.run --only redis

A TCP proxy (bench/redis_proxy.py) in front of a real redis-server adds a fixed delay each way
(0, 0.5, 1 and 2.5 ms); one worker, then four, crawl the same keywords through it (``scrapy crawl
note_search`` with ``REDIS_URL`` on the proxy) from the sandbox answering in 0.2 s, no rate
limit. All workers start together; the first one seeds the keywords. From the sandbox's log:
pages paid and the window from the first call to the last; from the proxy: the workers' round
trips to Redis in that window (see redis_proxy.py for what one is), per page.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.common import crawl_command, environ, keywords_file, redis_server, sandbox, start, stop
from bench.redis_proxy import DelayProxy

DELAYS = (0.0, 0.0005, 0.001, 0.0025)  # seconds, each way
WORKERS = (1, 4)
KEYWORDS = 80
LATENCY = 0.2  # seconds the sandbox takes per answer
TIMEOUT = 600  # seconds a crawl may take before it is stopped (and the step fails)
SETTINGS: dict[str, Any] = {
    "JUSTONEAPI_MAX_RPS": 0,
    "LOGSTATS_INTERVAL": 0,
    "MAX_IDLE_TIME_BEFORE_CLOSE": 5,  # the workers without keywords wait this long for the seeding one
}
PAGES_READ = re.compile(r"pages: +(\d+) read")


def probe_rtt(url: str, count: int = 50) -> float:
    """Milliseconds a PING takes through the proxy (its own round trips are not the workers')."""
    client = redis.Redis.from_url(url)
    try:
        client.ping()
        began = time.perf_counter()
        for _ in range(count):
            client.ping()
        return (time.perf_counter() - began) / count * 1e3
    finally:
        client.close()


def run_one(delay: float, workers: int, keywords: int, folder: Path) -> dict[str, Any]:
    seeds = keywords_file(keywords, folder)
    settings = {**SETTINGS, "JUSTONEAPI_STATE_DIR": folder / "state"}
    with sandbox("--latency", str(LATENCY)) as box, redis_server() as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with DelayProxy(port, delay) as proxy:
            rtt_ms = probe_rtt(proxy.url)
            probe = len(proxy.round_trips)
            env = environ(box.url, REDIS_URL=proxy.url)
            logs = [folder / f"d{delay}-w{workers}-{n}.log" for n in range(workers)]
            began, cpu = time.time(), time.process_time()
            procs = [start(crawl_command("-a", f"keywords={seeds}", settings=settings), env, logs[0])]
            try:
                procs += [start(crawl_command(settings=settings), env, log) for log in logs[1:]]
                deadline = time.monotonic() + TIMEOUT
                while time.monotonic() < deadline and any(p.poll() is None for p in procs):
                    time.sleep(0.2)
                timed_out = any(p.poll() is None for p in procs)
            finally:
                stop(procs)
            proxy_cpu = time.process_time() - cpu
            total_round_trips = len(proxy.round_trips) - probe
            paid = sorted(e["time"] for e in box.log() if e["time"] >= began and e.get("code") == 0)
            if timed_out or any(p.returncode != 0 for p in procs) or not paid:
                tails = "\n".join(log.read_text(encoding="utf-8", errors="replace")[-1500:] for log in logs)
                raise RuntimeError(f"the crawl failed ({[p.returncode for p in procs]}, {len(paid)} pages):\n{tails}")
            first, last = paid[0], paid[-1]
            window = proxy.between(first, last, since=probe)
            pages = len(paid)
            return {
                "delay_ms": delay * 1e3,
                "workers": workers,
                "keywords": keywords,
                "rtt_ms": round(rtt_ms, 3),
                "pages": pages,
                "seconds": round(last - first, 2),
                "pages_per_s": round(pages / (last - first), 2),
                "round_trips_per_page": round(window.total() / pages, 2),
                "round_trips": window.total(),
                "round_trips_whole_run": total_round_trips,
                "per_page_by_command": {name: round(n / pages, 2) for name, n in window.most_common()},
                "connections": proxy.connections - 1,  # less the probe's
                "proxy_overshoot_ms": round(proxy.mean_overshoot * 1e3, 3),
                "proxy_cpu_s": round(proxy_cpu, 2),
                "pages_per_worker": [_pages_read(log) for log in logs],
                "load": round(os.getloadavg()[0], 1),  # the machine's, at the end (other work shares the cores)
            }


def _pages_read(log: Path) -> int | None:
    found = PAGES_READ.findall(log.read_text(encoding="utf-8", errors="replace"))
    return int(found[-1]) if found else None


def measure(
    delays: tuple[float, ...] = DELAYS, workers: tuple[int, ...] = WORKERS, keywords: int = KEYWORDS
) -> list[dict[str, Any]]:
    results = []
    for count in workers:
        for delay in delays:
            with tempfile.TemporaryDirectory(prefix="bench-redis-distance-") as folder:
                row = run_one(delay, count, keywords, Path(folder))
            print(f"  {delay * 1e3:g} ms each way, {count} worker(s): {row}", flush=True)
            results.append(row)
    return results


def table(rows: list[dict[str, Any]]) -> str:
    base = {r["workers"]: r["pages_per_s"] for r in rows if r["delay_ms"] == 0}
    out = [
        "| delay each way (ms) | measured RTT (ms) | workers | pages | pages/s | vs 0 ms | round trips per page |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["workers"], r["delay_ms"])):
        versus = f"{r['pages_per_s'] / base[r['workers']]:.0%}" if base.get(r["workers"]) else ""
        out.append(
            f"| {r['delay_ms']:g} | {r['rtt_ms']:.2f} | {r['workers']} | {r['pages']} | {r['pages_per_s']} "
            f"| {versus} | {r['round_trips_per_page']} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 keywords: to check the benchmark itself")
    parser.add_argument("--keywords", type=int, default=KEYWORDS)
    parser.add_argument("--delays", default=",".join(f"{d * 1e3:g}" for d in DELAYS), help="ms each way")
    parser.add_argument("--workers", default=",".join(map(str, WORKERS)))
    args = parser.parse_args()
    rows = measure(
        tuple(float(d) / 1e3 for d in args.delays.split(",")),
        tuple(int(w) for w in args.workers.split(",")),
        20 if args.quick else args.keywords,
    )
    print(table(rows))


if __name__ == "__main__":
    main()
