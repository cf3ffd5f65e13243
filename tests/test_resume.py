"""Crash-safe resume, incremental crawls, the dry run and the report, against the sandbox.

The crawls run in the test process (conftest.py), but those that are killed (kill -9, Ctrl-C): a
subprocess."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from rednote_crawl.sandbox.corpus import Corpus
from rednote_crawl.state.outputs import repair_jsonl
from tests.conftest import TOKEN, crawl_args, expected_ids, paid_twice, scrapy_in_process, start_scrapy

pytestmark = pytest.mark.crawl

CORPUS = Corpus()
# Three queries of 4 to 6 pages (15), each sharing notes with the others: every stop and resume below.
KEYWORDS = ["华为", "元气森林", "小米"]
# The killed crawls: more queries at once than CONCURRENCY (requests in flight up to the window, as
# many as it lets through), 30 pages: pages are left after each kill.
KILLED = ["华为", "元气森林", "花西子", "Dior", "魅族", "小米"]
CONCURRENCY = 4


def command(seeds: Path, job: Path, output: Path | str | None, *extra: str) -> list[str]:
    """``crawl note_search ...`` of this job: the arguments after ``scrapy``."""
    settings = {"JUSTONEAPI_JOB_DIR": str(job), "CONCURRENT_REQUESTS": str(CONCURRENCY)}
    # the test's own learned limit (conftest.py)
    return crawl_args(*extra, seeds=seeds, output=output, settings=settings, state=job.parent / "state")


def environ(server) -> dict[str, str]:
    return {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BASE_URL": server.url}


def run(cmd: list[str], server) -> subprocess.CompletedProcess[str]:
    """``scrapy CMD...`` in this process (conftest.py): its exit status, stdout, and its log in stderr."""
    return scrapy_in_process(*cmd, env=environ(server))


def kill_when(cmd: list[str], server, ready, sig: int = signal.SIGKILL) -> int:
    """Start the crawl in a subprocess, send ``sig`` once ``ready()`` holds, and return its exit status."""
    proc = start_scrapy(*cmd, env=environ(server), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    return proc.wait(30)


def keyword_file(tmp_path: Path, keywords: list[str]) -> Path:
    seeds = tmp_path / "killed-seeds.txt"
    seeds.write_text("\n".join(keywords) + "\n", encoding="utf-8")
    return seeds


def output_ids(path: Path) -> list[str]:
    lines = path.read_bytes().splitlines()
    return [orjson.loads(line)["note_id"] for line in lines]  # every line is whole JSON


def test_kill_9_early_mid_crawl_and_during_export_then_resume(sandbox_factory, tmp_path):
    server = sandbox_factory(latency=0.05)
    job, output = tmp_path / "job", tmp_path / "notes.jsonl"
    cmd = command(keyword_file(tmp_path, KILLED), job, output)

    def calls(n: int):  # made as its run starts
        start = len(server.log)
        return lambda: len(server.log) >= start + n

    def written(more: int):  # made as its run starts: notes written by this run (a page's notes: ~30 KB)
        start = output.stat().st_size if output.exists() else 0
        return lambda: output.exists() and output.stat().st_size > start + more

    kills = [
        lambda: calls(2),  # early: the first answers are in flight
        lambda: calls(10),  # mid-crawl, requests in flight
        lambda: written(40_000),  # while notes are being written
    ]
    for kill in kills:
        assert kill_when(cmd, server, kill()) == -signal.SIGKILL
    server.config.latency = 0  # the latency only kept requests in flight at the kills
    final = run(cmd, server)
    assert final.returncode == 0, final.stderr
    ids = output_ids(output)
    assert len(ids) == len(set(ids)), "no note written twice"
    assert set(ids) == expected_ids(KILLED), "no note lost"
    repaid = paid_twice(server)
    assert sum(n - 1 for n in repaid.values()) <= CONCURRENCY * len(kills), "only pages in flight at a kill"
    # Every page of every query was paid for, in the end.
    paid = {(k, int(p)) for k, _, _, _, p in server.paid_pages()}
    assert paid == {(k, p) for k in KILLED for p in range(1, len(CORPUS.layout(k, "general", "_0", "any")) + 1)}


def test_answers_waiting_to_be_stored_count_as_in_flight(sandbox, tmp_path):
    """Scrapy frees a downloader slot when the answer arrives: with a slow job database the answers
    waiting to be stored would pile up, and a kill would make us pay for all of them again."""
    seeds = keyword_file(tmp_path, KILLED)
    job, output = tmp_path / "job", tmp_path / "notes.jsonl"
    cmd = command(seeds, job, output, "-s", "JUSTONEAPI_STATE_CLASS=tests.slow_storage.SlowStorage")
    start = len(sandbox.log)
    assert kill_when(cmd, sandbox, lambda: len(sandbox.log) >= start + 12) == -signal.SIGKILL
    final = run(command(seeds, job, output), sandbox)
    assert final.returncode == 0, final.stderr
    assert set(output_ids(output)) == expected_ids(KILLED)
    assert 0 < sum(n - 1 for n in paid_twice(sandbox).values()) <= CONCURRENCY


def test_torn_lines_are_mended_before_anything_is_appended(sandbox, seeds, tmp_path):
    job, output = tmp_path / "job", tmp_path / "notes.jsonl"
    cmd = command(seeds, job, output, "-s", "JUSTONEAPI_MAX_REQUESTS=6")
    assert run(cmd, sandbox).returncode == 6
    with output.open("ab") as file:
        file.write(b'{"note_id": "cut-off in the middle of a li')
    final = run(command(seeds, job, output), sandbox)
    assert final.returncode == 0, final.stderr
    ids = output_ids(output)
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(KEYWORDS)
    assert not paid_twice(sandbox)


@pytest.mark.parametrize(
    ("stop", "status", "hint"),
    [
        ({"settings": ["-s", "JUSTONEAPI_MAX_REQUESTS=7"]}, 6, "raise -s JUSTONEAPI_MAX_REQUESTS"),
        ({"quota": 7}, 5, "run the same command again tomorrow"),
    ],
)
def test_a_budget_or_quota_stop_resumes_exactly_where_it_stopped(sandbox_factory, seeds, tmp_path, stop, status, hint):
    server = sandbox_factory(quota=stop.get("quota"))
    job, output = tmp_path / "job", tmp_path / "notes.jsonl"
    first = run(command(seeds, job, output, *stop.get("settings", [])), server)
    assert first.returncode == status, first.stderr
    assert hint in first.stderr and f"it carries on where this run stopped (JUSTONEAPI_JOB_DIR={job})" in first.stderr
    server.config.quota = None  # tomorrow
    final = run(command(seeds, job, output), server)
    assert final.returncode == 0, final.stderr
    ids = output_ids(output)
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(KEYWORDS)
    assert not paid_twice(server), "a clean stop costs no page twice"


def test_ctrl_c_then_resume(sandbox_factory, tmp_path):
    server = sandbox_factory(latency=0.3)
    job, output = tmp_path / "job", tmp_path / "notes.jsonl"
    cmd = command(keyword_file(tmp_path, KILLED), job, output)
    start = len(server.log)
    status = kill_when(cmd, server, lambda: len(server.log) >= start + 6, signal.SIGINT)
    assert status == 1  # stopped by Ctrl-C
    server.config.latency = 0  # the latency only kept requests in flight at the Ctrl-C
    final = run(cmd, server)
    assert final.returncode == 0, final.stderr
    ids = output_ids(output)
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(KILLED)
    assert sum(n - 1 for n in paid_twice(server).values()) <= CONCURRENCY


def test_a_finished_crawl_is_followed_by_a_new_one_that_skips_or_updates_known_notes(sandbox, seeds, tmp_path):
    job = tmp_path / "job"
    first = run(command(seeds, job, tmp_path / "day1.jsonl"), sandbox)
    assert first.returncode == 0, first.stderr
    assert "crawl 1 begins" in first.stderr
    second = run(command(seeds, job, tmp_path / "day2.jsonl"), sandbox)
    assert second.returncode == 0 and "crawl 2 begins" in second.stderr
    assert output_ids(tmp_path / "day2.jsonl") == [], "JUSTONEAPI_SEEN_NOTES=skip: known notes are not written again"
    third = run(command(seeds, job, tmp_path / "day3.jsonl", "-s", "JUSTONEAPI_SEEN_NOTES=update"), sandbox)
    assert third.returncode == 0
    assert set(output_ids(tmp_path / "day3.jsonl")) == expected_ids(KEYWORDS), "update: written again, with today's counts"


def test_the_default_output_of_a_job_is_one_file_per_crawl(sandbox, seeds, tmp_path):
    job = tmp_path / "job"
    cmd = command(seeds, job, None)
    assert run(cmd, sandbox).returncode == 0
    assert set(output_ids(job / "crawl-0001.jsonl")) == expected_ids(KEYWORDS)


def test_since_stops_paging_a_time_sorted_query_at_the_cutoff(sandbox, tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("海信\n", encoding="utf-8")
    keys = CORPUS.result_keys("海信", "time_descending", "_0", "any")
    cutoff = CORPUS.now - 30 * 86400
    cmd = command(seeds, tmp_path / "job", tmp_path / "notes.jsonl", "-a", "sort=latest", "-a", "since=2026-10-28")
    result = run(cmd, sandbox)
    assert result.returncode == 0, result.stderr
    newer = {CORPUS.note(k)["id"] for k in keys if CORPUS.note(k)["timestamp"] >= cutoff}
    assert set(output_ids(tmp_path / "notes.jsonl")) == newer
    layout = CORPUS.layout("海信", "time_descending", "_0", "any")
    first_older_page = next(
        n
        for n, page in enumerate(layout, 1)
        if any(s.model_type == "note" and CORPUS.note(s.key)["timestamp"] < cutoff for s in page)
    )
    assert [int(e["page"]) for e in sandbox.log] == list(range(1, first_older_page + 1)), "no page past the cutoff"
    assert first_older_page < len(layout) - 1, "the cutoff saved calls"


def test_since_last_uses_the_last_crawl_of_the_job(sandbox, seeds, tmp_path):
    # Without a job folder, -a since=last is refused: tests/test_startup.py.
    cmd = command(seeds, tmp_path / "job", tmp_path / "o.jsonl", "-a", "since=last", "-a", "sort=latest")
    first = run(cmd, sandbox)
    assert first.returncode == 0 and "first crawl, so every note counts" in first.stderr
    assert set(output_ids(tmp_path / "o.jsonl")) == expected_ids(KEYWORDS)
    calls = len(sandbox.log)
    second = run(cmd, sandbox)
    assert second.returncode == 0 and "when the job's last crawl began" in second.stderr
    # Every sandbox note is older than the first crawl: page 1 of each query shows it, and ends it.
    assert len(sandbox.log) - calls == len(KEYWORDS)
    assert output_ids(tmp_path / "o.jsonl") == []


def test_dry_run_sends_nothing_and_touches_nothing(sandbox, seeds, tmp_path):
    output = tmp_path / "notes.jsonl"
    output.write_text("keep me\n")
    result = run(command(seeds, tmp_path / "job", output, "--dry-run", "-a", "sort=general,latest"), sandbox)
    assert result.returncode == 0, result.stderr
    assert "3 keywords x 2 filter combinations = 6 queries, at most 20 pages each" in result.stdout
    assert "at most 120 paid pages" in result.stdout
    assert not sandbox.log and output.read_text() == "keep me\n" and not list((tmp_path / "job").glob("*"))


def test_dry_run_of_an_open_job_counts_what_is_left(sandbox, seeds, tmp_path):
    job, output = tmp_path / "job", tmp_path / "notes.jsonl"
    assert run(command(seeds, job, output, "-s", "JUSTONEAPI_MAX_REQUESTS=4"), sandbox).returncode == 6
    result = run(command(seeds, job, output, "--dry-run"), sandbox)
    assert result.returncode == 0
    assert "crawl 1 is open:" in result.stdout and "4 pages paid" in result.stdout


def test_the_report_from_a_job_folder(sandbox, seeds, tmp_path):
    job = tmp_path / "job"
    crawl = run(command(seeds, job, tmp_path / "notes.jsonl"), sandbox)
    assert crawl.returncode == 0
    assert f"Report of crawl 1 of job {job} (1 run so far), per keyword:" in crawl.stderr
    report = scrapy_in_process("report", str(job))
    assert report.returncode == 0, report.stderr
    lines = report.stdout.splitlines()
    assert lines[0].startswith(f"Report of crawl 1 of job {job} (1 run, complete)")
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if not line.startswith(("  total", "  calls", "  * "))}
    for keyword in KEYWORDS:
        pages = len(CORPUS.layout(keyword, "general", "_0", "any"))
        assert rows[keyword][0] == str(pages)
        assert rows[keyword][1] == str(len(CORPUS.expected_note_ids(keyword)))
    body = [line for line in lines if not line.startswith("  * ")]  # footnotes under the table (issue 22)
    total = body[-2].split()
    assert total[2] == total[3] == str(len(expected_ids(KEYWORDS)))
    assert body[-1].startswith(f"  calls: {len(sandbox.log)} for {total[1]} paid pages")
    missing = scrapy_in_process("report", str(tmp_path))
    assert missing.returncode == 2 and "is not a job state folder" in missing.stderr


def test_output_lines_cut_off_are_mended_and_others_kept(tmp_path):
    path = tmp_path / "o.jsonl"
    path.write_bytes(b'{"note_id": "a"}\nnot json\n{"note_id": "b"}\n{"note_id": "cut')
    assert [r["note_id"] for r in repair_jsonl(path, mend=False)] == ["a", "b"] and path.read_bytes().endswith(b"cut")
    assert [r["note_id"] for r in repair_jsonl(path, start=len(b'{"note_id": "a"}\n'))] == ["b"]
    assert path.read_bytes() == b'{"note_id": "a"}\nnot json\n{"note_id": "b"}\n', "only the cut-off last line goes"
    assert list(repair_jsonl(tmp_path / "none.jsonl")) == []


def test_a_bad_line_in_the_middle_is_kept_and_other_formats_are_left_alone(sandbox, seeds, tmp_path):
    job = tmp_path / "job"
    csv = tmp_path / "all.csv"
    jsonl = tmp_path / "all.jsonl"
    jsonl.write_bytes(b'{"note_id": "from-before"}\nnot json, but not ours to delete\n{"note_id": "also-before"}\n')
    budget = ["-s", "JUSTONEAPI_MAX_REQUESTS=5"]
    first = [c for c in command(seeds, job, jsonl) if c != "-O"] + ["-o", str(csv)]
    first[first.index(str(jsonl))] = "-o"
    first.insert(first.index("-o") + 1, str(jsonl))
    assert run(first + budget, sandbox).returncode == 6
    size = csv.stat().st_size
    assert run(first, sandbox).returncode == 0
    assert csv.stat().st_size > size, "the CSV feed is appended to, never cut"
    lines = jsonl.read_bytes().splitlines()
    assert lines[:3] == [
        b'{"note_id": "from-before"}',
        b"not json, but not ours to delete",
        b'{"note_id": "also-before"}',
    ]
    ids = [orjson.loads(line)["note_id"] for line in lines[3:]]
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(KEYWORDS)


def test_a_feed_that_failed_leaves_the_crawl_open(sandbox, seeds, tmp_path):
    job = tmp_path / "job"
    failed = run(command(seeds, job, Path("/dev/full:jsonl")), sandbox)
    assert failed.returncode == 8
    final = run(command(seeds, job, tmp_path / "notes.jsonl"), sandbox)
    assert final.returncode == 0 and "resuming crawl 1" in final.stderr
    assert set(output_ids(tmp_path / "notes.jsonl")) == expected_ids(KEYWORDS)
    assert not paid_twice(sandbox)


def test_max_pages_may_change_between_runs_of_a_crawl(sandbox, seeds, tmp_path):
    job, output = tmp_path / "job", tmp_path / "notes.jsonl"
    assert run(command(seeds, job, output, "-a", "max_pages=2"), sandbox).returncode == 0  # complete at 2 pages
    assert (
        run(
            command(seeds, job, tmp_path / "x.jsonl", "-a", "max_pages=1", "-s", "JUSTONEAPI_MAX_REQUESTS=1"), sandbox
        ).returncode
        == 6
    )
    raised = run(command(seeds, job, tmp_path / "x.jsonl"), sandbox)  # crawl 2, resumed with the default 20
    assert raised.returncode == 0
    pages = Counter((k, int(p)) for k, _, _, _, p in sandbox.paid_pages())
    assert max(p for _, p in pages) > 2, "a query stopped by max_pages goes on when max_pages grows"


def test_update_mode_with_an_appended_output_writes_every_note_of_the_day(sandbox, seeds, tmp_path):
    job, output = tmp_path / "job", tmp_path / "all.jsonl"

    def append(*extra):
        cmd = command(seeds, job, output, *extra)
        cmd[cmd.index("-O")] = "-o"
        return run(cmd, sandbox)

    assert append().returncode == 0
    day1 = len(output.read_bytes().splitlines())
    assert append("-s", "JUSTONEAPI_SEEN_NOTES=update", "-s", "JUSTONEAPI_MAX_REQUESTS=8").returncode == 6
    assert append("-s", "JUSTONEAPI_SEEN_NOTES=update").returncode == 0
    day2 = [orjson.loads(line)["note_id"] for line in output.read_bytes().splitlines()[day1:]]
    assert len(day2) == len(set(day2)) and set(day2) == expected_ids(KEYWORDS)


def test_ranks_survive_a_resume(sandbox, tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("海信\n", encoding="utf-8")
    args = ("-a", "sort=latest", "-a", "since=2026-10-01")
    assert run(command(seeds, tmp_path / "a", tmp_path / "a.jsonl", *args), sandbox).returncode == 0
    assert (
        run(
            command(seeds, tmp_path / "b", tmp_path / "b.jsonl", *args, "-s", "JUSTONEAPI_MAX_REQUESTS=1"), sandbox
        ).returncode
        == 6
    )
    assert run(command(seeds, tmp_path / "b", tmp_path / "b.jsonl", *args), sandbox).returncode == 0

    def ranks(path):
        return sorted((r["note_id"], r["page"], r["rank"]) for r in map(orjson.loads, path.read_bytes().splitlines()))

    assert ranks(tmp_path / "a.jsonl") == ranks(tmp_path / "b.jsonl")


def test_dry_run_and_report_do_not_write_to_the_job(sandbox, seeds, tmp_path):
    job = tmp_path / "job"
    assert run(command(seeds, job, tmp_path / "o.jsonl", "-s", "JUSTONEAPI_MAX_REQUESTS=3"), sandbox).returncode == 6
    before = {p.name: p.read_bytes() for p in job.iterdir()}
    assert run(command(seeds, job, tmp_path / "o.jsonl", "--dry-run"), sandbox).returncode == 0
    assert scrapy_in_process("report", str(job)).returncode == 0
    assert {p.name: p.read_bytes() for p in job.iterdir()} == before
    # A dry run that is refused (-a since=last without a job folder): tests/test_startup.py.
