"""Property-based tests: the page parser and the item mapping never raise on what the API may send.

Each test draws 200 examples a run (the "suite" profile of tests/conftest.py);
``pytest tests/test_fuzz.py --hypothesis-profile=thorough`` draws 5,000."""

from __future__ import annotations

import json
import string

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rednote_crawl import api

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["1.2万", "10万+", "3,456", "1e5", "", " ", "9" * 400, "亿", "-1"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
note_ids = st.one_of(st.text(alphabet="0123456789abcdef", min_size=24, max_size=24), st.text(min_size=1, max_size=30))
NOTE_KEYS = [
    "id",
    "type",
    "title",
    "desc",
    "liked_count",
    "collected_count",
    "comments_count",
    "shared_count",
    "timestamp",
    "xsec_token",
    "user",
    "images_list",
    "cover_image_index",
    "widgets_context",
    "video_info_v2",
    "corner_tag_info",
    "at_user_list",
]


@st.composite
def notes(draw):
    note = draw(st.dictionaries(st.sampled_from(NOTE_KEYS), json_values, max_size=len(NOTE_KEYS)))
    if draw(st.booleans()):
        note["id"] = draw(note_ids)
    if draw(st.booleans()):
        note["images_list"] = draw(
            st.lists(st.dictionaries(st.sampled_from(["url", "url_size_large", "width"]), json_values), max_size=4)
        )
    if draw(st.booleans()):
        note["widgets_context"] = draw(
            st.one_of(
                st.text(max_size=30),
                json_values.map(json.dumps),
                st.fixed_dictionaries(
                    {},
                    optional={k: json_values for k in ("video_duration", "order_cooperate", "commercial_bridge_note")},
                ).map(json.dumps),
            )
        )
    if draw(st.booleans()):
        note["at_user_list"] = draw(
            st.lists(st.dictionaries(st.sampled_from(["user_id", "nickname", "user_oid"]), json_values), max_size=3)
        )
    if draw(st.booleans()):
        note["desc"] = draw(st.text(alphabet=string.printable + "#[]话题海信🙂\u200b", max_size=200))
    return note


items = st.one_of(
    notes().map(lambda n: {"model_type": "note", "note": n}),
    notes().map(lambda n: {"model_type": "note", "note": n}),
    notes().map(lambda n: {"model_type": "ads", "ads": {"note": n}}),
    st.dictionaries(st.sampled_from(["model_type", "note", "ads", "hot_query"]), json_values, max_size=3),
    json_values,
)
codes = st.one_of(st.just(0), st.just("0"), st.just(" 0 "), scalars)
pages = st.fixed_dictionaries({"items": st.one_of(st.lists(items, max_size=8), json_values)})
# Mostly code-0 pages with note-like items, so that the mapping is exercised; sometimes anything.
envelopes = st.one_of(
    st.fixed_dictionaries({"code": st.sampled_from([0, "0"]), "data": pages}),
    st.fixed_dictionaries({"code": codes, "data": st.one_of(json_values, pages)}),
    json_values,
)


def has_id(note) -> bool:
    return isinstance(note, dict) and isinstance(note.get("id"), str) and bool(note["id"].strip())


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(envelopes, st.booleans())
def test_parser_never_raises_and_keeps_every_note_with_an_id(envelope, keep_ads):
    body = json.dumps(envelope, ensure_ascii=False).encode()  # NaN and huge ints included, as a server might
    answer = api.judge(200, body)
    if answer.action is not api.Action.PARSE:
        return
    page = api.read_page(answer.envelope, keep_ads=keep_ads)
    data = answer.envelope.get("data")
    raw_items = data.get("items") if isinstance(data, dict) else None
    raw_items = raw_items if isinstance(raw_items, list) else []
    wanted = [
        i.get("note") if i.get("model_type") == "note" else i["ads"].get("note")
        for i in raw_items
        if isinstance(i, dict)
        and (
            i.get("model_type") == "note"
            or (keep_ads and i.get("model_type") == "ads" and isinstance(i.get("ads"), dict))
        )
    ]
    assert len(page.notes) == sum(has_id(n) for n in wanted)
    assert len(page.notes) + sum(page.skipped.values()) == len(raw_items) == page.size
    for note in page.notes:
        item = api.note_item(
            note, query=api.Query("k"), note_time_sent=None, page=1, rank=1, fetched_at="t", keep_raw=True
        )
        assert item["note_id"] == note["id"].strip()
        orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS)  # every item can be written out
        for field in ("liked_count", "collected_count", "comments_count", "shared_count"):
            assert item[field] is None or isinstance(item[field], int)
        assert item["video_duration"] is None or (type(item["video_duration"]) is int and item["video_duration"] >= 0)
        assert all(isinstance(url, str) and url for url in item["images"])
        assert type(item["brand_partnership"]) is bool and type(item["desc_truncated"]) is bool
        assert all(set(m) == {"user_id", "nickname"} and any(m.values()) for m in item["mentions"])


@given(
    st.one_of(st.binary(max_size=300), st.text(max_size=30).map(lambda c: f'{{"code": "{c}"}}'.encode())),
    st.integers(min_value=100, max_value=599),
)
def test_any_body_gets_a_verdict(body, status):
    answer = api.judge(status, body)
    assert isinstance(answer.action, api.Action) and answer.label


@given(st.one_of(st.text(max_size=40), st.floats(), st.integers(min_value=-(2**80), max_value=2**80), json_values))
def test_scalar_parsers_never_raise(value):
    count = api.parse_count(value)
    assert count is None or isinstance(count, int)
    assert api.iso_utc(value) is None or api.iso_utc(value).endswith("Z")
    if isinstance(value, str):
        tags = api.hashtags(value, value)
        assert all(tag and "#" not in tag and not tag[0].isspace() for tag in tags)
        assert set(tags) <= set(api.hashtags(None, value + " ")), "a tag is never more than the text holds"
        assert isinstance(api.desc_truncated(value), bool)
