"""The sandbox answers like the real endpoint: real HTTP over loopback."""

from __future__ import annotations

import itertools
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest

from rednote_crawl import api
from rednote_crawl.sandbox import Fault, SandboxConfig, SandboxServer
from rednote_crawl.sandbox.corpus import Corpus

CORPUS = Corpus()
BRANDS = ["海信", "小米", "华为", "蔚来", "Nike", "Adidas", "Apple", "Lululemon", "SK-II", "L'Oréal", "喜茶", "安踏"]


def call(server, **params) -> tuple[int, dict | bytes]:
    query = {"token": "t", "keyword": "Nike", "page": "1", **{k: v for k, v in params.items() if v is not None}}
    url = f"{server.url}{api.SEARCH_PATH}?{urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, body


def test_a_page_has_the_real_envelope(sandbox):
    status, body = call(sandbox)
    assert status == 200
    assert set(body) == {"code", "data", "message", "recordTime", "requestId"}
    assert body["code"] == 0 and isinstance(body["data"]["items"], list)
    note = next(i["note"] for i in body["data"]["items"] if i["model_type"] == "note")
    # The real shape, key path by key path, is checked in test_real_notes.py.
    assert len(note["id"]) == 24 and int(note["id"][:8], 16) == note["timestamp"]  # ids start with the hex publish time
    assert isinstance(note["widgets_context"], str)


@pytest.mark.parametrize(
    "params",
    [{"keyword": ""}, {"page": "0"}, {"page": "x"}, {"sort": "newest"}, {"noteType": "_3"}, {"noteTime": "ONE_YEAR"}],
)
def test_invalid_parameters_answer_400(sandbox, params):
    status, body = call(sandbox, **params)
    assert (status, body["code"]) == (400, 400)


@pytest.mark.parametrize("note_time", ["ONE_DAY", "一天内", "HALF_YEAR", "半年内"])
def test_both_note_time_forms_are_accepted(sandbox, note_time):
    assert call(sandbox, noteTime=note_time)[1]["code"] == 0


def test_tokens(sandbox_factory):
    server = sandbox_factory(tokens=frozenset({"good"}), token_codes={"broke": 601, "denied": 600})
    answers = {token: call(server, token=token) for token in ("good", "other", "", "broke", "denied")}
    assert {token: (status, body["code"]) for token, (status, body) in answers.items()} == {
        "good": (200, 0),
        "other": (401, 100),
        "": (401, 100),
        "broke": (403, 601),
        "denied": (403, 600),
    }
    assert all(len(e["token"]) == 12 and e["token"] not in {"good", "broke"} for e in server.log), "no token in clear"


def test_quota_then_303(sandbox_factory):
    server = sandbox_factory(quota=2)
    codes = [call(server, page=str(p))[1]["code"] for p in (1, 2, 3, 4)]
    assert codes == [0, 0, 303, 303]
    assert call(server, token="another")[1]["code"] == 0, "the quota is per token"


@pytest.mark.parametrize(("style", "status"), [("mapped", 429), ("200", 200)])
def test_rate_limit_answers_302(sandbox_factory, style, status):
    server = sandbox_factory(rate_limit=2, status_style=style)
    answers = [call(server, page=str(p)) for p in range(1, 8)]
    limited = [a for a in answers if a[1]["code"] == 302]
    assert limited and all(s == status for s, _ in limited)
    assert answers[0][1]["code"] == 0


def test_raw_faults(sandbox_factory):
    server = sandbox_factory(faults=["html502@Nike#1x1", "cut@Nike#2x1", "reset@Nike#3x1"])
    status, body = call(server, page="1")
    assert status == 502 and body.startswith(b"<html>")
    status, body = call(server, page="2")
    assert status == 200 and isinstance(body, bytes) and api.judge(200, body).label == "http_200_truncated"
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        call(server, page="3")
    assert [call(server, page=str(p))[1]["code"] for p in (1, 2, 3)] == [0, 0, 0], "x1: only the first call fails"


def test_fault_specs_and_determinism():
    assert Fault.parse("301:0.25") == Fault("301", 0.25)
    assert Fault.parse("html502@Nike#2x3") == Fault("html502", 1.0, "Nike", 2, 3)
    assert Fault.parse("400@Mix x Max") == Fault("400", 1.0, "Mix x Max")
    assert Fault.parse("602") == Fault("602")  # any business code, documented or not
    assert Fault.parse("301@Xbox360") == Fault("301", 1.0, "Xbox360")
    assert Fault.parse("cutx2") == Fault("cut", times=2)
    with pytest.raises(ValueError, match="unknown fault"):
        Fault.parse("teapot")
    fault = Fault("301", 0.3)
    hits = [fault.hits("Nike", page, attempt, 7) for page in range(1, 50) for attempt in range(3)]
    assert hits == [fault.hits("Nike", page, attempt, 7) for page in range(1, 50) for attempt in range(3)]
    assert 0.15 < sum(hits) / len(hits) < 0.45


def test_pages_are_like_real_search_results():
    layouts = {k: CORPUS.layout(k, "general", "_0", "any") for k in BRANDS}
    sizes = Counter(len(p) for layout in layouts.values() for p in layout)
    assert all(layout[-1] == () for layout in layouts.values()), "every query ends with an empty page"
    assert any(layout == ((),) for layout in layouts.values()) or CORPUS.layout("empty", "general", "_0", "any") == (
        (),
    )
    short_mid = [
        len(p) for layout in layouts.values() for p in layout[:-2] if sum(s.model_type == "note" for s in p) < 19
    ]
    assert short_mid, "some pages are short in the middle of a result set"
    assert max(sizes) == 20 and sizes.most_common(1)[0][0] == 20 and sizes[10] >= 5, "real pages hold 20 or 10 items"
    types = Counter(s.model_type for layout in layouts.values() for p in layout for s in p)
    assert types["hot_query"] and types["rec_query"] and types["ads"]
    repeats = sum(
        1
        for layout in layouts.values()
        for a, b in itertools.pairwise(layout)
        if {s.key for s in a if s.key} & {s.key for s in b if s.key}
    )
    assert repeats, "notes repeat on consecutive pages"
    overlap = set(CORPUS.expected_note_ids("海信")) & set(CORPUS.expected_note_ids("Nike"))
    assert overlap, "notes repeat across keywords"


def sandbox_notes() -> list[dict]:
    pages = [
        orjson.loads(CORPUS.page_data(k, "general", "_0", "any", n))
        for k in BRANDS
        for n in range(1, len(CORPUS.layout(k, "general", "_0", "any")))
    ]
    return [item["note"] for data in pages for item in data["items"] if item["model_type"] == "note"]


def test_notes_carry_previews_and_tags_like_real_ones():
    notes = sandbox_notes()
    lengths = Counter(api.utf16_len(note["desc"]) for note in notes)
    assert max(lengths) == api.DESC_PREVIEW_UNITS and lengths[60] > len(notes) / 5, "desc is a preview cut at 60"
    assert sum("#" in note["desc"] and "  #" in note["desc"] for note in notes) > len(notes) / 5, "#tag  #tag"
    assert not any("[话题]" in note["desc"] for note in notes), "search results write tags as #tag"
    titles = Counter("title" not in note or api.utf16_len(note["title"]) for note in notes)
    assert titles[True] > len(notes) / 20, "untitled notes have no title key"
    assert titles[api.TITLE_PREVIEW_UNITS] > 0 and max(t for t in titles if t is not True) <= 40
    cut_tags = [n for n in notes if api.hashtags(None, n["desc"]) != api.hashtags(None, n["desc"] + " ")]
    assert cut_tags, "some previews end inside a tag, as real ones do"


def test_images_counts_and_flags_are_like_real_ones():
    notes = sandbox_notes()
    for note in notes:
        first, *others = note["images_list"]
        assert "sc=SRH_PRV" in first["url"] and all(i["url"] == "" for i in others)
        assert all("/w/1440/" in i["url_size_large"] for i in note["images_list"])
        if note["type"] == "video":
            duration = orjson.loads(note["widgets_context"])["video_duration"]
            assert (
                type(duration) is int
                and note.get("video_info_v2", {}).get("capa", {}).get("duration", duration) == duration
            )
    assert any(len(note["images_list"]) > 1 for note in notes)
    assert Counter("shared_count" in note for note in notes).keys() == {True, False}, "shared_count sometimes absent"
    kinds = Counter(type(note[field]) for note in notes for field in ("liked_count", "collected_count"))
    assert kinds[int] > 30 * kinds[str] > 0, "integer counts; a few display strings as a robustness case"
    assert all(isinstance(note["comments_count"], int) for note in notes)
    videos = [note for note in notes if note["type"] == "video"]
    assert Counter("video_info_v2" in note for note in videos).keys() == {True, False}
    items = [api.note_item(n, query=api.Query("k"), note_time_sent=None, page=1, rank=1, fetched_at="t") for n in notes]
    assert 0 < sum(i["brand_partnership"] for i in items) < len(items) / 5
    assert 0 < sum(bool(i["mentions"]) for i in items) < len(items) / 4


def test_ads_items_are_sponsored_brand_notes():
    pages = [orjson.loads(CORPUS.page_data(k, "general", "_0", "any", 2)) for k in BRANDS]
    ads = [item["ads"] for data in pages for item in data["items"] if item["model_type"] == "ads"]
    assert ads and all(ad["model_type"] == "note" and ad["ad_tag"] == "广告" for ad in ads)
    for ad in ads:
        note = api.read_page({"data": {"items": [{"model_type": "ads", "ads": ad}]}}, keep_ads=True).notes[0]
        mapped = api.note_item(note, query=api.Query("k"), note_time_sent=None, page=2, rank=1, fetched_at="t")
        assert mapped["sponsored"] and mapped["brand_partnership"]


def test_filters_filter():
    videos = CORPUS.result_keys("Nike", "general", "_1", "any")
    assert videos and {CORPUS.note(k)["type"] for k in videos} == {"video"}
    week = CORPUS.result_keys("Nike", "general", "_0", "week")
    ages = [CORPUS.now - CORPUS.note(k)["timestamp"] for k in week]
    assert sum(a <= 7 * 86400 for a in ages) > len(ages) / 2
    assert any(a > 7 * 86400 for a in ages), "the time filter is imprecise, like the real one"
    latest = [CORPUS.note(k)["timestamp"] for k in CORPUS.result_keys("Nike", "time_descending", "_0", "any")]
    assert latest == sorted(latest, reverse=True)


def test_pages_past_the_end_are_empty(sandbox):
    layout = CORPUS.layout("小米", "general", "_0", "any")
    assert call(sandbox, keyword="小米", page=str(len(layout)))[1]["data"]["items"] == []
    assert call(sandbox, keyword="小米", page=str(len(layout) + 5))[1]["data"]["items"] == []


def test_the_request_log_is_served(sandbox):
    call(sandbox, keyword="小米")
    with urllib.request.urlopen(f"{sandbox.url}/__sandbox__/log", timeout=5) as response:
        log = orjson.loads(response.read())
    assert [(e["keyword"], e["code"]) for e in log] == [("小米", 0)]


def test_cassettes_of_errors_do_not_hide_recorded_pages(sandbox_factory):
    server = sandbox_factory(cassettes=str(Path(__file__).parent / "cassettes"), replay_only=True)
    status, body = call(server, keyword="Nike", page="1", sort="general", noteType="_0", token="any")
    assert (status, body["code"]) == (200, 0), "normal_page wins over the error cassettes of the same call"


def test_a_missing_cassette_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="holds no betamax cassettes"):
        SandboxServer(SandboxConfig(cassettes=str(tmp_path)))
