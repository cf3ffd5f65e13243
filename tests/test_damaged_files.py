"""Damaged files: a job database cut in half (after a finished run, after a kill -9), a damaged
journal of the earlier format, a locked database, and files written whole that a kill must never
leave half-written. Crawls run in this process against the in-thread sandbox; the kill -9 runs a
subprocess."""

from __future__ import annotations

import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from scrapy.crawler import Crawler
from scrapy.settings import Settings

from rednote_crawl import stops
from rednote_crawl.config import ConfigError
from rednote_crawl.state import jobcheck
from rednote_crawl.state.jobfolder import JobFolder
from rednote_crawl.state.journals import convert
from tests.conftest import FAST, ROOT, TOKEN, crawl_here, expected_ids, paid_twice

# 45 pages: the kill -9 comes 30 calls in, and the half of the database that is left keeps a few of them.
KEYWORDS = ["海信", "Nike", "小米", "蔚来"]
FINISHED = ["华为", "元气森林", "小米"]  # 15 pages: a finished job, its database cut in half
CONCURRENCY = 4


def crawl_job(server, job: Path, keywords: list[str] = KEYWORDS, **settings: Any) -> tuple[int, Crawler]:
    """``scrapy crawl note_search -a keyword=... -s JUSTONEAPI_JOB_DIR=job`` in this process: (exit status, crawler)."""
    return crawl_here(server, job.parent, keywords, JUSTONEAPI_JOB_DIR=str(job), CONCURRENT_REQUESTS=str(CONCURRENCY), **settings)


def delivered(job: Path) -> list[str]:
    """Every note id of every output file of the job, in order."""
    return [
        orjson.loads(line)["note_id"]
        for path in sorted(job.glob("crawl-*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


def cut_in_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


# --- 3. a damaged job database ---------------------------------------------------------------


def test_a_finished_job_whose_database_was_cut_in_half_goes_on_with_every_note_once(
    sandbox, environment, tmp_path, caplog
):
    job = tmp_path / "job"
    assert crawl_job(sandbox, job, FINISHED)[0] == 0
    assert sorted(delivered(job)) == sorted(expected_ids(FINISHED))
    cut_in_half(job / "job.db")
    with caplog.at_level(logging.INFO):
        status, _ = crawl_job(sandbox, job, FINISHED)
    assert status == 0
    assert f"The job database {job / 'job.db'} is damaged" in caplog.text
    assert [p.name for p in job.glob("job.db.damaged-*")], "the damaged file is set aside, not deleted"
    ids = delivered(job)
    assert len(ids) == len(set(ids)), "the output files say which notes were delivered: none twice"
    assert set(ids) == expected_ids(FINISHED)
    assert jobcheck.quick_check(job / "job.db") == []


@pytest.mark.crawl
def test_a_job_killed_with_kill_9_and_its_database_cut_in_half_finishes_paying_only_for_what_was_lost(
    sandbox_factory, environment, tmp_path, caplog
):
    server = sandbox_factory(latency=0.05)
    job = tmp_path / "job"
    cmd = [sys.executable, "-m", "scrapy", "crawl", "note_search", "-a", f"keyword={','.join(KEYWORDS)}"]
    settings = {**FAST, "JUSTONEAPI_JOB_DIR": str(job), "CONCURRENT_REQUESTS": str(CONCURRENCY)}
    settings["JUSTONEAPI_STATE_DIR"] = str(tmp_path / "state")
    for name, value in settings.items():
        cmd += ["-s", f"{name}={value}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUSTONEAPI_")}
    env |= {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BASE_URL": server.url}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(server.log) < 30 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    paid_before = len(server.paid_pages())
    # A copy of the folder, or a later start, folds the log into the file; then the disk loses its end.
    copy = sqlite3.connect(job / "job.db", isolation_level=None)
    copy.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    copy.close()
    cut_in_half(job / "job.db")
    server.config.latency = 0
    with caplog.at_level(logging.INFO):
        status, crawler = crawl_job(server, job)
    assert status == 0, crawler.stats.get_stats()
    assert f"The job database {job / 'job.db'} is damaged" in caplog.text and "repaired" in caplog.text
    ids = delivered(job)
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(KEYWORDS)
    lost = int(re.search(r"(\d+) pages lost, asked for again", caplog.text).group(1))
    repaid = sum(n - 1 for n in paid_twice(server).values())
    assert 0 < lost < paid_before
    assert repaid <= lost + CONCURRENCY, "only the pages the damaged file lost, and the ones in flight at the kill"


def test_a_damaged_database_is_checked_only_after_an_unclean_end_or_an_error(tmp_path):
    job = JobFolder.take(tmp_path)
    assert job is not None
    job.begin_run("2026-01-01T00:00:00Z", "f", {})
    job.close()
    database = tmp_path / "job.db"
    assert not jobcheck.looks_cut(database)
    assert jobcheck.check_at_start(database) == []  # ended cleanly: no quick_check
    jobcheck.mark_for_check(tmp_path)
    assert jobcheck.check_at_start(database) == []  # checked, sound: the mark goes
    assert not (tmp_path / jobcheck.CHECK_MARK).exists()
    cut_in_half(database)
    assert jobcheck.looks_cut(database)
    assert jobcheck.check_at_start(database)


def test_a_run_that_did_not_end_cleanly_is_checked_at_the_next_start(tmp_path, caplog):
    writer = sqlite3.connect(tmp_path / "job.db", isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("CREATE TABLE t (x)")
    writer.execute("INSERT INTO t VALUES (1)")  # in the log, not yet in the file: as a kill -9 leaves it
    assert (tmp_path / "job.db-wal").stat().st_size > 0
    with caplog.at_level(logging.INFO):
        assert jobcheck.check_at_start(tmp_path / "job.db") == []
    writer.close()
    assert "Checking the job database" in caplog.text and "the last run did not end cleanly" in caplog.text


def test_a_locked_job_database_gets_advice_about_the_lock_not_about_disk_space(tmp_path):
    from rednote_crawl.state.local import _take

    job = JobFolder.take(tmp_path)
    assert job is not None
    job.close()
    holder = sqlite3.connect(tmp_path / "job.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds a write transaction
    try:
        with pytest.raises(ConfigError) as refused:
            _take(str(tmp_path))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked" in str(refused.value) and "write transaction" in str(refused.value)
    assert "free disk space" not in str(refused.value)


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        ("cannot write the job database /j/job.db: database is locked", stops.STORAGE_LOCKED_FIX),
        ("cannot write the job database /j/job.db: attempt to write a readonly database", stops.STORAGE_PERMISSION_FIX),
        ("cannot write the output file /o.jsonl: [Errno 13] Permission denied", stops.STORAGE_PERMISSION_FIX),
        ("cannot use the job database /j/job.db: database disk image is malformed", stops.STORAGE_DAMAGED_FIX),
        ("cannot write the output file /o.jsonl: [Errno 28] No space left on device", stops.STORAGE_FAILED.fix),
    ],
)
def test_a_failed_write_gets_the_advice_that_fits_it(error, advice):
    assert stops.storage_fix(error) == advice


def test_a_damaged_journal_of_the_earlier_format_keeps_what_reads(tmp_path, caplog):
    journal = tmp_path / "crawl-0001.journal.jsonl"
    query = ["k", "general", "_0", "any"]

    def page(n: int) -> dict[str, Any]:
        return {"e": "page", "q": query, "p": n, "items": [{"note_id": f"{n:024x}"}], "next_rank": n}

    records = [
        orjson.dumps({"e": "crawl", "at": "2026-01-01T00:00:00Z", "queries_fingerprint": "f"}),
        orjson.dumps({"e": "run", "at": "2026-01-01T00:00:00Z"}),
        orjson.dumps(page(1)),
        b'{"e": "page", "q": "\xff\xfe garbage',  # a damaged line
        orjson.dumps({"e": "page", "q": query, "p": 2, "items": [{"no_id": 1}]}),  # reads as something else
        orjson.dumps(page(3)),
    ]
    journal.write_bytes(b"\n".join(records) + b"\n")
    with caplog.at_level(logging.ERROR):
        job = JobFolder.take(tmp_path)
    assert job is not None
    assert f"The journal {journal} is damaged: 2 records" in caplog.text
    progress = job.progress(__import__("rednote_crawl.api", fromlist=["Query"]).Query("k"))
    assert progress is not None and progress.last_page == 1, "the query goes on from its first lost page"
    assert [item["note_id"] for item in job.items(progress)] == [f"{1:024x}"]
    job.close()


def test_convert_of_a_sound_journal_is_unchanged(tmp_path):
    journal = tmp_path / "crawl-0001.journal.jsonl"
    query = ["k", "general", "_0", "any"]
    lines = [
        {"e": "crawl", "at": "2026-01-01T00:00:00Z", "queries_fingerprint": "f"},
        {"e": "run", "at": "2026-01-01T00:00:00Z"},
        {"e": "page", "q": query, "p": 1, "items": [{"note_id": "a" * 24}], "next_rank": 1},
        {"e": "page", "q": query, "p": 2, "items": [{"note_id": "b" * 24}], "next_rank": 2},
    ]
    journal.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    db = sqlite3.connect(":memory:", isolation_level=None)
    from rednote_crawl.state.jobfolder import SCHEMA

    db.executescript(SCHEMA)
    assert convert(tmp_path, db)
    assert db.execute("SELECT last_page, next_rank FROM queries").fetchone() == (2, 2)


# --- 4. files written whole ------------------------------------------------------------------


class Killed(BaseException):
    """A kill, as far as the writer can tell: it stops in the middle."""


def test_an_export_stopped_midway_leaves_the_old_file_whole(tmp_path):
    from rednote_crawl.commands.report import _export

    class Job:
        crawl, folder = 1, tmp_path

        def export(self, crawl):
            for n in range(100):
                if n == 50:
                    raise Killed
                yield orjson.dumps({"note_id": f"{n:024x}"})

    target = tmp_path / "export.jsonl"
    target.write_bytes(b'{"note_id": "old"}\n' * 3)
    with pytest.raises(Killed):
        _export(Job(), str(target), "last")  # type: ignore[arg-type]
    assert target.read_bytes() == b'{"note_id": "old"}\n' * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.jsonl"], "no part-written file left behind"


def test_plots_html_and_the_token_limits_are_written_whole(tmp_path, monkeypatch):
    from rednote_crawl.run import trends
    from rednote_crawl.state import outputs
    from rednote_crawl.state.limits import LimitFile

    page, limits = tmp_path / "report.html", LimitFile(str(tmp_path))
    page.write_text("old", encoding="utf-8")
    limits.put("token", 5.0)
    before = limits.path.read_bytes()

    def killed(*args: Any) -> None:
        raise Killed

    monkeypatch.setattr(outputs.os, "replace", killed)
    with pytest.raises(Killed):
        trends.write(str(page), "<html>new</html>")
    with pytest.raises(Killed):
        limits.put("token", 7.0)
    assert page.read_text(encoding="utf-8") == "old"
    assert limits.path.read_bytes() == before
    assert not [p for p in tmp_path.rglob("*.part")]


def test_a_file_written_whole_keeps_its_permissions_and_a_pipe_is_streamed(tmp_path):
    import threading

    from rednote_crawl.formats.files import whole_file

    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old\n")
    target.chmod(0o640)
    with whole_file(target) as file:
        file.write(b"new\n")
    assert target.read_bytes() == b"new\n" and target.stat().st_mode & 0o777 == 0o640
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with whole_file(fifo) as stream:
        stream.write(b"streamed\n")
    reader.join(10)
    assert got == [b"streamed\n"] and fifo.is_fifo()


def test_a_report_of_a_damaged_job_says_how_to_repair_it_without_a_traceback(tmp_path):
    from tests.conftest import scrapy_in_process

    job = JobFolder.take(tmp_path)
    assert job is not None
    job.begin_run("2026-01-01T00:00:00Z", "f", {})
    from rednote_crawl.api import Query

    for page in range(1, 60):
        job.record_page(
            Query("k"), page, [{"note_id": f"{page:012x}{n:012x}", "x": "y" * 1500} for n in range(20)], None, 0
        )
    job.end_run("finished", "2026-01-01T01:00:00Z", 59, 0)
    job.close()
    cut_in_half(tmp_path / "job.db")
    result = scrapy_in_process("report", str(tmp_path))
    assert result.returncode == 1
    assert "is malformed" in result.stderr and "rebuilds the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_dry_run_of_a_damaged_job_says_how_to_repair_it_without_a_traceback(tmp_path):

    from rednote_crawl.config import ConfigError, SearchArgs
    from rednote_crawl.run.plan import render_plan

    job = tmp_path / "job"
    job.mkdir()
    db = sqlite3.connect(job / "job.db")
    db.execute("CREATE TABLE t (x)")
    db.executemany("INSERT INTO t VALUES (?)", [(os.urandom(500),) for _ in range(200)])
    db.commit()
    db.close()
    whole = (job / "job.db").read_bytes()
    (job / "job.db").write_bytes(whole[: len(whole) // 2])
    settings = Settings({"JUSTONEAPI_SANDBOX": True, "JUSTONEAPI_JOB_DIR": str(job)})
    with pytest.raises(ConfigError, match="damaged: run the job's crawl command once"):
        render_plan("note_search", SearchArgs.parse(keyword="a"), settings)
    assert (job / "job.db").read_bytes() == whole[: len(whole) // 2], "a dry run repairs nothing"
