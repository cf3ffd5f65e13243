"""The wire contract: URLs, filters, codes, pages and the item mapping."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from rednote_crawl import api, stops

SAMPLE = orjson.loads((Path(__file__).parent / "data" / "seed-sample-response.json").read_bytes())


@pytest.mark.parametrize(
    "keyword", ["Estée Lauder", "AT&T", "C++", "100%", "why?", "L'Oréal", "a+b=c", "海信 洗衣机", "x#y"]
)
def test_keywords_survive_the_url_exactly(keyword):
    url = api.search_url("https://api.justoneapi.com/", api.Query(keyword).params(1))
    parts = urlsplit(url)
    assert parts.path == api.SEARCH_PATH and not parts.fragment
    assert parse_qs(parts.query)["keyword"] == [keyword]
    assert " " not in url and "token" not in url


def test_params_use_the_api_names_and_the_chosen_note_time_form():
    query = api.Query("Nike", "time_descending", "_1", "week")
    assert query.params(3) == {
        "keyword": "Nike",
        "page": "3",
        "sort": "time_descending",
        "noteType": "_1",
        "noteTime": "ONE_WEEK",
    }
    assert query.params(1, "chinese")["noteTime"] == "一周内"
    assert "noteTime" not in api.Query("Nike").params(1)


def test_add_token_appends_it_encoded():
    url = api.add_token("http://h/p?keyword=a", "a b&c")
    assert parse_qs(urlsplit(url).query)["token"] == ["a b&c"]


def test_parse_choices_accepts_friendly_and_api_values_in_order_once():
    assert api.parse_choices("sort", "latest, general,time_descending", api.SORTS, "general") == [
        "time_descending",
        "general",
    ]
    assert api.parse_choices("note_type", "VIDEO", api.NOTE_TYPES, "_0") == ["_1"]
    assert api.parse_choices("note_time", "ONE_DAY,一周内,half_year", api.NOTE_TIMES, "any") == [
        "day",
        "week",
        "half_year",
    ]
    assert api.parse_choices("sort", None, api.SORTS, "general") == ["general"]
    with pytest.raises(ValueError, match=r"note_type='gif' is not a valid value; use one of: _0, all, _1, video"):
        api.parse_choices("note_type", "video,gif", api.NOTE_TYPES, "_0")


def envelope(code, **extra) -> bytes:
    data = {"items": []} if code in (0, "0") else None
    return orjson.dumps({"code": code, "data": data, "message": "m", "recordTime": None, **extra})


@pytest.mark.parametrize(
    ("status", "body", "action", "label"),
    [
        (200, envelope(0), api.Action.PARSE, "code_0"),
        (200, envelope("0"), api.Action.PARSE, "code_0"),
        (200, envelope(301), api.Action.RETRY, "code_301"),
        (500, envelope(500), api.Action.RETRY, "code_500"),
        (503, envelope(503), api.Action.RETRY, "code_503"),
        (200, envelope(302), api.Action.SLOW_DOWN, "code_302"),
        (429, envelope(302), api.Action.SLOW_DOWN, "code_302"),
        (429, b"Too Many Requests", api.Action.SLOW_DOWN, "http_429_text"),
        (404, b"404 page not found", api.Action.RETRY, "http_404_text"),
        (200, b"<html>maintenance</html>", api.Action.RETRY, "http_200_html"),
        (301, b"", api.Action.RETRY, "http_301_empty"),
        (429, b"<html>429 Too Many Requests</html>", api.Action.SLOW_DOWN, "http_429_html"),
        (400, envelope(400), api.Action.DROP_QUERY, "code_400"),
        (200, envelope("400"), api.Action.DROP_QUERY, "code_400"),
        (401, envelope(100), api.Action.STOP, "code_100"),
        (429, envelope(303), api.Action.STOP, "code_303"),
        (403, envelope(600), api.Action.STOP, "code_600"),
        (200, envelope(601), api.Action.STOP, "code_601"),
        (200, envelope(602), api.Action.RETRY, "code_602"),
        (200, envelope(101), api.Action.RETRY, "code_101"),
        (502, b"<html><head><title>502 Bad Gateway</title></head></html>", api.Action.RETRY, "http_502_html"),
        (200, envelope(0)[:20], api.Action.RETRY, "http_200_truncated"),
        (200, b"", api.Action.RETRY, "http_200_empty"),
        (200, b"[1, 2]", api.Action.RETRY, "http_200_no_code"),
        (200, b'{"code": null}', api.Action.RETRY, "http_200_no_code"),
        (200, b'{"code": true}', api.Action.RETRY, "http_200_no_code"),
        (200, '{"code": "²"}'.encode(), api.Action.RETRY, "http_200_no_code"),
    ],
)
def test_judge_reads_the_business_code_not_the_http_status(status, body, action, label):
    answer = api.judge(status, body)
    assert (answer.action, answer.label) == (action, label)


def test_fatal_codes_name_their_stop():
    assert {code: api.judge(200, envelope(code)).stop for code in stops.BY_CODE} == stops.BY_CODE
    assert {code: api.judge(200, envelope(code)).action for code in stops.BY_CODE} == dict.fromkeys(
        stops.BY_CODE, api.Action.STOP
    )
    assert api.judge(200, envelope(301)).stop is None


def test_read_page_keeps_notes_and_counts_the_rest():
    items = [
        {"model_type": "note", "note": {"id": "a" * 24}},
        {"model_type": "hot_query", "hot_query": {}},
        {"model_type": "rec_query"},
        {"model_type": "ads", "ads": {"note": {"id": "b" * 24}}},
        {"model_type": "note", "note": {"title": "no id"}},
        {"model_type": "note", "note": None},
        "not an object",
        {"model_type": "live_card"},
    ]
    page = api.read_page({"code": 0, "data": {"items": items}})
    assert [n["id"] for n in page.notes] == ["a" * 24]
    assert dict(page.skipped) == {
        "hot_query": 1,
        "rec_query": 1,
        "ads": 1,
        "note_without_id": 2,
        "malformed": 1,
        "live_card": 1,
    }
    assert page.size == 8 and not page.is_last
    with_ads = api.read_page({"data": {"items": items}}, keep_ads=True)
    assert [n["id"] for n in with_ads.notes] == ["a" * 24, "b" * 24]


def test_an_empty_items_list_ends_the_query():
    assert api.read_page({"code": 0, "data": {"items": []}}).is_last


@pytest.mark.parametrize("data", [{}, None, {"items": None}, {"items": {}}, []])
def test_code_0_without_an_items_list_is_unusable_not_the_end(data):
    answer = api.judge(200, orjson.dumps({"code": 0, "data": data}))
    assert (answer.action, answer.label) == (api.Action.UNUSABLE, "code_0_no_items")


@pytest.mark.parametrize(
    ("status", "body", "unexpected"),
    [
        (200, envelope(602), True),
        (200, envelope(301), False),
        (503, envelope(503), False),
        (301, b"<html>Moved</html>", True),
        (200, b"<html>captive portal</html>", True),
        (200, b'{"status": "ok"}', True),
        (404, b"not found", True),
        (405, b"<html>405</html>", True),
        (429, b"slow down", False),
        (502, b"<html>502</html>", False),
        (200, envelope(0), False),
    ],
)
def test_undocumented_answers_are_flagged(status, body, unexpected):
    assert api.judge(status, body).unexpected is unexpected


def test_the_user_sample_maps_to_the_documented_item():
    page = api.read_page(SAMPLE)
    [note] = page.notes
    item = api.note_item(
        note, query=api.Query("海信"), note_time_sent=None, page=1, rank=1, fetched_at="2026-11-27T00:00:00Z"
    )
    assert tuple(item) == api.SEARCH_FIELDS
    assert item["note_id"] == "69abb712000000001600a32a"
    assert item["url"] == (
        "https://www.xiaohongshu.com/explore/69abb712000000001600a32a?xsec_token=YBtw6gvZIq7-ULy_Lt2R72ZheGwXy_ackAgZ_tUQf29go%3D"
    )
    assert item["type"] == "normal"
    assert item["title"] is None  # the sample has no title at all
    assert item["hashtags"] == ["海信洗衣机"]
    assert (item["liked_count"], item["collected_count"], item["comments_count"], item["shared_count"]) == (
        15,
        9,
        25,
        14,
    )
    assert item["published_at"] == "2026-03-07T05:26:42Z"
    assert item["user"] == {
        "user_id": "6276a4d10000000021026c1f",
        "nickname": "郑州卖海信电视容声冰箱团购处",
        "red_id": "1527435277",
        "avatar": note["user"]["images"],
    }
    assert item["images"] == [note["images_list"][0]["url_size_large"]], "the large image, not the preview"
    assert item["cover_url"] == item["images"][0]
    assert item["desc_truncated"] is True  # 59 UTF-16 units, cut mid-sentence ("核心亮点")
    assert item["mentions"] == [] and item["brand_partnership"] is False
    assert item["video_duration"] is None and item["sponsored"] is False
    assert "raw" not in item
    raw = api.note_item(
        note, query=api.Query("海信"), note_time_sent=None, page=1, rank=1, fetched_at="", keep_raw=True
    )
    assert raw["raw"] == note


def test_missing_and_odd_fields_are_normal():
    note = {
        "id": "c" * 24,
        "liked_count": "1.2万",
        "collected_count": "10万+",
        "comments_count": "3,456",
        "user": None,
        "images_list": [{"url": "", "url_size_large": "L"}, {"url": "S"}, None],
        "cover_image_index": 7,
        "widgets_context": '{"video_duration": 61}',
        "timestamp": "not a time",
    }
    item = api.note_item(note, query=api.Query("k"), note_time_sent="ONE_DAY", page=2, rank=21, fetched_at="t")
    assert (item["liked_count"], item["collected_count"], item["comments_count"]) == (12000, 100000, 3456)
    assert item["shared_count"] is None and item["url"] is None and item["published_at"] is None
    assert item["user"] == {"user_id": None, "nickname": None, "red_id": None, "avatar": None}
    assert item["images"] == ["L", "S"] and item["cover_url"] == "L"
    assert item["video_duration"] == 61 and isinstance(item["video_duration"], int)
    assert item["search"]["note_time"] == "ONE_DAY"
    assert (item["desc"], item["desc_truncated"], item["mentions"], item["brand_partnership"]) == (
        None,
        False,
        [],
        False,
    )


def item_of(note: dict) -> api.NoteItem:
    return api.note_item(
        {"id": "d" * 24, **note}, query=api.Query("k"), note_time_sent=None, page=1, rank=1, fetched_at="t"
    )


@pytest.mark.parametrize(
    ("note", "seconds"),
    [
        ({"video_info_v2": {"capa": {"duration": "12.5"}}, "widgets_context": "{bad"}, 12),
        ({"widgets_context": '{"video_duration": 85}', "video_info_v2": {"capa": {"duration": 90}}}, 85),
        ({"widgets_context": {"video_duration": 85.0}}, 85),
        ({"widgets_context": '{"video_duration": -3}'}, None),
        ({"widgets_context": '{"video_duration": true}'}, None),
        ({"video_info_v2": {"capa": None}}, None),
        ({"widgets_context": '{"video_duration": ""}', "video_info_v2": {"capa": {"duration": 85}}}, 85),
    ],
)
def test_video_duration_is_whole_seconds(note, seconds):
    duration = item_of(note)["video_duration"]
    assert duration == seconds and (duration is None or type(duration) is int)


@pytest.mark.parametrize(
    ("context", "partnership"),
    [
        ('{"flags":{},"order_cooperate":true,"commercial_bridge_note":true}', True),
        ('{"order_cooperate":true}', True),
        ('{"commercial_bridge_note":true}', True),
        ({"commercial_bridge_note": True}, True),
        ('{"order_cooperate":"true"}', True),
        ('{"order_cooperate":false,"commercial_bridge_note":false}', False),
        ('{"order_cooperate":1}', False),
        ('{"flags":{}}', False),
        ("not json", False),
        ("[true]", False),
        (None, False),
    ],
)
def test_brand_partnership_reads_widgets_context(context, partnership):
    assert item_of({"widgets_context": context})["brand_partnership"] is partnership


def test_images_are_the_large_image_of_each_and_the_cover_follows_its_index():
    images = [
        {"url": "https://x/a?w/576", "url_size_large": "https://x/a?w/1440"},
        {"url": "", "url_size_large": "https://x/b?w/1440"},
        {"url": "https://x/c?only-preview"},
        {"url": "", "url_size_large": ""},
    ]
    item = item_of({"images_list": images, "cover_image_index": 1})
    assert item["images"] == ["https://x/a?w/1440", "https://x/b?w/1440", "https://x/c?only-preview"]
    assert item["cover_url"] == "https://x/b?w/1440"
    # the index counts in images_list, where an image without a URL still has its place
    images = [{"url": ""}, {"url": "", "url_size_large": "https://x/b"}, {"url_size_large": "https://x/c"}]
    assert item_of({"images_list": images, "cover_image_index": 1})["cover_url"] == "https://x/b"
    assert item_of({"images_list": images, "cover_image_index": 0})["cover_url"] == "https://x/b", "else the first"


def test_mentions_come_from_at_user_list():
    users = [
        {"nickname": "吃货薯", "user_id": "5a152ef8e8ac2b5c7a805197", "user_oid": "5a152ef8e8ac2b5c7a805197"},
        {"user_id": 42},
        {"nickname": None, "user_id": None},
        "not a user",
    ]
    assert item_of({"at_user_list": users})["mentions"] == [
        {"user_id": "5a152ef8e8ac2b5c7a805197", "nickname": "吃货薯"},
        {"user_id": "42", "nickname": None},
    ]
    assert item_of({"at_user_list": {"user_id": "x"}})["mentions"] == []


@pytest.mark.parametrize(
    ("desc", "truncated"),
    [
        ("一" * 57, False),
        ("一" * 58, True),  # a cut at 60 that lost the two spaces between tags (issue 22)
        ("一" * 56 + "🙂", True),  # an emoji counts 2 UTF-16 units: 58
        ("一" * 58 + "🙂", True),  # an emoji outside the BMP counts 2 UTF-16 units: 60
        ("一" * 59, True),  # a cut that would split a 2-unit emoji stops at 59
        ("一" * 60, True),
        ("a" * 61, True),
        ("", False),
    ],
)
def test_desc_truncated_counts_utf16_units(desc, truncated):
    assert api.desc_truncated(desc) is truncated
    assert api.utf16_len("🙂a") == 3


DESC_CUT = "x" * 52 + "#tag  #一"  # 60 UTF-16 units: the desc preview's length
TITLE_CUT = "y" * 32 + " #tag #在"  # 40: a title cut like the desc
assert (
    (api.utf16_len(DESC_CUT), api.utf16_len(TITLE_CUT)) == (api.DESC_PREVIEW_UNITS, api.TITLE_PREVIEW_UNITS) == (60, 40)
)


@pytest.mark.parametrize(
    ("title", "desc", "tags"),
    [
        (None, "#海信洗衣机 这是", ["海信洗衣机"]),
        (None, "#好物分享[话题]# #测评[话题]#正文", ["好物分享", "测评"]),
        ("#a #b", "#b #c", ["a", "b", "c"]),
        (None, "", []),
        ("no tags # here", None, []),
        (None, "#穿搭#日常 正文", ["穿搭", "日常"]),
        (None, "#酸辣粉  #家庭版酸辣粉  #在家做美食", ["酸辣粉", "家庭版酸辣粉", "在家做美食"]),  # 21 units: whole
        (None, "超好吃#酸辣粉 #冒菜", ["酸辣粉", "冒菜"]),
        (None, DESC_CUT, ["tag"]),  # "#一" ends a 60-unit preview: maybe cut, left out
        (None, DESC_CUT[:-1] + "一 ", ["tag", "一"]),  # a space after it: complete
        (None, DESC_CUT + "一" * 5, ["tag"]),  # longer than the preview (a fake): still its end
        ("#一 " + TITLE_CUT[3:], DESC_CUT, ["一", "tag"]),  # written complete in the title: kept
        (TITLE_CUT, None, ["tag"]),  # "#在" ends a 40-unit title
        (TITLE_CUT[:-1], None, ["tag"]),  # 39 units: "#" alone is no tag
        (TITLE_CUT[1:], None, ["tag", "在"]),  # 39 units: not cut
        (TITLE_CUT, "#在 正文", ["tag", "在"]),  # complete in desc: kept
        (None, "x" * 52 + "#tag[话题]", ["tag"]),  # 60 units, but the name ends before "[": complete
        (None, "#️⃣ 一号 #a", ["a"]),  # the keycap emoji is no tag
    ],
)
def test_hashtags_are_complete_tags_only(title, desc, tags):
    assert api.hashtags(title, desc) == tags


def test_iso_utc_accepts_seconds_and_milliseconds():
    assert api.iso_utc(1772861202) == "2026-03-07T05:26:42Z"
    assert api.iso_utc(1772963261000) == api.iso_utc(1772963261)
    assert api.iso_utc(0) is None and api.iso_utc(None) is None and api.iso_utc(10**20) is None


@pytest.mark.parametrize(
    "value", ["9" * 400, "inf", "-Infinity", "1e400", "nan", float("inf"), float("nan"), 1e300 * 1e300]
)
def test_counts_that_are_not_finite_are_null(value):
    assert api.parse_count(value) is None
    assert api.iso_utc(value) is None


@pytest.mark.parametrize("value", ["1e25", 10**20, -(2**63), 9.3e18])
def test_counts_beyond_64_bits_are_null_so_every_item_can_be_written(value):
    assert api.parse_count(value) is None


def test_the_largest_64_bit_count_is_kept():
    assert api.parse_count(2**63 - 1) == 2**63 - 1
