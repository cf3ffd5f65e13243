"""The run as a user sees it: the token's masking, a quiet log, live progress, the dry run, the
probe on the sandbox, an honest notes line, one report from the job database, trends as a picture."""

from __future__ import annotations

import io
import logging
import math
import os
import subprocess
import sys

import pytest
from scrapy.settings import Settings

from rednote_crawl import api, redaction
from rednote_crawl.config import ConfigError
from rednote_crawl.run import report, trends
from rednote_crawl.run.plan import preflight
from rednote_crawl.run.quiet import quiet_scrapy
from rednote_crawl.run.startup import _create_folder
from rednote_crawl.run.summary import live_stream, render_progress
from rednote_crawl.state.jobfolder import JobFolder
from tests.conftest import TOKEN, crawl_args, scrapy_in_process


def test_a_short_token_masks_no_ordinary_word_and_a_real_one_is_masked_wherever_it_stands():
    redaction.install("any")
    assert redaction.redact("note_time any, company: GET /x?token=any&page=1") == (
        "note_time any, company: GET /x?token=…&page=1"
    )
    redaction.install("tok-0123456789abcdef-XYZ")
    assert redaction.redact("a tok-0123456789abcdef-XYZ b tok-0123456789abcdef-XYZ2") == "a tok-… b tok-…2"


def test_scrapys_own_start_up_lines_are_kept_out_unless_debug(caplog):
    caplog.set_level(logging.DEBUG)
    quiet_scrapy(Settings({"LOG_LEVEL": "INFO"}))
    logging.getLogger("scrapy.crawler").info("Overridden settings: ...")
    logging.getLogger("scrapy.crawler").warning("a warning still shows")
    logging.getLogger("rednote_crawl.run.summary").info("Summary of note_search")
    assert "Overridden settings" not in caplog.text and "a warning still shows" in caplog.text
    assert "Summary of note_search" in caplog.text
    quiet_scrapy(Settings({"LOG_LEVEL": "DEBUG"}))
    logging.getLogger("scrapy.crawler").info("Overridden settings again")
    assert "Overridden settings again" in caplog.text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_live_progress_line_is_for_a_terminal_only():
    assert live_stream(Settings({}), Terminal()) is not None
    assert live_stream(Settings({}), io.StringIO()) is None, "a log file keeps the periodic line"
    assert live_stream(Settings({"LOG_FILE": "crawl.log"}), Terminal()) is None
    line = render_progress(done=6, total=21, pages=89, new=1253, calls_per_s=14.8, elapsed=6.0)
    assert line == "6/21 queries · 89 pages · 1253 new notes · 14.8 calls/s · about 0:00:15 left"
    assert "left" not in render_progress(0, 21, 0, 0, 0.0, 1.0), "no estimate before a query is done"
    # a distributed worker started without keywords finishes queries others seeded
    assert render_progress(4, 0, 43, 500, 3.0, 9.0).startswith("4 queries done · 43 pages")
    assert render_progress(5, 3, 43, 500, 3.0, 9.0).startswith("5 queries done · ")


def settings(**values: object) -> Settings:
    result = Settings()
    result.setmodule("rednote_crawl.settings", priority="project")
    result.setdict(values, priority="cmdline")
    return result


def test_a_dry_run_checks_what_a_real_run_checks_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("JUSTONEAPI_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="no API token"):
        preflight(settings())
    monkeypatch.setenv("JUSTONEAPI_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="cannot reach Redis"):
        preflight(settings(REDIS_URL="redis://127.0.0.1:9/0"))
    job = tmp_path / "job"
    holder = JobFolder.take(job)
    before = sorted(p.name for p in job.iterdir())
    pid = os.fork()
    if pid == 0:  # another process: the dry run of a second crawl
        try:
            preflight(settings(JUSTONEAPI_JOB_DIR=str(job)))
        except ConfigError as exc:
            os._exit(0 if "is in use by another crawl" in str(exc) else 1)
        os._exit(1)
    assert os.waitpid(pid, 0)[1] == 0
    holder.close()
    preflight(settings(JUSTONEAPI_JOB_DIR=str(job)))  # free now: seen, not taken
    assert JobFolder.take(job) is not None, "the dry run did not keep the lock"
    assert sorted(p.name for p in job.iterdir()) == before
    out = tmp_path / "no" / "such" / "dir" / "x.jsonl"
    preflight(settings(FEEDS={str(out): {"format": "jsonlines"}}))
    assert not (tmp_path / "no").exists(), "a dry run creates no folder"
    preflight(settings(JUSTONEAPI_JOB_DIR=str(tmp_path / "new-job")))
    assert not (tmp_path / "new-job").exists()


def test_a_real_run_creates_the_outputs_folder_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "no" / "such" / "x.jsonl"
    _create_folder(str(out))
    assert out.parent.is_dir() and not out.exists() and f"Created the folder {out.parent}" in caplog.text


def run(*args: str, token: str | None = TOKEN, server=None) -> subprocess.CompletedProcess[str]:
    """``scrapy ARGS...`` in this process (conftest.py): exit status, stdout, and the log in stderr."""
    env = {"JUSTONEAPI_TOKEN": token} if token else {}
    if server is not None:
        env["JUSTONEAPI_BASE_URL"] = server.url
    return scrapy_in_process(*args, env=env)


def test_the_probe_runs_on_the_sandbox_without_a_token():
    result = run("probe", "海信", "-s", "JUSTONEAPI_SANDBOX=1", token=None)
    assert result.returncode == 0, result.stderr
    assert "code_0" in result.stdout and "The token works" in result.stdout


@pytest.mark.crawl
def test_a_resumed_run_accounts_for_every_note_and_reports_the_whole_crawl_as_scrapy_report_does(sandbox, tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("华为\n元气森林\n小米\n", encoding="utf-8")
    job, out = tmp_path / "job", tmp_path / "notes.jsonl"
    crawl = crawl_args(seeds=seeds, output=out, settings={"JUSTONEAPI_JOB_DIR": job}, state=tmp_path / "state")
    first = run(*crawl, "-s", "JUSTONEAPI_MAX_REQUESTS=6", "-s", "CONCURRENT_REQUESTS=2", server=sandbox)
    assert first.returncode == 6, first.stderr[-2000:]
    second = run(*crawl, server=sandbox)
    assert second.returncode == 0, second.stderr[-2000:]
    log = second.stderr
    assert "Overridden settings" not in log and "Versions" not in log, "Scrapy's start-up stays out of the log"
    notes = next(line for line in log.splitlines() if line.startswith("  notes:"))
    written = int(notes.split(" already written by an earlier run")[0].rsplit(", ", 1)[1])
    assert written > 0 and " put back from the job folder" in notes, notes
    # The end-of-run report covers the whole crawl, both runs, and scrapy report says the same.
    table = log[log.index("Report of crawl 1 of job") :].splitlines()[1:]
    report = run("report", str(job))
    assert report.returncode == 0 and report.stdout.splitlines()[1:] == table
    assert "calls/new" in table[0]


def test_trends_as_a_picture(tmp_path):
    job = JobFolder.take(tmp_path)
    for day in (1, 2, 3):
        job.begin_run(f"2026-11-0{day}T00:00:00Z", "f", {})
        items = [{"note_id": f"{day}-{n}", "keyword": "海信"} for n in range(day * 3)]
        job.record_page(api.Query("海信"), 1, items, "empty_page", len(items), calls=2)
        job.end_run("finished", f"2026-11-0{day}T01:00:00Z", calls=2, exit_status=0)
    crawls = job.crawls_since("")
    picture = trends.draw(job, crawls)
    assert picture.startswith(b"\x89PNG") and len(picture) > 5000
    page = trends.page(job, crawls, [report.history_table(job, crawls)])
    assert "data:image/png;base64," in page and "<th scope='row'>海信</th>" in page
    font = trends.missing_font(job, crawls)  # 海信 needs a CJK font: this machine may or may not have one
    assert font is None or "fonts-noto-cjk" in font
    assert math.isnan(trends.calls_per_new_note([])), "a crawl without new notes costs no 0 calls a note"


def test_the_html_report_without_matplotlib_still_has_its_tables(tmp_path, monkeypatch):
    job = JobFolder.take(tmp_path)
    job.begin_run("2026-11-01T00:00:00Z", "f", {})
    job.end_run("finished", "2026-11-01T01:00:00Z", calls=0, exit_status=0)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with pytest.raises(trends.PlotUnavailable, match="pip install"):
        trends.draw(job, job.crawls_since(""))
    page = trends.page(job, job.crawls_since(""), [report.history_table(job, job.crawls_since(""))])
    assert "No picture: the picture needs matplotlib" in page and "<table>" in page and "<img" not in page


def test_the_end_of_run_report_and_scrapy_report_agree_after_a_kill(tmp_path):
    """A run killed with kill -9 recorded no calls: both reports say "at least"."""
    job = JobFolder.take(tmp_path)
    job.begin_run("2026-11-01T00:00:00Z", "f", {})
    job.record_page(api.Query("海信"), 1, [{"note_id": "a", "keyword": "海信"}], None, 2, calls=3)  # then killed
    job.begin_run("2026-11-01T00:10:00Z", "f", {})
    job.record_page(api.Query("海信"), 2, [{"note_id": "b", "keyword": "海信"}], "empty_page", 3, calls=1)
    job.end_run("finished", "2026-11-01T00:11:00Z", calls=1, exit_status=0)
    figures = job.crawl_figures(job.crawl)
    at_the_end, later = report.render_crawl(figures, this_run=True), report.render_crawl(figures)
    assert at_the_end.splitlines()[1:] == later.splitlines()[1:]
    assert "calls: at least 4 for 2 paid pages" in later
