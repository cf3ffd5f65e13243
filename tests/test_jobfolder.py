"""The job folder's database, in-process: runs and crawls, pages and notes, earlier crawls'
notes, failures to write, reports, export, and the conversion of the earlier format."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import orjson
import pytest

from rednote_crawl import api
from rednote_crawl.config import queries_fingerprint
from rednote_crawl.state import StorageError
from rednote_crawl.state.jobfolder import DATABASE, SCHEMA, JobFolder, query_key
from rednote_crawl.state.journals import HISTORY, journal_path

Q1, Q2 = api.Query("海信"), api.Query("Nike", "time_descending")


def note(note_id: str, **fields: object) -> dict[str, object]:
    return {"note_id": note_id, "keyword": "x", **fields}


def ids(n: int, prefix: str = "a") -> list[str]:
    return [f"{prefix}{i:023x}" for i in range(n)]


def test_a_run_begins_a_crawl_and_an_open_crawl_is_carried_on(tmp_path):
    job = JobFolder.take(tmp_path)
    assert job is not None and (job.crawl, job.resuming, job.output.name) == (0, False, "crawl-0001.jsonl")
    assert job.begin_run("2026-12-01T00:00:00Z", "f" * 32, {"out.jsonl": 0}) == 1
    job.record_page(Q1, 1, [note("n1"), note("n2")], None, 2)
    job.record_page(Q1, 2, [note("n3")], "empty_page", 3)
    job.record_page(Q2, 1, [note("n2")], None, 1)
    job.record_failed(Q2, 2, "timeout")
    job.end_run("justoneapi_budget_spent", "2026-12-01T00:01:00Z", calls=4, exit_status=6)
    job.close()

    again = JobFolder.read(tmp_path)
    assert (again.crawl, again.resuming, again.fingerprint, again.outputs) == (1, True, "f" * 32, {"out.jsonl": 0})
    first, second = again.progress(Q1), again.progress(Q2)
    assert first is not None and (first.last_page, first.next_rank, first.end) == (2, 3, "empty_page")
    assert first.done(max_pages=20) and [i["note_id"] for i in again.items(first)] == ["n1", "n2", "n3"]
    assert second is not None and not second.done(20) and second.done(1)
    assert again.progress(api.Query("other")) is None
    assert again.output.name == "crawl-0001.jsonl" and again.previous_crawl_started is None


def test_a_complete_run_completes_its_crawl_and_the_next_begins_a_new_one(tmp_path):
    job = JobFolder.take(tmp_path)
    job.begin_run("2026-12-01T00:00:00Z", "f", {})
    job.record_page(Q1, 1, [note("n1"), note("n2")], "empty_page", 2)
    job.end_run("finished", "2026-12-01T00:01:00Z", calls=1, exit_status=0)
    job.close()
    del job  # the lock goes with the process's file descriptor; a second take in-process needs it closed
    day2 = JobFolder.read(tmp_path)
    assert (day2.resuming, day2.current, day2.previous_crawl_started) == (False, 2, "2026-12-01T00:00:00Z")
    assert day2.progress(Q1) is None, "a new crawl starts every query again"
    assert day2.earlier(["n1", "n9"]) == {"n1"}, "crawl 1's notes are earlier notes for crawl 2"


def test_the_folder_is_one_crawl_at_a_time(tmp_path):
    holder = JobFolder.take(tmp_path)
    assert holder is not None
    pid = os.fork()
    if pid == 0:  # another process: refused while the lock is held
        os._exit(0 if JobFolder.take(tmp_path) is None else 1)
    assert os.waitpid(pid, 0)[1] == 0


def test_a_page_paid_again_replaces_itself(tmp_path):
    job = JobFolder.take(tmp_path)
    job.begin_run("t", "f", {})
    job.record_page(Q1, 1, [note("n1"), note("n2")], None, 2)
    job.record_page(Q1, 1, [note("n1"), note("n2")], None, 2)  # in flight at a kill: paid twice
    progress = job.progress(Q1)
    assert [i["note_id"] for i in job.items(progress)] == ["n1", "n2"] and job.pages_paid(progress) == 1


def test_earlier_notes_are_looked_up_not_loaded(tmp_path):
    job = JobFolder.take(tmp_path)
    job.begin_run("t1", "f", {})
    job.record_page(Q1, 1, [note(i) for i in ids(1000)], "empty_page", 1000)
    job.end_run("finished", "t2", calls=1, exit_status=0)
    job.begin_run("t3", "f", {})
    page = ids(10, "a")[5:] + ids(5, "b")
    assert job.earlier(page) == set(ids(10, "a")[5:])
    job.record_page(Q1, 1, [note(i) for i in page], "empty_page", 10)
    assert job.earlier(ids(5, "b")) == set(), "this crawl's own notes are not earlier notes"


def test_earlier_notes_are_found_by_their_ids_not_by_a_scan(tmp_path):
    """One search of the primary key per id: a plan that scans the crawl index instead would read every
    seen id on every page (a temp-table join gets that plan)."""
    job = JobFolder.take(tmp_path)
    job.begin_run("t1", "f", {})
    statements: list[str] = []
    job.db.set_trace_callback(statements.append)  # the SQL as run, its values in it
    job.earlier(ids(20))
    job.db.set_trace_callback(None)
    plan = [row[3] for row in job.db.execute(f"EXPLAIN QUERY PLAN {statements[-1]}")]
    assert plan == ["SEARCH seen USING PRIMARY KEY (note_id=?)"], plan


def test_a_write_that_fails_names_the_file(tmp_path):
    job = JobFolder.take(tmp_path)
    job.begin_run("t", "f", {})
    job.db.execute("PRAGMA max_page_count = 1")  # a full disk, as SQLite sees it
    with pytest.raises(StorageError, match=f"cannot write the job database {tmp_path / DATABASE}: .*full"):
        job.record_page(Q1, 1, [note(i, desc="x" * 2000) for i in ids(200)], None, 200)
    assert job.progress(Q1) is None or job.pages_paid(job.progress(Q1)) == 0, "all of the page or none of it"


def test_a_read_only_folder_is_a_storage_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only files")
    job = JobFolder.take(tmp_path)
    job.begin_run("t", "f", {})
    job.close()
    (tmp_path / DATABASE).chmod(0o444)
    with pytest.raises((StorageError, sqlite3.Error)):
        JobFolder.take(tmp_path).record_page(Q1, 1, [note("n1")], None, 1)


def test_reports_and_export(tmp_path):
    job = JobFolder.take(tmp_path)
    job.begin_run("2026-11-30T00:00:00Z", "f", {})
    job.record_page(Q1, 1, [note("n1", keyword="海信"), note("n2", keyword="海信")], None, 2)
    job.record_page(Q2, 1, [note("n2", keyword="Nike"), note("n3", keyword="Nike")], "empty_page", 2)
    job.record_failed(Q1, 2, "timeout")
    job.end_run("finished", "2026-11-30T00:01:00Z", calls=3, exit_status=3)
    job.begin_run("2026-12-01T00:00:00Z", "f", {})
    job.record_page(Q1, 2, [note("n4", keyword="海信")], "empty_page", 3)
    job.end_run("finished", "2026-12-01T00:01:00Z", calls=1, exit_status=0)
    job.begin_run("2026-12-02T00:00:00Z", "f", {})
    job.record_page(Q1, 1, [note("n1", keyword="海信"), note("n5", keyword="海信")], "empty_page", 2)
    figures = {(f.crawl, f.keyword): (f.pages, f.notes, f.new, f.failed) for f in job.keyword_figures([1, 2])}
    # crawl 1 paid its failed page in its second run: not failed in the end
    assert figures == {(1, "海信"): (2, 3, 3, 0), (1, "Nike"): (1, 2, 1, 0), (2, "海信"): (1, 2, 1, 0)}
    assert job.distinct_notes(1) == 4
    assert [c for c, _ in job.crawls_since("2026-12-01")] == [2]
    assert [orjson.loads(line)["note_id"] for line in job.export(1)] == ["n1", "n2", "n4", "n3"]
    assert [orjson.loads(line)["note_id"] for line in job.export(None)] == ["n1", "n2", "n4", "n3", "n5"]


def write_journal(folder: Path, crawl: int, records: list[dict[str, object]], tail: bytes = b"") -> None:
    with journal_path(folder, crawl).open("wb") as file:
        for record in records:
            file.write(orjson.dumps(record) + b"\n")
        file.write(tail)


def old_folder(folder: Path) -> None:
    """A job folder of the earlier format: history.ids, a complete crawl 1, an open crawl 2."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / HISTORY).write_text("old1\nold2\n", encoding="utf-8")
    key1, key2 = list(query_key(Q1)), list(query_key(Q2))
    write_journal(
        folder,
        1,
        [
            {"e": "crawl", "crawl": 1, "at": "2026-11-01T00:00:00Z", "queries": [key1], "outputs": {}},
            {"e": "run", "run": 1, "at": "2026-11-01T00:00:00Z"},
            {"e": "page", "q": key1, "p": 1, "end": "empty_page", "next_rank": 1, "items": [note("c1")]},
            {"e": "end", "run": 1, "reason": "finished", "at": "x", "calls": 1, "complete": True},
        ],
    )
    write_journal(
        folder,
        2,
        [
            {"e": "crawl", "crawl": 2, "at": "2026-11-02T00:00:00Z", "queries": [key1, key2], "outputs": {"o": 5}},
            {"e": "run", "run": 1, "at": "2026-11-02T00:00:00Z"},
            {"e": "page", "q": key1, "p": 1, "end": None, "next_rank": 2, "items": [note("c1"), note("c2")]},
            {"e": "rejected", "q": key2, "p": 1},
        ],
        tail=b'{"e": "page", "cut off by a ki',
    )


def test_an_old_job_folder_is_converted_on_first_use(tmp_path):
    old_folder(tmp_path)
    job = JobFolder.take(tmp_path)
    assert (job.crawl, job.resuming, job.outputs) == (2, True, {"o": 5})
    assert job.fingerprint == queries_fingerprint([query_key(Q1), query_key(Q2)])
    assert job.previous_crawl_started == "2026-11-01T00:00:00Z"
    progress = job.progress(Q1)
    assert progress is not None and (progress.last_page, progress.next_rank, progress.done(20)) == (1, 2, False)
    assert job.progress(Q2).rejected
    assert [i["note_id"] for i in job.items(progress)] == ["c1", "c2"]
    # the history survives: notes of crawl 1 and of history.ids are earlier notes for crawl 2
    assert job.earlier(["old1", "old2", "c1", "c2", "new"]) == {"old1", "old2", "c1"}
    assert (tmp_path / HISTORY).exists() and journal_path(tmp_path, 2).exists(), "the old files are kept"


def test_a_conversion_cut_short_is_done_again_at_the_next_start(tmp_path):
    """A kill during the conversion leaves an empty job.db (the conversion is one transaction)."""
    old_folder(tmp_path)
    sqlite3.connect(tmp_path / DATABASE).executescript(SCHEMA)  # what the killed start left
    seen = JobFolder.read(tmp_path)  # a report, a dry run: what the next start will see
    assert (seen.crawl, seen.resuming) == (2, True)
    seen.close()
    job = JobFolder.take(tmp_path)
    assert (job.crawl, job.resuming) == (2, True)
    assert job.earlier(["old1", "c1", "new"]) == {"old1", "c1"}, "the history is not lost"


def test_reading_an_old_folder_writes_nothing(tmp_path):
    old_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    job = JobFolder.read(tmp_path)
    assert job.crawl == 2 and job.resuming and job.progress(Q1).last_page == 1
    job.close()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert JobFolder.read(tmp_path / "none").crawl == 0
