"""End-to-end: `scrapy crawl note_search` against the sandbox over loopback, in the test process (the
command line on the process's reactor, conftest.py) but for what only a process shows."""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote

import orjson
import pytest

from rednote_crawl import api
from rednote_crawl.sandbox.corpus import Corpus
from tests.conftest import ROOT, TOKEN, expected_ids, paid_twice

pytestmark = pytest.mark.crawl

CORPUS = Corpus()
KEYWORDS = ["小米", "华为", "元气森林"]  # 15 pages; each pair shares notes through the corpus's shared pool


def test_full_crawl_writes_every_note_once(sandbox, crawl):
    result = crawl(sandbox, keywords=KEYWORDS)
    assert result.returncode == 0, result.log
    ids = result.note_ids()
    assert len(ids) == len(set(ids)), "a note was exported twice"
    assert set(ids) == expected_ids(KEYWORDS)
    assert not paid_twice(sandbox)
    # Every query went up to its first empty page and not beyond.
    for keyword in KEYWORDS:
        pages = [int(e["page"]) for e in sandbox.log if e["keyword"] == keyword]
        layout = CORPUS.layout(keyword, "general", "_0", "any")
        assert sorted(pages) == list(range(1, len(layout) + 1))
    assert "Summary of note_search: finished, exit status 0" in result.log
    assert f": {len(ids)} new, " in result.log


def test_output_lines_have_the_documented_fields(sandbox, crawl):
    result = crawl(sandbox, keywords=["Nike"])
    assert result.returncode == 0, result.log
    assert all(line.startswith(b"{") and line.endswith(b"}") for line in result.lines)
    required = set(api.SEARCH_FIELDS)
    for item in result.items:
        assert required <= item.keys()
        assert "raw" not in item
        assert (
            item["url"]
            == f"https://www.xiaohongshu.com/explore/{item['note_id']}?xsec_token={quote(item['xsec_token'], safe='')}"
        )
        assert item["published_at"].endswith("Z")
        assert item["keyword"] == "Nike"
        assert item["search"] == {
            "sort": "general", "sort_name": "general", "note_type": "_0", "note_type_name": "all",
            "note_time": None, "note_time_name": "any",
        }
    ranks = [(item["page"], item["rank"]) for item in result.items]
    assert [r for _, r in sorted(ranks)][:3] == [1, 2, 3]


def test_notes_found_under_several_keywords_are_exported_once_with_the_first_keyword(sandbox, crawl):
    result = crawl(sandbox, keywords=KEYWORDS, settings={"CONCURRENT_REQUESTS": "1"})
    shared = set(CORPUS.expected_note_ids("小米")) & set(CORPUS.expected_note_ids("华为"))
    assert shared, "the corpus must share notes between these keywords"
    by_id = {item["note_id"]: item for item in result.items}
    assert len(by_id) == len(result.items)
    assert "repeated in this crawl" in result.log
    # With one request at a time, the first page (in the sandbox's log) that held a note names its keyword.
    first_keyword: dict[str, str] = {}
    for entry in sandbox.log:
        slots = CORPUS.layout(entry["keyword"], "general", "_0", "any")[int(entry["page"]) - 1]
        for slot in slots:
            if slot.model_type == "note":
                first_keyword.setdefault(CORPUS.note(slot.key)["id"], entry["keyword"])
    assert {i: by_id[i]["keyword"] for i in shared} == {i: first_keyword[i] for i in shared}


def test_raw_setting_adds_the_untouched_api_note(sandbox, crawl):
    result = crawl(sandbox, keywords=["小米"], settings={"JUSTONEAPI_KEEP_RAW": "1"})
    assert result.items and all(item["raw"]["id"] == item["note_id"] for item in result.items)


def test_max_pages_guards_the_depth_of_a_query(sandbox, crawl):
    result = crawl(sandbox, "-a", "max_pages=2", keywords=["Nike"])
    assert result.returncode == 0, result.log
    assert sorted(int(e["page"]) for e in sandbox.log) == [1, 2]
    assert {item["page"] for item in result.items} == {1, 2}


def test_every_filter_combination_is_crawled(sandbox, crawl):
    result = crawl(
        sandbox, "-a", "sort=general,latest", "-a", "note_type=video", "-a", "note_time=week,any", keywords=["小米"]
    )
    assert result.returncode == 0, result.log
    combos = {(e["sort"], e["noteType"], e["noteTime"]) for e in sandbox.log}
    assert combos == {
        ("general", "_1", "ONE_WEEK"),
        ("general", "_1", None),
        ("time_descending", "_1", "ONE_WEEK"),
        ("time_descending", "_1", None),
    }
    assert {item["type"] for item in result.items} == {"video"}
    # A note found by both time filters is exported once, under whichever query found it first.
    assert result.items and {item["search"]["note_time"] for item in result.items} <= {"ONE_WEEK", None}


def test_note_time_style_setting_switches_the_wire_form(sandbox, crawl):
    result = crawl(
        sandbox, "-a", "note_time=day", keywords=["小米"], settings={"JUSTONEAPI_NOTE_TIME_STYLE": "chinese"}
    )
    assert result.returncode == 0, result.log
    assert {e["noteTime"] for e in sandbox.log} == {"一天内"}


# --- keyword files ------------------------------------------------------------------


def test_keywords_reach_the_api_exactly_as_written(sandbox, crawl, tmp_path):
    keywords = ["Estée Lauder", "AT&T", "C++ 教程", "100% 纯棉", "why?", "L'Oréal", "a+b=c", "tag #1"]
    seed = tmp_path / "seeds.txt"
    text = "\ufeff# brands\r\n\r\n" + "\r\n".join(f"  {k}  " for k in keywords) + "\r\n" + keywords[0] + "\r\n"
    seed.write_bytes(text.encode("utf-8"))
    result = crawl(sandbox, "-a", "max_pages=1", keywords=str(seed))
    assert result.returncode == 0, result.log
    sent = [e["keyword"] for e in sandbox.log]
    assert sorted(sent) == sorted(keywords), "each keyword once, trimmed, byte for byte"


# --- start-up refusals: tests/test_startup.py checks each one in-process; these two go through the
# command line: exit status 2, one "Cannot start:" line, no traceback. Both are refused at the same
# point (the start-up extension, as the crawler is built): the bad setting in a subprocess, for what only
# a process shows (Scrapy's own crawler process ends after the refused start, the interpreter exits 2),
# the bad keyword file in this process.


def test_a_bad_keyword_file_stops_the_command_before_any_request(sandbox, crawl, tmp_path):
    seed = tmp_path / "seeds.txt"
    seed.write_bytes(b"\xff\xfe\x00bad")
    result = crawl(sandbox, keywords=str(seed))
    assert result.returncode == 2, result.log
    assert f"Cannot start: keyword file {str(seed)!r}" in result.log and "is not UTF-8" in result.log
    assert "Traceback" not in result.log
    assert not sandbox.log


def test_a_bad_setting_stops_the_command_and_names_the_setting(sandbox, crawl):
    result = crawl(sandbox, keywords=["Nike"], settings={"JUSTONEAPI_TIMEOUT": "soon"}, subprocess=True)
    assert result.returncode == 2, result.log
    assert "Cannot start: JUSTONEAPI_TIMEOUT='soon'" in result.log
    assert "Traceback" not in result.log
    assert not sandbox.log


# --- the policy table, row by row -----------------------------------------------------


@pytest.mark.parametrize("fault", ["301", "500", "503", "602", "html502", "html200", "cut", "reset"])
def test_transient_answers_are_retried_until_the_page_is_paid_once(sandbox_factory, crawl, fault):
    server = sandbox_factory(faults=[f"{fault}@小米#2x2"])  # page 2 fails twice, then answers
    result = crawl(server, keywords=["小米"])
    assert result.returncode == 0, result.log
    assert set(result.note_ids()) == expected_ids(["小米"])
    page2 = [e for e in server.log if e["page"] == "2"]
    assert len(page2) == 3
    # A cut-off body was paid for like a whole one: the only case where a page is paid again.
    assert paid_twice(server) == ({("小米", "general", "_0", None, "2"): 3} if fault == "cut" else {})
    assert "retries:  2, " in result.log
    # The report's calls per keyword count every call, retries included (no job folder needed).
    head, row = next(
        (lines[i - 1].split(), line.split())
        for lines in [result.log.splitlines()]
        for i, line in enumerate(lines)
        if line.startswith("  小米 ")
    )
    assert head[5:] == ["calls", "calls/new"] and int(row[5]) == len(server.log), (head, row)


def test_a_timeout_is_retried(sandbox_factory, crawl):
    # The client gives up after 1 s (the least JUSTONEAPI_TIMEOUT); the page is answered after 1.5 s
    # (stopping the sandbox waits for it).
    server = sandbox_factory(faults=["slow@小米#1x1"], slow_seconds=1.5)
    result = crawl(server, keywords=["小米"], settings={"JUSTONEAPI_TIMEOUT": "1"})
    assert result.returncode == 0, result.log
    assert set(result.note_ids()) == expected_ids(["小米"])
    assert "exception_DownloadTimeoutError=1" in result.log
    # The API finished the page the client gave up on: a timeout can cost a page twice.
    assert paid_twice(server) == {("小米", "general", "_0", None, "1"): 2}
    assert TOKEN not in result.log  # the timeout error names the URL: it must be the unsigned one


def test_a_page_out_of_tries_is_reported_and_the_exit_status_says_incomplete(sandbox_factory, crawl):
    server = sandbox_factory(faults=["301@小米#2"])  # page 2 never answers
    result = crawl(server, keywords=["小米", "Nike"], settings={"JUSTONEAPI_RETRY_TIMES": "2"})
    assert result.returncode == 3, result.log
    assert len([e for e in server.log if e["keyword"] == "小米" and e["page"] == "2"]) == 3
    assert "Page 2 of keyword='小米' sort=general note_type=_0 note_time=any failed" in result.log
    assert "failed pages:" in result.log
    assert "without -s JUSTONEAPI_JOB_DIR=DIR, a new run asks for every page again" in result.log
    assert result.log.count("Page 2 of keyword='小米'") == 1, "one error line per failed page"
    assert set(CORPUS.expected_note_ids("Nike")) <= set(result.note_ids())


def test_rate_limits_slow_down_and_do_not_spend_the_retry_budget(sandbox_factory, crawl):
    # 10 calls/s: the unpaced crawl meets 302s in its first second (15 pages), and ends sooner than at 5.
    server = sandbox_factory(rate_limit=10)
    result = crawl(server, keywords=KEYWORDS, settings={"JUSTONEAPI_RETRY_TIMES": "0", "JUSTONEAPI_MAX_RPS": "0"})
    assert result.returncode == 0, result.log
    assert set(result.note_ids()) == expected_ids(KEYWORDS)
    rate_limited = [e for e in server.log if e.get("code") == 302]
    assert rate_limited, "an unpaced crawl must hit the sandbox's limit"
    assert not paid_twice(server)
    assert "code_302=" in result.log


@pytest.mark.parametrize("status_style", ["mapped", "200"])
def test_invalid_parameters_drop_only_that_query(sandbox_factory, crawl, status_style):
    server = sandbox_factory(faults=["400@Nike#1"], status_style=status_style)
    result = crawl(server, keywords=["Nike", "小米"])
    assert result.returncode == 0, result.log
    assert len([e for e in server.log if e["keyword"] == "Nike"]) == 1, "a 400 is never retried"
    assert "The API rejected query keyword='Nike' sort=general note_type=_0 note_time=any page 1" in result.log
    assert "rejected queries (code 400, not retried):" in result.log
    assert set(result.note_ids()) == expected_ids(["小米"])


MANY = [f"brand {n}" for n in range(30)]


@pytest.mark.parametrize(
    ("code", "reason", "status"),
    [
        (100, "justoneapi_invalid_token", 4),
        (600, "justoneapi_permission_denied", 4),
        (601, "justoneapi_insufficient_balance", 5),
    ],
)
def test_fatal_token_answers_stop_the_crawl_at_once(sandbox_factory, crawl, code, reason, status):
    server = sandbox_factory(token_codes={TOKEN: code}, latency=0.2)
    # Eight requests in the downloader, paced at 4 per second: most wait on the rate limit when
    # the first answer stops the crawl, and none of those may be sent.
    result = crawl(server, keywords=MANY, settings={"CONCURRENT_REQUESTS": "8", "JUSTONEAPI_MAX_RPS": "4"})
    assert result.returncode == status, result.log
    assert f"Summary of note_search: {reason}," in result.log
    assert f"the API answered code {code}" in result.log
    assert len(server.log) <= 2, "only the requests already in flight, of 30 queries"
    assert result.items == []


def paid_note_ids(server) -> set[str]:
    ids = set()
    for keyword, sort, note_type, _note_time, page in server.paid_pages():
        for slot in CORPUS.layout(keyword, sort, note_type, "any")[int(page) - 1]:
            if slot.model_type == "note":
                ids.add(CORPUS.note(slot.key)["id"])
    return ids


def test_quota_exceeded_stops_the_crawl_and_keeps_what_was_paid(sandbox_factory, crawl):
    server = sandbox_factory(quota=5, latency=0.1)
    result = crawl(server, keywords=MANY, settings={"CONCURRENT_REQUESTS": "2"})
    assert result.returncode == 5, result.log
    assert "Summary of note_search: justoneapi_quota_exceeded," in result.log
    assert "run again tomorrow" in result.log and "not finished (the crawl stopped)" in result.log
    assert len(server.paid_pages()) == 5
    assert len(server.log) <= 5 + 2
    assert set(result.note_ids()) == paid_note_ids(server), "every note of the paid pages, and only those"


def test_request_budget_closes_the_crawl_with_a_named_reason(sandbox, crawl):
    result = crawl(sandbox, keywords=KEYWORDS, settings={"JUSTONEAPI_MAX_REQUESTS": "4"})
    assert result.returncode == 6, result.log
    assert "Summary of note_search: justoneapi_budget_spent," in result.log
    assert len(sandbox.log) == 4


# --- the token -------------------------------------------------------------------------


def test_the_token_never_shows_in_logs_or_output(sandbox_factory, crawl):
    server = sandbox_factory(tokens=frozenset({TOKEN}), faults=["html502@Nike#1x1", "reset@Nike#2x1"])
    # The worst case that runs: DEBUG logs, which show every request and response.
    result = crawl(server, keywords=["Nike"], settings={"LOG_LEVEL": "DEBUG"})
    assert result.returncode == 0, result.log
    assert len(result.items) > 0, "the sandbox accepts only this token, so it was sent"
    for form in (TOKEN, quote(TOKEN, safe="")):
        assert form not in result.log
        assert form.encode() not in result.output
    assert "tok-…" in result.log  # at most its first 4 characters
    # On the command line it would show in process lists (and scrapyd's listjobs): refused, not
    # echoed (tests/test_startup.py).


# --- output and the offline demo ---------------------------------------------------------


def test_without_o_the_crawl_writes_the_default_file(sandbox, crawl, tmp_path):
    result = crawl(
        sandbox, keywords=["小米"], output=False, cwd=tmp_path, env={"SCRAPY_SETTINGS_MODULE": "rednote_crawl.settings"}
    )
    assert result.returncode == 0, result.log
    files = list((tmp_path / "output").glob("note_search-*.jsonl"))
    assert len(files) == 1
    assert len(files[0].read_bytes().splitlines()) == len(expected_ids(["小米"]))


def test_the_offline_demo_needs_no_token(crawl):
    result = crawl(
        None,
        "-a",
        "max_pages=1",
        keywords=str(ROOT / "seeds" / "brands.txt"),
        token=None,
        settings={"JUSTONEAPI_SANDBOX": "1"},
    )
    assert result.returncode == 0, result.log
    assert "calling the offline sandbox" in result.log
    assert len(result.items) > 100
    assert Counter(result.note_ids()).most_common(1)[0][1] == 1


def test_a_crawl_runs_offline_on_recorded_cassettes(sandbox_factory, crawl):
    server = sandbox_factory(cassettes=str(ROOT / "tests" / "cassettes"), replay_only=True)
    result = crawl(server, keywords=["小米"])
    assert result.returncode == 0, result.log
    assert server.log and all(entry["replayed"] for entry in server.log), "every answer came from a recording"
    recorded = orjson.loads((ROOT / "tests" / "cassettes" / "full_query.json").read_bytes())["http_interactions"]
    recorded_ids = {
        item["note"]["id"]
        for interaction in recorded
        for item in orjson.loads(interaction["response"]["body"]["string"])["data"]["items"]
        if item["model_type"] == "note"
    }
    assert set(result.note_ids()) == recorded_ids


def test_a_call_without_a_recording_is_not_invented(sandbox_factory, crawl):
    server = sandbox_factory(cassettes=str(ROOT / "tests" / "cassettes"), replay_only=True)
    result = crawl(server, keywords=["never recorded"], settings={"JUSTONEAPI_RETRY_TIMES": "1"})
    assert result.returncode == 3, result.log
    assert [e["code"] for e in server.log] == [404, 404]


def test_a_rejection_after_page_1_keeps_the_notes_already_paid(sandbox_factory, crawl):
    server = sandbox_factory(faults=["400@Nike#2"])
    result = crawl(server, keywords=["Nike"])
    assert result.returncode == 0, result.log
    assert "The API rejected query keyword='Nike' sort=general note_type=_0 note_time=any page 2" in result.log
    assert set(result.note_ids()) == paid_note_ids(server) and result.items
    assert [e["page"] for e in server.log] == ["1", "2"]


def test_a_download_error_that_is_not_retried_fails_the_page(sandbox, crawl):
    result = crawl(sandbox, keywords=["小米"], settings={"DOWNLOAD_MAXSIZE": "3000"})
    assert result.returncode == 3, result.log
    assert "Page 1 of keyword='小米' sort=general note_type=_0 note_time=any failed" in result.log
    assert "1 incomplete" in result.log


def test_a_wrong_base_url_stops_after_a_few_calls(sandbox, crawl):
    result = crawl(
        None,
        keywords=MANY,
        env={"JUSTONEAPI_BASE_URL": sandbox.url + "/wrong/prefix"},
        settings={"CONCURRENT_REQUESTS": "2"},
    )
    assert result.returncode == 7, result.log
    assert "Summary of note_search: justoneapi_unexpected_answers," in result.log
    assert "check JUSTONEAPI_BASE_URL" in result.log


def test_library_warnings_that_quote_the_url_do_not_show_the_token(sandbox, crawl):
    result = crawl(sandbox, keywords=["小米"], settings={"DOWNLOAD_WARNSIZE": "2000"})
    assert result.returncode == 0, result.log
    assert "larger than download warn size" in result.log
    assert TOKEN not in result.log and "token=tok-…" in result.log


def test_progress_is_logged_while_the_crawl_runs(sandbox_factory, crawl):
    # One query's pages, one after the other, at least 0.12 s each (latency 0.15 s +-20%): the crawl
    # outlasts the first progress line, 0.3 s after the spider opens (before its first call), twice over.
    pages = len(CORPUS.layout("小米", "general", "_0", "any"))
    assert pages * 0.12 >= 2 * 0.3
    server = sandbox_factory(latency=0.15)
    result = crawl(server, keywords=["小米"], settings={"LOGSTATS_INTERVAL": "0.3"})
    assert result.returncode == 0, result.log
    assert len(server.log) == pages
    line = next(line for line in result.log.splitlines() if "Progress: " in line)
    assert " queries · " in line and " new notes · " in line and " calls/s · " in line and " retries · " in line


def test_a_feed_that_cannot_be_stored_is_reported_and_the_summary_agrees(sandbox, crawl):
    result = crawl(sandbox, "-O", "/dev/full:jsonl", keywords=["小米"], output=False)
    assert result.returncode == 8, result.log
    assert "exit status 8" in result.log and "  lost:     feedexport/failed_count/" in result.log
    assert "Stopping the crawl after 1 calls: cannot write the output file /dev/full: No space left on device" in (
        result.log
    )
    assert "next: free disk space" in result.log
    assert result.log.rstrip().splitlines()[-1].startswith("  calls:"), "the summary and report come last"


def test_an_upper_case_base_url_still_gets_the_token(sandbox_factory, crawl):
    server = sandbox_factory(tokens=frozenset({TOKEN}))
    result = crawl(None, keywords=["小米"], env={"JUSTONEAPI_BASE_URL": server.url.replace("http://", "HTTP://")})
    assert result.returncode == 0, result.log
    assert set(result.note_ids()) == expected_ids(["小米"])


def test_a_long_keyword_reaches_the_api(sandbox, crawl):
    keyword = "海信洗衣机测评" * 40
    result = crawl(sandbox, keywords=[keyword])
    assert result.returncode == 0, result.log
    assert [e["keyword"] for e in sandbox.log][:1] == [keyword]
