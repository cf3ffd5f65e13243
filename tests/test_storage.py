"""A crawl that cannot store what it pays for stops at once, and the next run finishes the job."""

from __future__ import annotations

import re
import resource
import sqlite3
import subprocess
from pathlib import Path

import orjson
import pytest

from rednote_crawl.sandbox.corpus import Corpus
from tests.conftest import TOKEN, crawl_args, expected_ids, paid_twice, scrapy_in_process, start_scrapy

pytestmark = pytest.mark.crawl

# More queries at once than CONCURRENCY; their notes (38 pages) are several times FILE_LIMIT.
KEYWORDS = ["华为", "元气森林", "花西子", "Dior", "魅族", "小米", "海信"]
PAGES = sum(len(Corpus().layout(keyword, "general", "_0", "any")) for keyword in KEYWORDS)
CONCURRENCY = 4
FILE_LIMIT = 250_000  # bytes: no file of the crawl process may grow larger (a full disk, as the process sees it)


def crawl(server, seeds: Path, job: Path, output: Path, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """The crawl in this process (conftest.py); with a ``limit`` on the size of its files, in a subprocess
    (a limit of the process, as a full disk is for it)."""
    settings = {"JUSTONEAPI_JOB_DIR": str(job), "CONCURRENT_REQUESTS": str(CONCURRENCY)}
    # the test's own learned limit, not the project's
    cmd = crawl_args(seeds=seeds, output=output, settings=settings, state=job.parent / "state")
    env = {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BASE_URL": server.url}
    if limit is None:
        return scrapy_in_process(*cmd, env=env)

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = start_scrapy(*cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit_files)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def stored_pages(job: Path) -> int:
    with sqlite3.connect(job / "job.db") as db:
        return db.execute("SELECT COUNT(*) FROM pages").fetchone()[0]


@pytest.mark.parametrize("where", ["output", "database"])
def test_a_full_disk_stops_the_crawl_and_the_next_run_finishes_it(sandbox, tmp_path, where):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(KEYWORDS), encoding="utf-8")
    job = tmp_path / "job"
    if where == "output":  # the output's disk is full; the job folder's is not
        full = crawl(sandbox, seeds, job, Path("/dev/full:jsonl"))
    else:  # no file may grow past FILE_LIMIT: the database's grows fastest
        full = crawl(sandbox, seeds, job, Path("/dev/null:jsonl"), limit=FILE_LIMIT)
    assert full.returncode == 8, full.stderr[-3000:]
    what = "output file" if where == "output" else "job database"
    stopped = re.search(rf"Stopping the crawl after (\d+) calls: cannot write the {what}", full.stderr)
    assert stopped, full.stderr[-3000:]
    if where == "database":  # (Scrapy's feed exporter logs its own traceback for the output it cannot store)
        assert "Traceback" not in full.stderr
    # Once a write fails, nothing is sent: only the calls in flight are answered (and paid for) after it.
    assert len(sandbox.log) - int(stopped.group(1)) <= CONCURRENCY
    paid, stored = len(sandbox.paid_pages()), stored_pages(job)
    assert paid < PAGES // 2, "the crawl stopped long before its end"
    if where == "database":
        assert stored >= 1, "what fitted on the disk was stored"

    final = crawl(sandbox, seeds, job, tmp_path / "notes.jsonl")
    assert final.returncode == 0, final.stderr[-3000:]
    ids = [orjson.loads(line)["note_id"] for line in (tmp_path / "notes.jsonl").read_bytes().splitlines()]
    expected = expected_ids(KEYWORDS)
    assert len(ids) == len(set(ids)) and set(ids) == expected
    # Exactly the pages paid for but not stored (in flight, or waiting for the spider) are paid for again.
    assert len(paid_twice(sandbox)) == paid - stored and max(paid_twice(sandbox).values(), default=2) == 2
