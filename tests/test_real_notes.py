"""The mapping on real answers, and the sandbox's shape against them.

The real pages are the vendor's published answers in tests/data/real/ (SOURCES.md names each one's
repository, path and commit), plus the user's sample in tests/data/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from rednote_crawl import api
from rednote_crawl.sandbox.corpus import Corpus

DATA = Path(__file__).parent / "data"
REAL_FILES = sorted((DATA / "real").glob("*.json"))
SAMPLE_FILE = DATA / "seed-sample-response.json"
# Fields of JSON text that hold a JSON object: their keys are part of the shape.
JSON_STRINGS = frozenset({"widgets_context", "service_status", "extra_json"})
BRANDS = ["海信", "小米", "华为", "蔚来", "Nike", "Adidas", "Apple", "Lululemon", "SK-II", "L'Oréal", "喜茶", "安踏"]


@cache
def page(name: str) -> dict[str, Any]:
    return orjson.loads((DATA / "real" / name).read_bytes())


def real_pages() -> list[dict[str, Any]]:
    return [orjson.loads(path.read_bytes()) for path in [*REAL_FILES, SAMPLE_FILE]]


def items_of(data: dict[str, Any], model_type: str) -> list[dict[str, Any]]:
    return [item for item in data["items"] if item["model_type"] == model_type]


def notes_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The notes of ``model_type: note`` items (an ``ads`` item's note is not one)."""
    return [item["note"] for item in items_of(data, "note")]


def all_real_notes() -> list[dict[str, Any]]:
    return [note for data in (p["data"] for p in real_pages()) for note in notes_of(data)]


def note_by_id(note_id: str) -> dict[str, Any]:
    return next(note for note in all_real_notes() if note["id"] == note_id)


def item(note: dict[str, Any]) -> api.NoteItem:
    return api.note_item(note, query=api.Query("美食"), note_time_sent=None, page=1, rank=1, fetched_at="t")


def key_paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Every key path in ``value``: ``a.b[].c``; the keys inside JSON-string fields count too (``a{}.b``)."""
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            if key in JSON_STRINGS and isinstance(child, str):
                yield from key_paths(json.loads(child), f"{path}{{}}")
            else:
                yield from key_paths(child, path)
    elif isinstance(value, list):
        for child in value:
            yield from key_paths(child, f"{prefix}[]")


# --- the fixtures ----------------------------------------------------------------


def test_every_real_page_names_its_source():
    listed = (DATA / "real" / "SOURCES.md").read_text(encoding="utf-8")
    assert len(REAL_FILES) == 3
    for path in REAL_FILES:
        source = orjson.loads(path.read_bytes())["_source"]
        assert source["repository"] == "justoneapi-team/justoneapi-python"
        assert source["path"] == "docs/api-examples/getApiXiaohongshuSearchNoteV2.json"
        assert len(source["commit"]) == 40 and source["commit"][:8] in path.name
        assert path.name in listed and source["commit"] in listed
        assert api.judge(200, path.read_bytes()).action is api.Action.PARSE


@pytest.mark.parametrize(
    ("name", "types"),
    [
        ("search-note-v2-008e887e.json", {("note", "video"): 10}),
        ("search-note-v2-d199bbc7.json", {("note", "normal"): 4, ("note", "video"): 5, ("ads", "normal"): 1}),
        ("search-note-v2-c964c310.json", {("note", "normal"): 14, ("note", "video"): 6}),
    ],
)
def test_the_real_pages_are_the_ones_described(name, types):
    items = page(name)["data"]["items"]
    counted: dict[tuple[str, str], int] = {}
    for entry in items:
        note = entry["note"] if entry["model_type"] == "note" else entry["ads"]["note"]
        counted[(entry["model_type"], note["type"])] = counted.get((entry["model_type"], note["type"]), 0) + 1
    assert counted == types


# --- the mapping on real notes -----------------------------------------------------------


def test_every_real_note_maps_to_a_whole_item():
    for note in all_real_notes():
        mapped = item(note)
        assert tuple(mapped) == api.SEARCH_FIELDS
        assert mapped["url"].startswith(f"https://www.xiaohongshu.com/explore/{note['id']}?xsec_token=")
        assert mapped["published_at"].endswith("Z") and mapped["user"]["user_id"]
        orjson.dumps(mapped)


def test_a_tag_cut_at_the_end_of_the_desc_preview_is_left_out():
    note = note_by_id("6970c05c000000000b0091ca")
    assert note["desc"].endswith("#在家做美食  #一") and api.utf16_len(note["desc"]) == 60
    assert item(note)["hashtags"] == [
        "做菜我是认真的",
        "美食教程",
        "美食分享",
        "诱人的美食",
        "教你做道拿手菜",
        "色香味俱佳",
        "在家做美食",
    ]


def test_a_tag_cut_at_the_end_of_a_title_is_left_out():
    note = note_by_id("6a86f912000000002202dd15")
    assert note["title"].endswith("#家庭版酸辣粉 #在") and api.utf16_len(note["title"]) == 40
    assert item(note)["hashtags"] == ["酸辣粉", "家庭版酸辣粉", "在家做美食", "好吃又简单"]


def test_no_real_note_gives_a_tag_fragment():
    fragments = {"一", "在", "谁懂这", "鸡蛋的神", "美食日", "超级下饭的", "今天"}  # tags that end a cut preview
    tags = {tag for note in all_real_notes() for tag in item(note)["hashtags"]}
    assert tags and not tags & fragments
    assert {"在家做美食", "酸辣粉", "海信洗衣机", "山药猪肉饼"} <= tags


def test_desc_truncated_marks_the_previews():
    by_length = {api.utf16_len(note["desc"]): item(note)["desc_truncated"] for note in all_real_notes()}
    assert by_length[60] is True and by_length[59] is True
    assert all(truncated is False for length, truncated in by_length.items() if length < 58)
    assert item(note_by_id("6a8cf784000000002402687d"))["desc_truncated"] is False  # desc ""
    # A 59-unit desc is cut too: this note @-mentions an account after the end of its desc.
    cut = note_by_id("6a157051000000003601e5b5")
    assert api.utf16_len(cut["desc"]) == 59 and "@HOWTO薯" not in cut["desc"]
    assert item(cut)["desc_truncated"] is True and item(cut)["mentions"][0]["nickname"] == "HOWTO薯"


def test_brand_partnership_on_a_real_brand_paid_note():
    paid = note_by_id("6a8fe305000000002600277d")  # model_type "note", widgets_context order_cooperate
    assert item(paid)["brand_partnership"] is True and item(paid)["sponsored"] is False
    assert [n["id"] for n in all_real_notes() if item(n)["brand_partnership"]] == ["6a8fe305000000002600277d"]


def test_the_real_ads_note_is_sponsored_and_a_brand_partnership():
    envelope = page("search-note-v2-d199bbc7.json")
    assert [n["id"] for n in api.read_page(envelope).notes] == [n["id"] for n in notes_of(envelope["data"])], (
        "the ads item is dropped by default"
    )
    [ad] = [n for n in api.read_page(envelope, keep_ads=True).notes if n.get("_sponsored")]
    mapped = item(ad)
    assert (mapped["note_id"], mapped["sponsored"], mapped["brand_partnership"]) == (
        "6a7c411e000000002202eeb1",
        True,
        True,
    )


def test_images_and_cover_are_the_large_images():
    multi = note_by_id("6a3ce327000000001503f5bc")
    assert len(multi["images_list"]) == 7 and [i["url"] for i in multi["images_list"]][1:] == [""] * 6
    for note in all_real_notes():
        mapped = item(note)
        assert mapped["images"] == [image["url_size_large"] for image in note["images_list"]]
        assert mapped["cover_url"] == mapped["images"][0]
        if note["id"] != "69abb712000000001600a32a":  # the user's sample shortens its URLs
            assert all("/w/1440/" in url and "sc=SRH_DTL" in url for url in mapped["images"])
        assert not any("SRH_PRV" in url for url in mapped["images"])


def test_mentions_come_from_the_real_at_user_list():
    assert item(note_by_id("693d19de000000001e038480"))["mentions"] == [
        {"user_id": "622f299f00000000100098c8", "nickname": "热点薯"},
        {"user_id": "5a152ef8e8ac2b5c7a805197", "nickname": "吃货薯"},
    ]
    assert item(note_by_id("6a86e6a4000000003300dce0"))["mentions"] == [
        {"user_id": "69c4b13c0000000033014ae7", "nickname": "HOWTO薯"}
    ]
    assert sum(bool(item(note)["mentions"]) for note in all_real_notes()) == 4


def test_video_duration_is_an_integer():
    first = item(note_by_id("6a86f912000000002202dd15"))
    assert first["video_duration"] == 85 and type(first["video_duration"]) is int
    assert b'"video_duration":85,' in orjson.dumps(first)
    for note in all_real_notes():
        duration = item(note)["video_duration"]
        if note["type"] == "video":
            assert type(duration) is int and duration == json.loads(note["widgets_context"])["video_duration"]
            if "video_info_v2" in note:
                assert duration == note["video_info_v2"]["capa"]["duration"]
        else:
            assert duration is None


def test_untitled_notes_and_missing_shared_counts_are_null():
    untitled = item(note_by_id("69d774e0000000002300741d"))  # no "title" key at all
    assert untitled["title"] is None and untitled["hashtags"] == ["公瑾爆蛋", "美食教程"]
    older = item(note_by_id("6a86f912000000002202dd15"))  # revision 008e887e sends no shared_count
    assert older["shared_count"] is None and older["liked_count"] == 37320
    assert item(note_by_id("6a197351000000003700f9d6"))["shared_count"] == 3230


# --- the sandbox against the real shape --------------------------------------------------


@cache
def sandbox_pages() -> list[dict[str, Any]]:
    corpus = Corpus()
    pages = []
    for keyword in BRANDS:
        for number in range(1, len(corpus.layout(keyword, "general", "_0", "any")) + 1):
            pages.append(orjson.loads(corpus.page_data(keyword, "general", "_0", "any", number)))
    return pages


def paths_of(values: list[Any]) -> set[str]:
    return {path for value in values for path in key_paths(value)}


def without_items(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "items"}


def test_the_sandbox_notes_have_every_key_path_of_the_real_notes_and_no_other():
    real = paths_of(all_real_notes())
    sandbox = paths_of([note for data in sandbox_pages() for note in notes_of(data)])
    assert real - sandbox == set(), "key paths of real notes the sandbox never sends"
    assert sandbox - real == set(), "key paths the sandbox invents"
    assert {"at_user_list[].user_id", "video_info_v2.media.stream.h265[].opaque1.roi_info"} <= sandbox
    assert {"widgets_context{}.order_cooperate", "widgets_context{}.commercial_bridge_note"} <= sandbox


def test_every_sandbox_note_has_the_keys_every_real_note_has():
    always = set.intersection(*(set(note) for note in all_real_notes()))
    assert {"id", "desc", "images_list", "widgets_context", "user", "timestamp", "corner_tag_info"} <= always
    for data in sandbox_pages():
        for note in notes_of(data):
            assert always <= set(note), note["id"]


def test_the_sandbox_page_data_has_the_real_keys_and_no_other():
    real = paths_of([without_items(p["data"]) for p in real_pages()])
    sandbox = paths_of([without_items(data) for data in sandbox_pages()])
    assert real == sandbox


def test_the_sandbox_ads_items_have_the_real_shape():
    real = paths_of(items_of(page("search-note-v2-d199bbc7.json")["data"], "ads"))
    sandbox = paths_of([ads for data in sandbox_pages() for ads in items_of(data, "ads")])
    assert real - sandbox == set()
    assert {"ads.note.recommend.track_id", "ads.extra_json{}.note_id", "ads.track_url"} <= sandbox
