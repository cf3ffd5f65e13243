"""Calls per unique note (issue 7, point 2) and CPU per note (point 3).

Calls per note: a crawl of the brand seeds against a sandbox that answers some calls with 301,
502 HTML pages and 302; paid calls (code 0) per unique note, against the minimum (each page of
each query once, the empty last page included, from the sandbox's corpus).

CPU per note: the crawler and the plain asyncio client (bench/plain_client.py) crawl the same
keywords from a sandbox in its own process, same concurrency, same output; CPU seconds of the
client's process per 1,000 notes.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT, child_cpu, crawl_command, environ, keywords_file, sandbox
from rednote_crawl.sandbox.corpus import Corpus
from rednote_crawl.seeds import read_keywords

FAULTS = ["301:0.1", "html502:0.05", "302:0.05"]
CONCURRENCY = 16


def calls_per_note() -> dict[str, Any]:
    keywords = read_keywords(ROOT / "seeds" / "brands.txt")
    corpus = Corpus()
    pages = sum(len(corpus.layout(k, "general", "_0", "any")) for k in keywords)
    unique = len({i for k in keywords for i in corpus.expected_note_ids(k)})
    faults = [arg for fault in FAULTS for arg in ("--fault", fault)]
    with sandbox(*faults) as box, tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "notes.jsonl"
        settings = {"JUSTONEAPI_MAX_RPS": 0, "JUSTONEAPI_BACKOFF_BASE": 0.05, "JUSTONEAPI_BACKOFF_MAX": 0.2}
        cmd = crawl_command("-a", "keywords=seeds/brands.txt", settings=settings, output=output)
        subprocess.run(cmd, cwd=ROOT, env=environ(box.url), capture_output=True, check=True)
        log = box.log()
        found = {line.split(b'"note_id":"', 1)[1][:24] for line in output.read_bytes().splitlines()}
    paid = sum(1 for e in log if e.get("code") == 0)
    return {
        "calls": len(log),
        "paid_calls": paid,
        "minimum_paid_calls": pages,
        "unique_notes": len(found),
        "expected_notes": unique,
        "paid_per_note": round(paid / len(found), 4),
        "minimum_per_note": round(pages / unique, 4),
        "faults": FAULTS,
        "answers": {
            str(code): sum(1 for e in log if e.get("code") == code)
            for code in sorted({e.get("code") for e in log}, key=str)
        },
    }


def cpu_per_note(keywords: int = 300) -> dict[str, Any]:
    with sandbox() as box, tempfile.TemporaryDirectory() as folder:
        seeds = keywords_file(keywords, Path(folder))
        results: dict[str, Any] = {}
        settings = {"JUSTONEAPI_MAX_RPS": 0, "CONCURRENT_REQUESTS": CONCURRENCY, "LOGSTATS_INTERVAL": 0}
        runs = {
            "rednote_crawl": crawl_command(
                "-a", f"keywords={seeds}", settings=settings, output=Path(folder) / "crawler.jsonl"
            ),
            "plain_asyncio": [
                sys.executable,
                "bench/plain_client.py",
                str(seeds),
                str(Path(folder) / "plain.jsonl"),
                "--base-url",
                box.url,
                "--concurrency",
                str(CONCURRENCY),
            ],
        }
        for name, cmd in runs.items():
            before = child_cpu()
            subprocess.run(cmd, cwd=ROOT, env=environ(box.url), capture_output=True, check=True)
            cpu = child_cpu() - before
            notes = len(
                (Path(folder) / ("crawler.jsonl" if name == "rednote_crawl" else "plain.jsonl"))
                .read_bytes()
                .splitlines()
            )
            results[name] = {
                "cpu_seconds": round(cpu, 2),
                "notes": notes,
                "cpu_per_1000_notes": round(1000 * cpu / notes, 3),
            }
        results["ratio"] = round(
            results["rednote_crawl"]["cpu_per_1000_notes"] / results["plain_asyncio"]["cpu_per_1000_notes"], 2
        )
    return results
