"""The crawl's start-up refusals, in this process: a bad input stops the crawl before its first call.

The add-on (``addon.py``) and the start-up extension (``run/startup.py``, built before the engine)
raise ``ConfigError`` or ``SeedFileError``; ``scrapy crawl`` prints it as ``Cannot start: ...``
and exits 2. Each test here builds the crawler from the project's settings, as ``scrapy crawl``
does, and runs it on the test process's asyncio reactor (conftest.py): a start-up that did not
refuse would go on to crawl the sandbox, and every test checks that the sandbox was not called. tests/test_crawl.py runs a refusal through the real
command line (exit status, log, no traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scrapy.crawler import AsyncCrawlerRunner, Crawler
from scrapy.settings import Settings
from scrapy.utils.conf import feed_process_params_from_cli

from rednote_crawl.commands.crawl import Command as CrawlCommand
from rednote_crawl.config import NO_KEYWORDS, SINCE_LAST_NEEDS_JOB, ConfigError
from rednote_crawl.seeds import SeedFileError
from rednote_crawl.spiders.note_search import NoteSearchSpider
from rednote_crawl.state.jobfolder import JobFolder
from tests.conftest import FAST, ROOT, TOKEN, run_crawler

Refusal = ConfigError | SeedFileError
KEYWORDS = ["海信", "Nike"]  # the seeds fixture's (conftest.py)


def project_settings(cmdline: dict[str, Any]) -> Settings:
    """The settings ``scrapy crawl -s NAME=VALUE ...`` gives a crawler (on this process's asyncio
    reactor, conftest.py)."""
    settings = Settings()
    settings.setmodule("rednote_crawl.settings", priority="project")
    settings.setdict({**FAST, **cmdline}, priority="cmdline")
    return settings


def run_crawl(crawler: Crawler, **spider_args: str) -> None:
    run_crawler(crawler, timeout=30, **spider_args)


@pytest.fixture
def start(sandbox, environment, tmp_path) -> Callable[..., Refusal]:
    """``scrapy crawl note_search -a NAME=VALUE -O FILE -s NAME=VALUE`` in this process, against the
    sandbox: returns the start-up's refusal, after checking that no call was sent."""

    def run(settings: dict[str, Any] | None = None, output: Path | str | None = None, **spider_args: str) -> Refusal:
        crawl_settings = project_settings({"JUSTONEAPI_STATE_DIR": str(tmp_path / "state"), **(settings or {})})
        target = tmp_path / "notes.jsonl" if output is None else output
        # -O FILE, as scrapy crawl turns it into FEEDS
        feeds = feed_process_params_from_cli(crawl_settings, [], overwrite_output=[str(target)])
        crawl_settings.set("FEEDS", feeds, priority="cmdline")
        crawler = Crawler(NoteSearchSpider, crawl_settings)
        calls = len(sandbox.log)
        try:
            run_crawl(crawler, **spider_args)
        except (ConfigError, SeedFileError) as exc:
            assert len(sandbox.log) == calls, "a call was sent before the refusal"
            return exc
        pytest.fail(f"the crawl started: {len(sandbox.log) - calls} calls sent")

    return run


# --- the spider's arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", "has no keywords"),
        (b"# only a comment\n\n   \n", "has no keywords"),
        (b"\xff\xfe\x00bad", "is not UTF-8"),
    ],
)
def test_an_unusable_keyword_file_is_refused(start, tmp_path, content, message):
    seed = tmp_path / "keywords.txt"
    if content is not None:
        seed.write_bytes(content)
    exc = start(keywords=str(seed))
    assert isinstance(exc, SeedFileError)
    assert message in str(exc) and str(seed) in str(exc)


def test_no_keywords_asks_for_them_and_says_who_may_run_without(start):
    exc = start()
    assert str(exc) == NO_KEYWORDS
    assert "-a keywords=PATH" in str(exc) and "only a worker of a distributed crawl" in str(exc)


def test_a_bad_filter_value_lists_the_valid_ones(start, seeds):
    exc = start(keywords=str(seeds), sort="newest")
    assert "sort='newest' is not a valid value" in str(exc)
    assert "time_descending" in str(exc) and "latest" in str(exc)


def test_a_mistyped_argument_is_an_error_not_an_unfiltered_crawl(start):
    exc = start(keyword="小米", note_types="video")
    assert "unknown spider argument -a note_types=...; the arguments are: keywords, keyword, sort, note_type" in str(
        exc
    )


def test_since_last_needs_a_job_folder(start, seeds):
    exc = start(keywords=str(seeds), since="last")
    assert str(exc) == SINCE_LAST_NEEDS_JOB
    assert "-a since=last needs -s JUSTONEAPI_JOB_DIR=DIR" in str(exc)


def dry_run(argv: list[str], settings: dict[str, Any] | None = None) -> int:
    """``scrapy crawl note_search ARGV... --dry-run`` in this process: its exit status."""
    command = CrawlCommand()
    command.settings = project_settings(settings or {})
    command.crawler_process = AsyncCrawlerRunner(command.settings)  # its spider loader: a dry run crawls nothing
    parser = argparse.ArgumentParser()
    command.add_options(parser)
    opts, args = parser.parse_known_args(["note_search", *argv, "--dry-run"])
    command.process_options(args, opts)
    command.run(args, opts)
    return command.exitcode


def test_a_dry_run_with_since_last_needs_a_job_folder(environment, seeds, capsys):
    """``scrapy crawl note_search --dry-run -a since=last`` without a job folder: exit status 2."""
    assert dry_run(["-a", f"keywords={seeds}", "-a", "since=last"]) == 2
    assert f"error: {SINCE_LAST_NEEDS_JOB}" in capsys.readouterr().err


def test_a_dry_run_says_which_output_folder_the_real_run_would_create(environment, seeds, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "x.jsonl"
    feeds = {str(out): {"format": "jsonlines"}}
    assert dry_run(["-a", f"keywords={seeds}"], {"FEEDS": feeds, "JUSTONEAPI_STATE_DIR": str(tmp_path / "s")}) == 0
    assert f"the output x.jsonl goes into {out.parent}, a folder the real run creates" in capsys.readouterr().out
    assert not (tmp_path / "no").exists()


def test_a_dry_run_refuses_the_token_as_a_setting_as_the_real_run_does(environment, seeds, monkeypatch, capsys):
    token = "tok-only-on-this-dry-run-command-line-2c9e"
    monkeypatch.delenv("JUSTONEAPI_TOKEN")
    assert dry_run(["-a", f"keywords={seeds}"], {"JUSTONEAPI_TOKEN": token}) == 2
    out = capsys.readouterr()
    assert "the token must not be passed with -s JUSTONEAPI_TOKEN" in out.err and token not in out.out + out.err


# --- the token --------------------------------------------------------------------------------


def test_no_token_points_at_the_sandbox(start, monkeypatch):
    monkeypatch.delenv("JUSTONEAPI_TOKEN")
    exc = start(keyword="Nike")
    assert "no API token" in str(exc) and "JUSTONEAPI_SANDBOX=1" in str(exc)


def test_the_token_as_a_spider_argument_is_refused_without_echoing_it(start, caplog):
    caplog.set_level(logging.DEBUG)
    exc = start(keyword="Nike", token="leaked-token-value")
    assert "must not be a spider argument" in str(exc)
    assert "leaked-token-value" not in str(exc) + caplog.text


def test_the_token_as_a_setting_is_refused_without_echoing_it(start, monkeypatch, caplog):
    # A token no other test uses: the log's masking (installed once a crawl starts, for the
    # whole process) cannot hide an echo of it.
    token = "tok-only-on-this-command-line-7f3a"
    monkeypatch.delenv("JUSTONEAPI_TOKEN")
    caplog.set_level(logging.DEBUG)
    exc = start({"JUSTONEAPI_TOKEN": token, "LOG_LEVEL": "DEBUG"}, keyword="Nike")
    assert "the token must not be passed with -s JUSTONEAPI_TOKEN" in str(exc)
    assert token not in str(exc) + caplog.text


# --- the output -------------------------------------------------------------------------------


def test_an_unwritable_output_file_is_refused(start, tmp_path):
    (tmp_path / "a-file").write_text("")
    exc = start(output=tmp_path / "a-file" / "notes.jsonl", keyword="小米")
    assert "cannot write the output file" in str(exc)


def test_an_output_path_that_is_a_folder_is_refused(start, tmp_path):
    (tmp_path / "notes.jsonl").mkdir()
    exc = start(output=tmp_path / "notes.jsonl", keyword="小米")
    assert "it is a folder" in str(exc)


# --- the job folder ---------------------------------------------------------------------------


def test_a_job_folder_in_use_is_refused_and_the_output_kept(start, seeds, tmp_path):
    job = tmp_path / "job"
    holder = JobFolder.take(job)  # the test holds the job folder, as a crawl running alongside would
    assert holder is not None
    output = tmp_path / "notes.jsonl"
    before = b'{"note_id": "from-before"}\n{"note_id": "also-before"}\n'
    output.write_bytes(before)
    try:
        exc = start({"JUSTONEAPI_JOB_DIR": str(job)}, output=output, keywords=str(seeds))
    finally:
        holder.close()
    assert "is in use by another crawl" in str(exc)
    assert output.read_bytes() == before, "-O emptied the output of a run that never started"


def test_a_resumed_crawl_with_other_keywords_is_refused(start, sandbox, tmp_path):
    job = tmp_path / "job"
    # A first run, of 海信, stops at its budget: its crawl stays open.
    first = {"JUSTONEAPI_JOB_DIR": str(job), "JUSTONEAPI_MAX_REQUESTS": "1", "JUSTONEAPI_STATE_DIR": str(tmp_path)}
    crawler = Crawler(NoteSearchSpider, project_settings(first))
    run_crawl(crawler, keyword="海信")
    assert crawler.stats.get_value("finish_reason") == "justoneapi_budget_spent" and len(sandbox.log) == 1
    exc = start({"JUSTONEAPI_JOB_DIR": str(job)}, keyword="Nike")
    assert "was started with other keywords or filters" in str(exc)


# --- distributed --------------------------------------------------------------------------------


def test_an_unreachable_redis_is_refused(start, seeds):
    exc = start({"REDIS_URL": "redis://127.0.0.1:9/0"}, keywords=str(seeds))
    assert "cannot reach Redis at REDIS_URL='redis://127.0.0.1:9/0'" in str(exc)


def test_a_job_folder_and_redis_do_not_go_together(start, seeds, tmp_path):
    exc = start(
        {"REDIS_URL": "redis://127.0.0.1:9/0", "JUSTONEAPI_JOB_DIR": str(tmp_path / "job")}, keywords=str(seeds)
    )
    assert "JUSTONEAPI_JOB_DIR and REDIS_URL do not go together" in str(exc)


def test_a_crawl_runs_no_server_that_executes_code():
    """Scrapy's telnet console and remote control run code sent to them inside the process that holds
    the token: a crawl lists neither (Scrapy imports every listed component, even a disabled one)."""
    listed = project_settings({}).getwithbase("EXTENSIONS")
    names = {name if isinstance(name, str) else name.__name__ for name in listed}
    assert "scrapy.extensions.corestats.CoreStats" in names, "the project keeps Scrapy's other extensions"
    assert not {name.rsplit(".", 1)[-1] for name in names} & {"TelnetConsole", "RemoteControl"}


def test_a_local_crawl_does_not_import_what_only_other_commands_need(sandbox, tmp_path):
    """Scrapy imports every command's module, and every listed component, for each `scrapy crawl`:
    redis, requests and aiohttp cost 0.3 s of a start that only a distributed crawl, `scrapy probe`
    or the sandbox needs (a crawl of one page took 1.65 s of CPU with them, 1.13 s without)."""
    heavy = ("redis", "requests", "aiohttp", "twisted.conch")
    code = (
        "import atexit, sys; from scrapy.cmdline import execute; "
        f"atexit.register(lambda: print(sorted(m for m in {heavy!r} if m in sys.modules))); "
        f"execute(['scrapy', 'crawl', 'note_search', '-a', 'keyword=海信', '-O', {str(tmp_path / 'o.jsonl')!r}, "
        f"'-s', 'JUSTONEAPI_MAX_PAGES=1', '-s', 'JUSTONEAPI_STATE_DIR={tmp_path}'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUSTONEAPI_") and k != "REDIS_URL"}
    env |= {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BASE_URL": sandbox.url}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert sandbox.paid_pages(), "the crawl called the API"
    assert run.stdout.strip() == "[]", run.stdout
