"""Large keyword files: how soon a crawl of a million keywords calls, whether calls keep flowing,
and the crawl process's peak memory.

    python -m bench.seeds_scale [--counts 200000,800000,1000000] [--modes local,job,redis] [--seconds 60]

A seed file of ``count`` unique, realistic keywords (Chinese brand-like words mixed with Latin
names and model numbers, about 11 bytes a line: 11 MB for a million) is crawled against the
sandbox (answers in 0.05 s, no rate limit, ``JUSTONEAPI_MAX_RPS=0``) in three modes:

- local:           one machine, state in memory
- local+job folder: the same with ``-s JUSTONEAPI_JOB_DIR=...``
- redis seeding:   ``REDIS_URL`` set, one worker with the keywords (it seeds Redis and crawls)

Each crawl runs ``seconds``, then gets Ctrl-C (SIGINT) and must stop by itself (a second SIGINT
after 30 s, a kill after 10 s more; a kill is reported). From the sandbox's log of calls
(their ``time``, epoch seconds): the first call, counted from the crawl's process start; the
largest gap between consecutive calls (from the first call to the Ctrl-C); the calls in the
window. Peak memory: ``VmHWM`` of the crawl process (``/proc/PID/status``), sampled until it
exits; and how fast its RSS grows over the second half of the window. Goal: first call within
5 s, no gap over 5 s, peak under 500 MB. Each row also keeps the crawl's CPU seconds before its
first call (start-up's cost, whatever else the machine runs), the load average, and when seeding
Redis, the requests queued there and Redis's memory. Stops by itself, servers included (SIGTERM
to this process too).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from bench.common import crawl_command, environ, redis_server, sandbox, start
from rednote_crawl.state.redis.keys import Keys

LATENCY = 0.05
COUNTS = (200_000, 800_000, 1_000_000)
MODES = {"local": "local", "job": "local+job folder", "redis": "redis seeding"}
SETTINGS = {"JUSTONEAPI_MAX_RPS": "0", "JUSTONEAPI_REDIS_LEASE": "60", "LOGSTATS_INTERVAL": "0"}
GOAL_FIRST_CALL = 5.0  # seconds from the process start
GOAL_GAP = 5.0  # seconds between consecutive calls
GOAL_PEAK_MB = 500.0
GRACE = 30.0  # seconds a crawl has to stop after Ctrl-C, before a second one
SAMPLE = 0.1  # seconds between memory samples

# Brand-like pieces: the keywords a seed file of brands, products and models holds.
HANZI = (
    "海信华为小米美的格力苏泊尔九阳奥克斯长虹创维康佳海尔方太老板万和樱花志高新飞容声澳柯玛荣事达"
    "惠而浦松下索尼夏普东芝飞利浦博世西门子三星乐视联想戴尔惠普华硕宏碁神舟雷蛇罗技漫步者倍思绿联公牛"
    "欧普雷士佛山照明安踏李宁特步匹克鸿星尔克喜茶奈雪元气森林完美日记花西子珀莱雅自然堂百雀羚"
)
LATIN = (  # noqa: SIM905 - a list of names reads better as text
    "Nike Vidda Air Pro Max Mini Lite Ultra Plus Neo One Go Pad Book Watch Buds Fit Run Zoom Boost Flex "
    "Aero Nova Mate Reno Find Redmi POCO iQOO Lumi Sora Zen Joy Luna Vivi Kiko Muji Uniqlo Zara Lego Dior "
    "YSL MAC NARS Olay SK-II Fila Puma Vans Asics L'Oréal Adidas Apple Dyson Sonos Bose JBL Anker Casio"
).split()
SERIES = "ABCDEFGHKLMSTXZ"


def keywords(count: int, seed: int = 7) -> Iterator[str]:
    """``count`` unique keywords, the same every run: 海信Vidda, Nike 安踏, 美的格力X12, Zoom G147..."""
    rng = random.Random(seed)
    given: set[str] = set()
    while len(given) < count:
        shape = rng.random()
        if shape < 0.35:
            keyword = rng.choice(HANZI) + rng.choice(HANZI) + rng.choice(LATIN)
        elif shape < 0.6:
            keyword = rng.choice(LATIN) + rng.choice(HANZI) + rng.choice(HANZI)
        elif shape < 0.8:
            keyword = "".join(rng.choices(HANZI, k=3)) + rng.choice(SERIES) + str(rng.randrange(100))
        else:
            keyword = f"{rng.choice(LATIN)} {rng.choice(SERIES)}{rng.randrange(1000)}"
        if keyword not in given:
            given.add(keyword)
            yield keyword


def keywords_file(count: int, folder: Path) -> Path:
    path = folder / f"keywords-{count}.txt"
    with path.open("w", encoding="utf-8") as out:
        out.writelines(f"{keyword}\n" for keyword in keywords(count))
    return path


def memory(pid: int) -> tuple[float, float, float] | None:
    """The process's resident memory now (VmRSS) and at its peak so far (VmHWM), in MB, and its CPU
    seconds so far; None once it has exited."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]  # utime, stime
        cpu = sum(map(int, ticks)) / os.sysconf("SC_CLK_TCK")
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024, cpu
    except (OSError, KeyError, ValueError):
        return None


def growth(samples: list[tuple[float, float, float]]) -> float | None:
    """How fast resident memory grows over the second half of the window, MB per minute (start-up
    left out: the keyword file's checking pass takes memory and gives it back)."""
    if len(samples) < 2:
        return None
    half = samples[0][0] + (samples[-1][0] - samples[0][0]) / 2
    (t0, rss0, _), (t1, rss1, _) = next(s for s in samples if s[0] >= half), samples[-1]
    return round((rss1 - rss0) / (t1 - t0) * 60, 1) if t1 > t0 else None


def cpu_until(samples: list[tuple[float, float, float]], after: float | None, began: float) -> float | None:
    """The crawl's CPU seconds until its first call: what start-up costs whatever else the machine runs."""
    if after is None:
        return None
    before = [cpu for t, _, cpu in samples if t <= began + after]
    return round(before[-1], 2) if before else None


def flow(times: list[float], began: float, stopped: float) -> dict[str, Any]:
    """First call (from the process start), largest gap between calls until the Ctrl-C, calls in the window."""
    window = sorted(t for t in times if t <= stopped)
    if not window:
        return {"first_call_s": None, "largest_gap_s": None, "largest_gap_at_s": None, "calls": 0}
    edges = [*window, stopped]  # no call at all after the last one is a gap too
    gap, at = max((b - a, a) for a, b in itertools.pairwise(edges))
    return {
        "first_call_s": round(window[0] - began, 2),
        "largest_gap_s": round(gap, 2),
        "largest_gap_at_s": round(at - began, 1),
        "calls": len(window),
    }


def run_one(count: int, mode: str, seeds: Path, seconds: float, folder: Path) -> dict[str, Any]:
    settings = dict(SETTINGS)
    output: Path | None = folder / "notes.jsonl"
    if mode == "job":
        settings["JUSTONEAPI_JOB_DIR"] = str(folder / "job")
        output = None  # the job folder's own crawl-NNNN.jsonl, as a user runs it
    with contextlib.ExitStack() as stack:
        box = stack.enter_context(sandbox("--latency", str(LATENCY)))
        extra = {}
        if mode == "redis":
            extra["REDIS_URL"] = url = stack.enter_context(redis_server())
            output = None  # the notes go to the Redis list; `scrapy redis drain` writes them
        cmd = crawl_command("-a", f"keywords={seeds}", settings=settings, output=output)
        began = time.time()
        proc = start(cmd, environ(box.url, **extra), folder / f"crawl-{mode}.log")
        try:
            peak, samples = 0.0, []
            while time.time() < began + seconds and proc.poll() is None:
                if (now := memory(proc.pid)) is not None:
                    samples.append((time.time(), now[0], now[2]))
                    peak = max(peak, now[1])
                time.sleep(SAMPLE)
            window_peak = peak
            stopped = time.time()
            exited_early = proc.poll() is not None
            stop_s, how, peak = _interrupt(proc, peak)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        times = [entry["time"] for entry in box.log()]
        row = {
            "keywords": count,
            "mode": MODES[mode],
            **(figures := flow(times, began, stopped)),
            "cpu_s_to_first_call": cpu_until(samples, figures["first_call_s"], began),
            "peak_rss_mb": round(peak, 1),
            "peak_rss_window_mb": round(window_peak, 1),
            "rss_end_mb": round(samples[-1][1], 1) if samples else None,
            "rss_growth_mb_per_min": growth(samples),
            "stop_s": stop_s,
            "stopped": "exited before the Ctrl-C" if exited_early else how,
            "exit_code": proc.returncode,
            "seed_file_mb": round(seeds.stat().st_size / 2**20, 1),
            "load_average": round(os.getloadavg()[0], 2),  # other work on the machine slows the crawl
        }
        if mode == "redis":
            row.update(_redis_figures(url))
    if row["stopped"] != "by itself" or row["exit_code"] != 1:  # 1: interrupted, as a Ctrl-C must give
        tail = (folder / f"crawl-{mode}.log").read_text(errors="replace").splitlines()[-5:]
        print(f"  {MODES[mode]}, {count:,} keywords: stopped {row['stopped']}, exit {row['exit_code']}; its log ends:")
        print("".join(f"    {line[:200]}\n" for line in tail), end="", flush=True)
    return row


def _interrupt(proc: subprocess.Popen[bytes], peak: float) -> tuple[float, str, float]:
    """Ctrl-C as a user would, sampling memory until the crawl exits; again, then kill, if it does not."""
    sent = time.time()
    how = "by itself"
    proc.send_signal(signal.SIGINT)
    for limit, then in ((GRACE, "after a second Ctrl-C"), (10.0, "killed")):
        deadline = time.time() + limit
        while proc.poll() is None and time.time() < deadline:
            peak = max(peak, (memory(proc.pid) or (0.0, 0.0, 0.0))[1])
            time.sleep(SAMPLE)
        if proc.poll() is not None:
            break
        how = then
        if then == "killed":
            proc.kill()
        else:
            proc.send_signal(signal.SIGINT)
    proc.wait()
    return round(time.time() - sent, 1), how, peak


def _redis_figures(url: str) -> dict[str, Any]:
    """What the seeding worker left in Redis: requests queued, and Redis's own memory."""
    client = redis.Redis.from_url(url)
    try:
        return {
            "redis_queued": client.zcard(Keys("note_search").requests),
            "redis_used_mb": round(client.info("memory")["used_memory"] / 2**20, 1),
        }
    finally:
        client.close()


def measure(
    counts: tuple[int, ...] = COUNTS, modes: tuple[str, ...] = tuple(MODES), seconds: float = 60.0
) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-seeds-") as tmp:
        for count in counts:
            seeds = keywords_file(count, Path(tmp))
            for mode in modes:
                with tempfile.TemporaryDirectory(dir=tmp) as folder:
                    row = run_one(count, mode, seeds, seconds, Path(folder))
                print(f"  {row}", flush=True)
                results.append(row)
            seeds.unlink()
    return results


def verdict(row: dict[str, Any]) -> str:
    misses = []
    if row["first_call_s"] is None or row["first_call_s"] > GOAL_FIRST_CALL:
        misses.append("first call")
    if row["largest_gap_s"] is None or row["largest_gap_s"] > GOAL_GAP:
        misses.append("gap")
    if row["peak_rss_mb"] >= GOAL_PEAK_MB:
        misses.append("memory")
    return "met" if not misses else "**missed: " + ", ".join(misses) + "**"


def table(rows: list[dict[str, Any]]) -> str:
    def figure(value: float | None) -> str:
        return "none" if value is None else f"{value:.2f}"

    out = [
        "| keywords | mode | first call (s) | largest gap (s) | calls in the window | peak RSS (MB) "
        "| RSS growth (MB/min) | stops after Ctrl-C (s) | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        growth_text = "" if row.get("rss_growth_mb_per_min") is None else f"{row['rss_growth_mb_per_min']:g}"
        out.append(
            f"| {row['keywords']:,} | {row['mode']} | {figure(row['first_call_s'])} | {figure(row['largest_gap_s'])} "
            f"| {row['calls']:,} | {row['peak_rss_mb']:.0f} | {growth_text} | {row['stop_s']:g}"
            f"{'' if row['stopped'] == 'by itself' else ' (' + row['stopped'] + ')'} | {verdict(row)} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)), help="keywords per seed file")
    parser.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    parser.add_argument("--seconds", type=float, default=60.0, help="each crawl's window, before its Ctrl-C")
    args = parser.parse_args()
    # A SIGTERM to this process unwinds it like Ctrl-C: the crawl, the sandbox and redis-server stop too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    rows = measure(tuple(int(c) for c in args.counts.split(",")), tuple(m for m in args.modes.split(",")), args.seconds)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
