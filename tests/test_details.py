"""The opt-in note detail call (issue 23): which notes, one machine for both calls, paid once and
lost never, the merged item, the cost said before and after, the sandbox against the real answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import orjson
import pytest

from rednote_crawl import api
from rednote_crawl.config import ConfigError, SearchArgs
from rednote_crawl.sandbox.corpus import Corpus
from rednote_crawl.schema import note_schema
from rednote_crawl.state.jobfolder import JobFolder
from tests.conftest import expected_ids

REAL = Path(__file__).parent / "data" / "real"
DETAIL_FIXTURES = sorted((REAL / "detail").glob("note-detail-*.json"))


def real_detail(name: str) -> dict:
    return json.loads((REAL / "detail" / name).read_text(encoding="utf-8"))


# --- 1. Which notes ----------------------------------------------------------------------------


def test_the_details_argument_takes_a_mode_and_update():
    assert (SearchArgs.parse(keyword="a").details, SearchArgs.parse(keyword="a").details_update) == ("none", False)
    args = SearchArgs.parse(keyword="a", details="cut,update")
    assert (args.details, args.details_update) == ("cut", True)
    with pytest.raises(ConfigError, match="details=all"):
        SearchArgs.parse(keyword="a", details="all")


def test_which_new_notes_get_a_detail_call():
    cut, brand = {"desc_truncated": True, "brand_partnership": False}, {"desc_truncated": False, "brand_partnership": True}
    assert [api.wants_details(m, cut) for m in api.DETAILS_MODES] == [False, True, True, False]
    assert [api.wants_details(m, brand) for m in api.DETAILS_MODES] == [False, True, False, True]


# --- 2. One machine for both calls: the policy's table, one difference -------------------------


def envelope(code: int, data: object = None) -> bytes:
    return orjson.dumps({"code": code, "message": None, "data": data})


@pytest.mark.parametrize("code", [101, 202, 300, 400, 404, 602])
def test_codes_of_one_note_end_that_detail_call_not_the_crawl(code):
    assert api.judge(200, envelope(code), api.DETAIL).action is api.Action.NOTE_GONE
    assert api.judge(200, envelope(code), api.SEARCH).action is not api.Action.NOTE_GONE


@pytest.mark.parametrize(
    ("code", "action"),
    [(100, api.Action.STOP), (601, api.Action.STOP), (303, api.Action.STOP), (302, api.Action.SLOW_DOWN), (301, api.Action.RETRY), (500, api.Action.RETRY)],
)
def test_detail_answers_share_the_search_table(code, action):
    assert api.judge(200, envelope(code), api.DETAIL).action is action


def test_a_code_0_answer_without_the_note_is_a_note_gone():
    assert api.judge(200, envelope(0, []), api.DETAIL).action is api.Action.NOTE_GONE
    assert api.judge(200, envelope(0, [{"note_list": []}]), api.DETAIL).action is api.Action.NOTE_GONE


# --- 4 and 6. The item, against every real answer found ----------------------------------------


def test_there_are_real_detail_answers():
    assert len(DETAIL_FIXTURES) >= 2


@pytest.mark.parametrize("path", DETAIL_FIXTURES, ids=lambda p: p.name)
def test_the_detail_mapping_reads_every_real_answer(path):
    envelope_ = json.loads(path.read_text(encoding="utf-8"))
    answer = api.judge(200, path.read_bytes(), api.DETAIL)
    assert answer.action is api.Action.PARSE
    note = api.detail_note(envelope_)
    assert note is not None and api._NOTE_ID.fullmatch(note["id"])
    fields = api.detail_fields(note)
    assert fields["desc"] == note["desc"] and fields["desc_truncated"] is False
    topics = [tag["name"] for tag in note["hash_tag"]]
    assert topics and fields["hashtags"][: len(topics)] == topics  # every topic, in the answer's order
    assert fields["ip_location"] == note["ip_location"]
    assert fields["shared_count"] == note["shared_count"]
    assert fields["images_original"] and all(
        i["url"].startswith("http") and "sc=V_ORG" in i["url"] and i["width"] > 0 and i["height"] > 0
        for i in fields["images_original"]
    )


def test_a_search_item_merged_with_a_real_detail_keeps_its_search_fields_and_fits_the_schema():
    page = json.loads((REAL / "search-note-v2-008e887e.json").read_text(encoding="utf-8"))
    [(rank, note), *_] = api.page_outcome(page, page=1, rank_offset=0, max_pages=20, since=None, sort="general").notes
    item = api.note_item(note, query=api.Query("k"), note_time_sent=None, page=1, rank=rank, fetched_at="t")
    assert item["video_url"] is None or item["video_url"].startswith("http")
    merged = api.merge_details(dict(item), api.detail_note(real_detail("note-detail-v1-008e887e.json")), "fetched")
    jsonschema.Draft202012Validator(note_schema()).validate(merged)
    assert (merged["keyword"], merged["page"], merged["rank"], merged["video_url"]) == ("k", 1, rank, item["video_url"])
    without = api.merge_details(dict(item), None, api.Details.FAILED.value)
    jsonschema.Draft202012Validator(note_schema()).validate(without)
    assert without["details"] == "failed" and without["desc"] == item["desc"] and without["images_original"] == []


def test_the_video_url_comes_from_the_search_answer():
    page = json.loads((REAL / "search-note-v2-c964c310.json").read_text(encoding="utf-8"))
    notes = [n for _, n in api.page_outcome(page, page=1, rank_offset=0, max_pages=20, since=None, sort="general").notes]
    with_stream = [n for n in notes if (n.get("video_info_v2") or {}).get("media", {}).get("stream")]
    assert with_stream
    for note in with_stream:
        url = api._video_url(note)
        assert url and url.startswith("http") and ".mp4" in url
    assert all(api._video_url(n) is None for n in notes if n.get("type") == "normal")


def test_the_v1_answer_maps_to_the_documented_fields():
    note = api.detail_note(real_detail("note-detail-v1-008e887e.json"))
    assert note is not None
    fields = api.detail_fields(note)
    assert fields["ip_location"] == "中国香港"
    assert "國際邁亞密對香港隊" in fields["hashtags"]  # written in the text, not in hash_tag
    assert fields["hashtags"][:3] == ["唐诗咏", "美斯訪港", "美斯"]
    assert fields["edited_at"] == "2024-02-09T02:58:20Z"
    assert fields["images_original"][0]["width"] == 1080 and fields["images_original"][0]["height"] == 1440


def test_the_sandbox_answers_in_the_shape_of_the_real_answer():
    corpus = Corpus()
    keys = corpus.result_keys("耳机", "general", "_0", "any")
    search_note = corpus.note(keys[0])
    sandbox = {"code": 0, "data": orjson.loads(corpus.detail_data(search_note["id"]))}
    real = real_detail("note-detail-v1-008e887e.json")
    wrapper, real_wrapper = sandbox["data"][0], real["data"][0]
    assert set(wrapper) <= set(real_wrapper)
    note, real_note = wrapper["note_list"][0], real_wrapper["note_list"][0]
    assert set(note) <= set(real_note), set(note) - set(real_note)
    assert set(note["images_list"][0]) <= set(real_note["images_list"][0])
    assert set(note["hash_tag"][0]) <= set(real_note["hash_tag"][0]) if note["hash_tag"] else True
    fields = api.detail_fields(api.detail_note(sandbox))
    assert fields["desc"].startswith(search_note["desc"][:20].split("#")[0])
    assert corpus.detail_data("0" * 24) is None


# --- 3, 4, 5. Crawls ---------------------------------------------------------------------------


def detail_log(sandbox):
    return [e for e in sandbox.log if e.get("kind") == "detail"]


def test_details_none_costs_what_it_cost(sandbox, crawl):
    result = crawl(sandbox, keywords=["华为"])
    assert result.returncode == 0 and not detail_log(sandbox)
    assert all("details" not in item for item in result.items)
    assert "details:" not in result.log


def test_details_new_merges_every_new_note_whole_once(sandbox, crawl):
    result = crawl(sandbox, "-a", "details=new", keywords=["华为", "小米"])
    assert result.returncode == 0, result.log[-3000:]
    ids = result.note_ids()
    assert sorted(ids) == sorted(expected_ids(["华为", "小米"]))  # each note once, none lost
    assert sorted(sandbox.paid_details()) == sorted(ids)  # one paid detail call per new note, no more
    validator = jsonschema.Draft202012Validator(note_schema())
    for item in result.items:
        validator.validate(item)  # the output's schema holds the detail fields
        assert item["details"] == "fetched" and item["desc_truncated"] is False
        assert item["ip_location"] and item["images_original"]
        assert item["keyword"] in ("华为", "小米") and item["page"] >= 1 and item["rank"] >= 1
    search_calls = len(sandbox.log) - len(detail_log(sandbox))
    assert f"{len(ids)} detail calls of the {len(sandbox.log)} calls sent ({search_calls} for search pages)" in result.log
    assert f"{len(sandbox.log) / len(ids):.2f} calls per new note" in result.log


def test_details_cut_asks_only_for_cut_previews(sandbox, crawl):
    result = crawl(sandbox, "-a", "details=cut", keywords=["华为"])
    assert result.returncode == 0
    cut = {i["note_id"] for i in result.items if i["details"] == "fetched"}
    assert cut and sorted(cut) == sorted(sandbox.paid_details())
    not_asked = [i for i in result.items if i["details"] == "not_asked"]
    assert not_asked and all(not i["desc_truncated"] and i["ip_location"] is None for i in not_asked)


def test_a_detail_call_that_fails_never_loses_its_note(sandbox_factory, crawl):
    sandbox = sandbox_factory(faults=["html502@detail"])
    result = crawl(sandbox, "-a", "details=new", keywords=["华为"], settings={"JUSTONEAPI_RETRY_TIMES": "1"})
    assert result.returncode == 0, result.log[-2000:]
    assert sorted(result.note_ids()) == sorted(expected_ids(["华为"]))
    assert {i["details"] for i in result.items} == {"failed"}
    assert all(i["desc_truncated"] in (True, False) and i["images_original"] == [] for i in result.items)
    assert len(detail_log(sandbox)) == 2 * len(result.items)  # one try and one retry each


def test_a_gone_note_ends_its_call_not_the_crawl(sandbox_factory, crawl):
    sandbox = sandbox_factory(faults=["404:0.3@detail"])
    result = crawl(sandbox, "-a", "details=new", keywords=["华为"])
    assert result.returncode == 0
    statuses = [i["details"] for i in result.items]
    assert "note_gone" in statuses and "fetched" in statuses
    gone = [e for e in detail_log(sandbox) if e.get("code") == 404]
    assert len(gone) == statuses.count("note_gone")  # not retried


def test_a_fatal_code_on_a_detail_call_stops_the_crawl(sandbox_factory, crawl):
    sandbox = sandbox_factory(faults=["601@detail"])
    result = crawl(sandbox, "-a", "details=new", keywords=["华为", "小米"])
    assert result.returncode != 0 and "601" in result.log
    assert len([e for e in detail_log(sandbox) if e.get("code") == 601]) <= 16  # at most those in flight
    # Without a job folder nothing can hold a note for a later run: every new note still goes out, saying why
    new = int(re.search(r"(\d+) new, ", result.log).group(1))
    assert len(result.items) == new > 0
    assert {i["details"] for i in result.items} <= {"not_sent", "failed"}


def test_notes_earlier_crawls_found_get_details_only_when_asked(sandbox, crawl, tmp_path):
    settings = {"JUSTONEAPI_JOB_DIR": str(tmp_path / "job"), "JUSTONEAPI_SEEN_NOTES": "update"}
    first = crawl(sandbox, "-a", "details=new", keywords=["华为"], settings=settings)
    paid = len(sandbox.paid_details())
    assert first.returncode == 0 and paid == len(first.items)
    second = crawl(sandbox, "-a", "details=new", keywords=["华为"], settings=settings)  # the next day
    assert second.returncode == 0 and len(second.items) == len(first.items)  # written again (update)
    assert {i["details"] for i in second.items} == {"not_asked"} and len(sandbox.paid_details()) == paid
    third = crawl(sandbox, "-a", "details=new", keywords=["华为"], settings={**settings, "JUSTONEAPI_DETAILS_UPDATE": "1"})
    assert {i["details"] for i in third.items} == {"fetched"} and len(sandbox.paid_details()) == 2 * paid


def test_the_budget_covers_both_kinds(sandbox, crawl):
    result = crawl(sandbox, "-a", "details=new", keywords=["华为"], settings={"JUSTONEAPI_MAX_REQUESTS": "8"})
    assert len(sandbox.log) <= 8 and detail_log(sandbox)
    assert result.returncode != 0


def test_the_token_is_in_no_detail_url_log_or_output(sandbox, crawl):
    result = crawl(sandbox, "-a", "details=new", keywords=["华为"], settings={"LOG_LEVEL": "DEBUG"})
    assert "get-note-detail/v1?noteId=" in result.log
    from tests.conftest import TOKEN

    assert TOKEN not in result.log and TOKEN.encode() not in result.output


def test_a_resumed_job_pays_each_detail_once_and_delivers_held_notes(sandbox, crawl, tmp_path):
    job = tmp_path / "job"
    settings = {"JUSTONEAPI_JOB_DIR": str(job), "JUSTONEAPI_MAX_REQUESTS": "6"}
    first = crawl(sandbox, "-a", "details=new", keywords=["华为"], settings=settings, output=False)
    assert first.returncode != 0  # the budget stopped it, with notes held for their details
    assert "held for the next run" in first.log and " 0 held for the next run" not in first.log
    output = job / "crawl-0001.jsonl"
    after_first = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    paid_first = sandbox.paid_details()
    assert len(after_first) == len(paid_first) > 0  # only the notes whose details came went out
    del settings["JUSTONEAPI_MAX_REQUESTS"]
    second = crawl(sandbox, "-a", "details=new", keywords=["华为"], settings=settings, output=False)
    assert second.returncode == 0, second.log[-2000:]
    items = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    written = [i["note_id"] for i in items]
    assert sorted(written) == sorted(expected_ids(["华为"]))  # every note once across the two runs
    assert sorted(sandbox.paid_details()) == sorted(set(sandbox.paid_details()))  # no detail paid twice
    assert len(sandbox.paid_details()) == len(written)
    assert all(i["details"] == "fetched" for i in items)
    reader = JobFolder.read(job)
    try:
        assert reader.db.execute("SELECT COUNT(*) FROM details WHERE status = 'fetched'").fetchone()[0] == len(written)
    finally:
        reader.close()


# --- 2. The handler signs detail calls too, and only to the configured API -----------------------


def test_the_handler_signs_detail_calls_to_the_configured_api_only():
    import asyncio

    from scrapy import Request

    from rednote_crawl.downloader.handler import TokenAuthDownloadHandler, UnsignedCall
    from rednote_crawl.names import Meta
    from rednote_crawl.search import DetailCall
    from tests.test_components import TOKEN, RecordingHandler, make_crawler

    def detail(url: str) -> Request:
        return Request(url, meta={Meta.CALL: DetailCall("65bf5360000000002c03f684")})

    async def scenario():
        inner = RecordingHandler()
        handler = TokenAuthDownloadHandler(make_crawler(), inner)
        await handler.download_request(detail(api.detail_url(api.DEFAULT_BASE_URL, "65bf5360000000002c03f684")))
        with pytest.raises(UnsignedCall, match=r"elsewhere\.example"):
            await handler.download_request(detail("https://elsewhere.example/api/xiaohongshu/get-note-detail/v1?noteId=1"))
        with pytest.raises(UnsignedCall):  # another path of the API: not a call this crawl pays for
            await handler.download_request(detail(api.DEFAULT_BASE_URL + "/api/xiaohongshu/get-note-detail/v7?noteId=1"))
        return inner.urls

    [url] = asyncio.run(scenario())
    assert url == f"{api.DEFAULT_BASE_URL}/api/xiaohongshu/get-note-detail/v1?noteId=65bf5360000000002c03f684&token={TOKEN}"


def test_a_detail_call_round_trips_as_json():
    from rednote_crawl.search import DetailCall

    call = DetailCall("65bf5360000000002c03f684")
    assert DetailCall.from_json(json.loads(json.dumps(call.to_json()))) == call


def test_details_are_taken_in_a_distributed_crawl_and_travel_with_the_search_call():
    from scrapy.settings import Settings

    from rednote_crawl.config import ApiConfig
    from rednote_crawl.search import SearchCall

    config = ApiConfig.from_settings(Settings({"JUSTONEAPI_TOKEN": "t", "REDIS_URL": "redis://localhost:1"}), environ={})
    assert SearchArgs.parse(keyword="a", details="new").check(config) == 1
    call = SearchCall(api.Query("a", "general", "_0", "any"), 2, 20, 5, None, "cut")
    assert SearchCall.from_json(json.loads(json.dumps(call.to_json()))) == call  # a worker without -a details= holds
    plain = SearchCall(api.Query("a", "general", "_0", "any"), 1, 0, 5)
    assert len(plain.to_json()) == 5 and SearchCall.from_json(plain.to_json()).details == "none"  # earlier requests


# --- 5. Cost, said before and after ------------------------------------------------------------


def test_the_dry_run_gives_the_worst_case_with_details(tmp_path):
    from tests.conftest import scrapy_in_process

    env = {"JUSTONEAPI_TOKEN": "t"}
    base = ("crawl", "note_search", "-a", "keyword=a,b", "-a", "max_pages=3", "--dry-run", "-s", "JUSTONEAPI_MAX_REQUESTS=50")
    plain = scrapy_in_process(*base, env=env)
    assert plain.returncode == 0 and "detail" not in plain.stdout
    result = scrapy_in_process(*base, "-a", "details=new", env=env)
    assert result.returncode == 0, result.stderr
    assert "at most 6 paid pages" in result.stdout
    assert "at most 120 detail calls more (one per new note at most" in result.stdout
    assert "at most 126 calls in all" in result.stdout
    assert "(search pages and detail calls together)" in result.stdout


def test_the_report_counts_detail_calls_apart(sandbox, crawl, tmp_path):
    from tests.conftest import scrapy_in_process

    job = tmp_path / "job"
    sandbox.config.faults.append(__import__("rednote_crawl.sandbox.server", fromlist=["Fault"]).Fault.parse("404:0.2@detail"))
    result = crawl(sandbox, "-a", "details=new", keywords=["华为"], settings={"JUSTONEAPI_JOB_DIR": str(job)}, output=False)
    assert result.returncode == 0
    gone = len([e for e in sandbox.log if e.get("kind") == "detail" and e.get("code") == 404])
    fetched = len(sandbox.paid_details())
    search = len([e for e in sandbox.log if e.get("kind") != "detail"])
    report = scrapy_in_process("report", str(job), env={})
    assert report.returncode == 0, report.stderr
    text = report.stdout + report.stderr
    assert f"detail calls: {fetched + gone} notes' detail calls ended ({fetched} fetched, {gone} note gone), {search} calls for search pages" in text
    assert f"calls: {len(sandbox.log)} for {search} paid pages" in text  # calls per new note count both kinds


# --- 3. kill -9 pays again only the detail calls in flight; the resumed run completes them ------------


def test_kill_9_with_details_then_resume(sandbox_factory, tmp_path):
    import signal
    from collections import Counter

    from tests.test_resume import command, kill_when, output_ids, run

    server = sandbox_factory(latency=0.03)
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("华为\n小米\n", encoding="utf-8")
    job, output = tmp_path / "job", tmp_path / "notes.jsonl"
    cmd = command(seeds, job, output, "-a", "details=new")
    ready = lambda: len(server.paid_details()) >= 40  # noqa: E731 - in the middle of the detail calls
    assert kill_when(cmd, server, ready) == -signal.SIGKILL
    server.config.latency = 0
    result = run(cmd, server)
    assert result.returncode == 0, result.stderr[-2000:]
    ids = output_ids(output)
    assert sorted(ids) == sorted(expected_ids(["华为", "小米"]))  # each note once, none lost
    items = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert all(item["details"] == "fetched" for item in items)
    repaid = Counter(server.paid_details())
    assert set(repaid) == set(ids)
    assert sum(n - 1 for n in repaid.values()) <= 4, "only the detail calls in flight at the kill"  # CONCURRENCY
