"""Rate-limit efficiency (issue 7, point 1) and scale (point 5).

The sandbox allows R calls/s per token (a token bucket, 302 beyond it) and answers in 0.5 s.
Each crawler runs for ``seconds``; from the sandbox's log we take, after a warm-up, paid pages
per second divided by R, and the share of answers that were 302. Compared, in the same run:

- rednote_crawl: ``JUSTONEAPI_MAX_RPS=R``; with several workers, one distributed crawl on Redis
- rednote_crawl_adaptive: ``JUSTONEAPI_MAX_RPS=0``, R unknown and not learned before: found from the
  rate the API accepts when 302s come (state/rate.py)
- rednote_crawl_learned: the same command again, with the same token: it starts at the limit the
  first run learned (kept in JUSTONEAPI_STATE_DIR, or in Redis); R unknown to the user
- autothrottle: the same spider under Scrapy's AutoThrottle (target concurrency R x latency per
  worker's share) and RetryMiddleware (429 retried), the project's throttle and policy off
- download_delay: the same with a fixed ``DOWNLOAD_DELAY`` of workers/R (each worker gets its share)

With several workers, the two baselines run as independent processes on a share of the keywords
each (they cannot share a token's state).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import crawl_command, environ, keywords_file, redis_server, sandbox, start, stop
from rednote_crawl.state.redis.keys import Keys

LATENCY = 0.5
WARMUP = 10.0  # seconds: the goal counts from 10 s after the start (the search for an unknown limit)
PLAIN = {
    "DOWNLOADER_MIDDLEWARES": json.dumps(
        {
            "rednote_crawl.downloader.policy.ApiPolicyMiddleware": None,
            "rednote_crawl.downloader.throttle.TokenThrottleMiddleware": None,
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": 550,
        }
    ),
    "RETRY_ENABLED": "True",
    "RETRY_HTTP_CODES": "429,500,502,503,504",
    "RETRY_TIMES": "10",
}
BASELINES: dict[str, Any] = {
    # Tuned as a user who knows R would: Little's law, R x latency requests in flight (the default
    # target of 1 would give 1/latency = 2 calls/s whatever R is).
    "autothrottle": lambda rate, workers: {
        **PLAIN,
        "AUTOTHROTTLE_ENABLED": "True",
        "AUTOTHROTTLE_TARGET_CONCURRENCY": str(rate * LATENCY / workers),
    },
    "download_delay": lambda rate, workers: {**PLAIN, "DOWNLOAD_DELAY": str(workers / rate)},
}
COMMON = {"LOGSTATS_INTERVAL": "0", "MAX_IDLE_TIME_BEFORE_CLOSE": "5", "JUSTONEAPI_REDIS_LEASE": "60"}


def measure(log: list[dict[str, Any]], rate: float | None) -> dict[str, float]:
    times = sorted(entry["time"] for entry in log)
    if not times:
        return {"paid_per_s": 0.0, "efficiency": 0.0, "share_302": 0.0, "calls": 0}
    begin, end = times[0] + WARMUP, times[-1]
    window = [e for e in log if begin <= e["time"] <= end]
    span = max(end - begin, 1e-9)
    paid = sum(1 for e in window if e.get("code") == 0) / span
    details = sum(1 for e in window if e.get("kind") == "detail")
    return {
        "detail_share": round(details / max(len(window), 1), 3),
        "paid_per_s": round(paid, 2),
        "efficiency": round(paid / rate, 3) if rate else None,
        "share_302": round(sum(1 for e in window if e.get("code") == 302) / max(len(window), 1), 4),
        "calls": len(window),
    }


def run_one(
    crawler: str, rate: float | None, workers: int, seconds: float, folder: Path, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    limit = ["--rate-limit", str(rate)] if rate else []
    with sandbox("--latency", str(LATENCY), *limit) as box:
        seeds = keywords_file(400 * workers, folder)
        procs = []
        if crawler.startswith("rednote_crawl"):
            known = rate if crawler == "rednote_crawl" else 0  # _adaptive, _learned: the user does not know R
            settings = {**COMMON, "JUSTONEAPI_MAX_RPS": known or 0, "JUSTONEAPI_STATE_DIR": folder / "state"}
            runs = 2 if crawler == "rednote_crawl_learned" else 1  # the first run learns the limit
            with redis_server() if workers > 1 else _no_redis() as url:
                for run in range(runs):
                    began = time.time()
                    env = environ(box.url, REDIS_URL=url) if url else environ(box.url)
                    first = crawl_command("-a", f"keywords={seeds}", *extra, settings=settings)
                    procs = [start(first, env, folder / f"r{run}-w0.log")]
                    for n in range(1, workers):
                        procs.append(start(crawl_command(settings=settings), env, folder / f"r{run}-w{n}.log"))
                    _run_for(procs, seconds)
                    if url and run + 1 < runs:  # a new crawl (scrapy redis reset); the learned limit stays
                        subprocess.run(["redis-cli", "-u", url, "DEL", *Keys("note_search").crawl_state()], check=True)
                log = [e for e in box.log() if e["time"] >= began]
                return {**measure(log, rate), "crawler": crawler, "rate": rate, "workers": workers}
        words = seeds.read_text(encoding="utf-8").splitlines()
        settings = {**COMMON, **BASELINES[crawler](rate or 1000, workers)}
        for n in range(workers):
            share = folder / f"share-{n}.txt"
            share.write_text("\n".join(words[n::workers]) + "\n", encoding="utf-8")
            procs.append(
                start(
                    crawl_command("-a", f"keywords={share}", settings=settings), environ(box.url), folder / f"w{n}.log"
                )
            )
        _run_for(procs, seconds)
        return {**measure(box.log(), rate), "crawler": crawler, "rate": rate, "workers": workers}


@contextmanager
def _no_redis() -> Iterator[None]:
    yield None


def _run_for(procs: list[Any], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.2)
    stop(procs)


CRAWLERS = ("rednote_crawl", "rednote_crawl_adaptive", "rednote_crawl_learned", "autothrottle", "download_delay")


def efficiency(
    seconds: float,
    rates: tuple[float, ...] = (2, 8, 20),
    workers: tuple[int, ...] = (1, 4),
    crawlers: tuple[str, ...] = CRAWLERS,
) -> list[dict[str, Any]]:
    results = []
    for rate in rates:
        for count in workers:
            for crawler in crawlers:
                with tempfile.TemporaryDirectory() as folder:
                    result = run_one(crawler, rate, count, seconds, Path(folder))
                print(f"  rate {rate}/s, {count} worker(s), {crawler}: {result}", flush=True)
                results.append(result)
    return results


def with_details(
    seconds: float,
    rates: tuple[float, ...] = (2, 8, 20),
    crawlers: tuple[str, ...] = ("rednote_crawl_adaptive",),
    workers: tuple[int, ...] = (1, 4),
) -> list[dict[str, Any]]:
    """Issue 23, point 7: with ``-a details=new`` the token's rate is shared between search pages and
    note detail calls, on one worker and on four sharing the crawl in Redis. Every code-0 answer
    counts, of either kind; ``detail_share`` is the detail calls' part of the calls."""
    results = []
    for rate in rates:
        for count in workers:
            for crawler in crawlers:
                with tempfile.TemporaryDirectory() as folder:
                    result = run_one(crawler, rate, count, seconds, Path(folder), ("-a", "details=new"))
                    result["details"] = "new"
                print(f"  details=new, rate {rate}/s, {count} worker(s), {crawler}: {result}", flush=True)
                results.append(result)
    return results


def scale(seconds: float, workers: tuple[int, ...] = (1, 2, 4, 8)) -> list[dict[str, Any]]:
    """Goodput with 1..8 workers when the token's limit is not the bottleneck (no limit, 0.5 s answers)."""
    results = []
    for count in workers:
        with tempfile.TemporaryDirectory() as folder:
            result = run_one("rednote_crawl", None, count, seconds, Path(folder))
        print(f"  {count} worker(s): {result}", flush=True)
        results.append(result)
    return results
