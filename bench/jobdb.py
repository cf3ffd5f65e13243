"""The job folder's database: commit cost per page, lookup cost of earlier notes, peak memory of a
daily run whose job has millions of seen notes, and a crawl's pages/s with and without a job folder.

    python -m bench.jobdb [--seen 10000000] [--keywords 80] [--latency 0.2]

The seen notes are written into the database directly (a crawl that finds ten million notes would
take days); the daily run that follows is a real ``scrapy crawl`` against the sandbox, whose
peak RSS (VmHWM) is read from /proc while it runs.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import crawl_command, environ, keywords_file, sandbox, start
from rednote_crawl import api
from rednote_crawl.sandbox.corpus import Corpus
from rednote_crawl.state.jobfolder import JobFolder

PAGE_NOTES = 20
LOOKUPS = 5  # times the lookups are timed (a fraction of a second each, and noisy on a shared machine)


def page_items(corpus_items: list[dict[str, Any]], page: int) -> list[dict[str, Any]]:
    """A realistic page of output items (the sandbox's notes through the real mapping)."""
    query = api.Query("bench")
    return [
        api.note_item(note, query=query, note_time_sent=None, page=page, rank=n, fetched_at=api.now_iso())
        for n, note in enumerate(corpus_items, start=1)
    ]


def sandbox_notes(count: int) -> list[dict[str, Any]]:
    corpus = Corpus()
    return [corpus.note(f"bench-{n}") for n in range(count)]


def commit_cost(folder: Path, pages: int = 500) -> dict[str, float]:
    notes = sandbox_notes(PAGE_NOTES)
    job = JobFolder.take(folder)
    assert job is not None
    job.begin_run(api.now_iso(), "bench", {})
    times = []
    for page in range(1, pages + 1):
        items = page_items(notes, page)
        for n, item in enumerate(items):
            item["note_id"] = f"{page:012x}{n:012x}"
        began = time.perf_counter()
        job.record_page(api.Query("bench"), page, items, None, page * PAGE_NOTES)
        times.append(time.perf_counter() - began)
    job.close()
    return {"pages": pages, "median_ms": statistics.median(times) * 1e3, "p95_ms": sorted(times)[int(pages * 0.95)] * 1e3}


def fill_seen(folder: Path, count: int) -> float:
    """A job whose one complete crawl found ``count`` notes (ids of the API's form: 24 hex digits)."""
    job = JobFolder.take(folder)
    assert job is not None
    job.begin_run("2026-01-01T00:00:00Z", "bench", {})
    job.end_run("finished", "2026-01-01T01:00:00Z", calls=0, exit_status=0)
    began = time.monotonic()
    batch = 100_000
    for start_at in range(0, count, batch):
        rows = [(f"{n:024x}", 1, "old") for n in range(start_at, min(count, start_at + batch))]
        job.db.execute("BEGIN")
        job.db.executemany("INSERT INTO seen (note_id, crawl, keyword) VALUES (?, ?, ?)", rows)
        job.db.execute("COMMIT")
    job.close()
    return time.monotonic() - began


def lookup_cost(folder: Path, count: int, shuffled: bool, pages: int = 2000) -> float:
    """µs per note of looking up a page's 20 notes in one query, on the connection a daily run uses.

    Half the notes are earlier ones, spread over the job's ids: in the order of their ids (the tree
    read from one end to the other) or shuffled (as notes found again come: each one a leaf page at
    random). The other half are new, with ids above every earlier one (ObjectIds grow with time)."""
    job = JobFolder.take(folder)
    assert job is not None and job.current == 2, "a daily run: crawl 1 is complete, crawl 2 begins"
    half = PAGE_NOTES // 2
    step = max(1, count // (pages * PAGE_NOTES))
    known = [f"{(page * PAGE_NOTES + n) * step:024x}" for page in range(pages) for n in range(half)]
    if shuffled:
        random.Random(1).shuffle(known)
    batches = [known[p * half : (p + 1) * half] + [f"ff{p:010x}{n:012x}" for n in range(half)] for p in range(pages)]
    began = time.perf_counter()
    found = sum(len(job.earlier(ids)) for ids in batches)
    elapsed = time.perf_counter() - began
    job.close()
    assert found == pages * half, found
    return elapsed / (pages * PAGE_NOTES) * 1e6


def peak_rss_mb(pid: int, stop: threading.Event, peak: list[float]) -> None:
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        except OSError:
            return
        time.sleep(0.05)


def crawl_run(server: Any, seeds: Path, folder: Path, job: Path | None) -> tuple[float, int, float]:
    """(seconds from the first call to the last, pages, peak RSS MB) of one crawl of ``seeds``."""
    settings: dict[str, Any] = {"JUSTONEAPI_MAX_RPS": 0, "LOGSTATS_INTERVAL": 0, "CONCURRENT_REQUESTS": 16}
    if job is not None:
        settings["JUSTONEAPI_JOB_DIR"] = job
    log = folder / f"crawl-{time.monotonic_ns()}.log"
    cmd = crawl_command("-a", f"keywords={seeds}", settings=settings, output=folder / "out.jsonl")
    began = time.time()
    proc = start(cmd, environ(server.url), log)
    stop, peak = threading.Event(), [0.0]
    watcher = threading.Thread(target=peak_rss_mb, args=(proc.pid, stop, peak), daemon=True)
    watcher.start()
    proc.wait(600)
    stop.set()
    text = log.read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == 0, text[-2000:]
    calls = [entry["time"] for entry in server.log() if entry["time"] >= began]
    return max(calls) - min(calls), len(calls), peak[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seen", type=int, default=10_000_000, help="seen notes of the job before the daily run")
    parser.add_argument("--keywords", type=int, default=80, help="keywords of the crawls compared")
    parser.add_argument("--repeat", type=int, default=3, help="crawls of each kind (the median is shown)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the sandbox takes per answer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-jobdb-") as tmp:
        folder = Path(tmp)
        commit = commit_cost(folder / "commit")
        print(f"commit of a page of {PAGE_NOTES} notes: median {commit['median_ms']:.2f} ms, p95 {commit['p95_ms']:.2f} ms")
        seconds = fill_seen(folder / "big", args.seen)
        os.sync()  # the fill's writes reach the disk first: their writeback slowed the lookups timed next
        size = (folder / "big" / "job.db").stat().st_size
        print(f"{args.seen:,} seen ids written in {seconds:.0f} s: {size / 2**20:.0f} MiB, {size / args.seen:.0f} bytes/id")
        for order, shuffled in (("in id order", False), ("shuffled", True)):
            costs = [lookup_cost(folder / "big", args.seen, shuffled) for _ in range(LOOKUPS)]
            print(
                f"lookup of earlier notes, {order}: {statistics.median(costs):.2f} µs per note, median of {LOOKUPS} "
                f"({min(costs):.2f} to {max(costs):.2f}; one query per page)"
            )
        seeds = keywords_file(args.keywords, folder)
        with sandbox("--latency", str(args.latency)) as server:
            rows = {"no job folder": [], "job folder": [], f"job folder, {args.seen:,} seen ids": []}
            for n in range(args.repeat):
                rows["no job folder"].append(crawl_run(server, seeds, folder, None))
                rows["job folder"].append(crawl_run(server, seeds, folder, folder / f"fresh-{n}"))
                rows[f"job folder, {args.seen:,} seen ids"].append(crawl_run(server, seeds, folder, folder / "big"))
        base = statistics.median(p / s for s, p, _ in rows["no job folder"])
        print("\n| crawl | pages | pages/s (median) | vs no job folder | peak RSS (MB) |")
        print("|---|---|---|---|---|")
        for name, runs in rows.items():
            rate = statistics.median(p / s for s, p, _ in runs)
            print(
                f"| {name} | {runs[0][1]} | {rate:.1f} | {rate / base:.0%} | {max(r for _, _, r in runs):.0f} |"
            )
        os.sync()


if __name__ == "__main__":
    main()
