"""Deterministic, realistic search results for the sandbox.

The same keyword, filters and page always give the same answer, so tests can
ask the corpus what a complete crawl must find. What it reproduces of the real
API (docs/architecture.md, "The API as it behaves"): pages of about 20 items that can be short in the middle, an
empty page at the end, notes repeated on consecutive pages and under several
keywords, non-note items (``hot_query``, ``rec_query``, ``ads``), keywords with
no results, an imprecise ``noteTime`` filter, counts sent as display strings
("1.2万"), missing ``shared_count``, empty image ``url`` and ``widgets_context``
as a JSON string.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from rednote_crawl import api

SANDBOX_NOW = 1795737600  # 2026-11-27T00:00:00Z: results are dated relative to this
SHARED_POOL = 60  # notes that many keywords find (cross-keyword duplicates)
NO_RESULT_KEYWORDS = frozenset({"empty", "无结果", "no results"})
DAY = 86400
NOTE_TIME_WINDOWS = {"day": DAY, "week": 7 * DAY, "half_year": 183 * DAY}

_PHRASES = (
    "真的太好用了",
    "入手一个月的真实感受",
    "平价替代分享",
    "开箱测评",
    "避雷指南",
    "新品体验",
    "学生党必看",
    "使用心得",
    "一周穿搭",
    "周末探店",
    "对比测评",
    "宝藏好物",
)
_TAGS = ("好物分享", "测评", "种草", "日常", "生活记录", "开箱", "穿搭", "护肤", "数码", "探店")
_NICKNAMES = ("小红薯", "爱生活的猫", "Momo", "阿杰的日常", "橙子酱", "Luna", "数码小王", "今天吃什么")


def stable_hash(*parts: object) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True, slots=True)
class Slot:
    """One entry of ``data.items``: a note (by key) or a non-note item."""

    model_type: str
    key: str = ""


@dataclass
class Corpus:
    seed: int = 7
    now: int = SANDBOX_NOW
    _notes: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    # --- notes ---------------------------------------------------------------
    def note(self, key: str) -> dict[str, Any]:
        """The API note for ``key`` (``"<keyword>#<i>"`` or ``"shared#<j>"``)."""
        cached = self._notes.get(key)
        if cached is None:
            cached = self._notes[key] = self._make_note(key)
        return cached

    def _make_note(self, key: str) -> dict[str, Any]:
        r = random.Random(stable_hash(self.seed, "note", key))
        topic = key.rsplit("#", 1)[0]
        topic = "" if topic == "shared" else topic
        age = int(min(r.expovariate(1 / (40 * DAY)), 700 * DAY))
        timestamp = self.now - age - r.randint(0, 3600)
        note_id = f"{timestamp:08x}{r.getrandbits(64):016x}"
        is_video = r.random() < 0.3
        tags = r.sample(_TAGS, r.randint(0, 3))
        phrase = r.choice(_PHRASES)
        desc = " ".join(
            [f"#{topic}" if topic and r.random() < 0.7 else ""]
            + [f"#{t}[话题]#" for t in tags]
            + [f"{topic}{phrase}，{r.choice(_PHRASES)}。"]
        ).strip()
        roll = r.random()
        title = "" if roll < 0.1 else (desc[:20] if roll < 0.2 else f"{topic} {phrase}".strip())
        liked = int(r.paretovariate(1.2) * 10)
        user_id = f"{r.getrandbits(96):024x}"
        images = []
        for _ in range(r.randint(1, 6)):
            fileid = f"notes_uhdr/1040g{r.getrandbits(64):016x}"
            large = f"https://sns-na-i8-a.xhscdn.com/{fileid}?imageView2/2/w/1440/format/webp"
            images.append(
                {
                    "need_load_original_image": False,
                    "fileid": fileid,
                    "height": r.choice((1440, 1920, 2560)),
                    "width": r.choice((1080, 1440)),
                    "url": "" if r.random() < 0.15 else large.replace("/w/1440/", "/w/540/"),
                    "url_size_large": large,
                    "original": "",
                    "trace_id": fileid,
                }
            )
        context: dict[str, Any] = {"flags": {}, "author_id": user_id, "author_name": ""}
        note: dict[str, Any] = {
            "extract_text_enabled": 0,
            "nice_count": 0,
            "update_time": (timestamp + r.randint(0, 5 * DAY)) * 1000,
            "xsec_token": f"YB{r.getrandbits(192):048x}=",
            "interaction_area": {"text": str(liked), "type": 1, "status": False},
            "result_from": "",
            "type": "video" if is_video else "normal",
            "last_update_time": 0,
            "geo_info": {"distance": ""},
            "niced": False,
            "liked_count": _display_count(liked, r),
            "corner_tag_info": [
                {"location": -1, "type": "publish_time", "icon": "", "text": _age_text(age), "text_en": "", "style": 0}
            ],
            "collected": False,
            "collected_count": _display_count(liked // r.randint(1, 4), r),
            "timestamp": timestamp,
            "user": {
                "followed": False,
                "red_official_verify_type": 0,
                "show_red_official_verify_icon": False,
                "red_official_verified": False,
                "userid": user_id,
                "red_id": str(r.randint(10**8, 10**10)),
                "nickname": r.choice(_NICKNAMES),
                "images": f"https://sns-avatar-qc.xhscdn.com/avatar/1040g2jo{r.getrandbits(64):016x}?imageView2/2/w/80/format/jpg",
            },
            "has_music": is_video,
            "desc": desc,
            "title": title,
            "tag_info": {"title": "", "type": ""},
            "cover_image_index": r.randrange(len(images)),
            "id": note_id,
            "images_list": images,
            "debug_info_str": "",
            "liked": False,
            "comments_count": liked // r.randint(2, 20),
            "note_attributes": [],
        }
        context["author_name"] = note["user"]["nickname"]
        if r.random() < 0.8:
            note["shared_count"] = liked // r.randint(3, 30)
        if is_video:
            duration = r.randint(8, 600)
            context["video_duration"] = duration
            if r.random() < 0.5:
                note["video_info_v2"] = {"capa": {"duration": duration}}
        note["widgets_context"] = orjson.dumps(context).decode()
        return note

    # --- result lists --------------------------------------------------------
    def result_keys(self, keyword: str, sort: str, note_type: str, note_time: str) -> tuple[str, ...]:
        """Every note key the query returns, in result order (before paging)."""
        return _result_keys(self, keyword, sort, note_type, note_time)

    def layout(self, keyword: str, sort: str, note_type: str, note_time: str) -> tuple[tuple[Slot, ...], ...]:
        """The pages of a query; the last one is empty."""
        return _layout(self, keyword, sort, note_type, note_time)

    def page_data(self, keyword: str, sort: str, note_type: str, note_time: str, page: int) -> bytes:
        """``data`` of one page, serialized (cached: the sandbox must never be the bottleneck)."""
        return _page_data(self, keyword, sort, note_type, note_time, page)

    def expected_note_ids(
        self, keyword: str, sort: str = "general", note_type: str = "_0", note_time: str = "any"
    ) -> list[str]:
        """The unique note ids a complete crawl of this query finds: the test oracle."""
        return list(dict.fromkeys(self.note(k)["id"] for k in self.result_keys(keyword, sort, note_type, note_time)))

    def __hash__(self) -> int:
        return hash((self.seed, self.now))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Corpus) and (self.seed, self.now) == (other.seed, other.now)


def _display_count(value: int, r: random.Random) -> int | str:
    if value >= 10_000 and r.random() < 0.6:
        return f"{value / 10_000:.1f}万"
    return str(value) if r.random() < 0.05 else value


def _age_text(age: int) -> str:
    if age < DAY:
        return f"{max(1, age // 3600)}小时前"
    if age < 7 * DAY:
        return f"{age // DAY}天前"
    return "更早"


@lru_cache(maxsize=4096)
def _result_keys(corpus: Corpus, keyword: str, sort: str, note_type: str, note_time: str) -> tuple[str, ...]:
    h = stable_hash(corpus.seed, "keyword", keyword)
    if keyword.strip().lower() in NO_RESULT_KEYWORDS or h % 9 == 0:
        return ()
    own = 20 + h % 200
    keys = [f"{keyword}#{i}" for i in range(own)]
    r = random.Random(h)
    keys += [f"shared#{j}" for j in r.sample(range(SHARED_POOL), max(2, own // 8))]
    r.shuffle(keys)
    if note_type != "_0":
        wanted = "video" if note_type == "_1" else "normal"
        keys = [k for k in keys if corpus.note(k)["type"] == wanted]
    if note_time != "any":
        # Imprecise like the real filter: about one note in ten is outside the window.
        window = NOTE_TIME_WINDOWS[note_time]
        keys = [
            k for k in keys if corpus.now - corpus.note(k)["timestamp"] <= window or stable_hash(k, note_time) % 10 == 0
        ]
    sort_keys = {
        "time_descending": lambda k: -corpus.note(k)["timestamp"],
        "popularity_descending": lambda k: -(api.parse_count(corpus.note(k)["liked_count"]) or 0),
        "comment_descending": lambda k: -corpus.note(k)["comments_count"],
        "collect_descending": lambda k: -(api.parse_count(corpus.note(k)["collected_count"]) or 0),
    }
    if sort in sort_keys:
        keys.sort(key=sort_keys[sort])
    return tuple(keys)


@lru_cache(maxsize=4096)
def _layout(corpus: Corpus, keyword: str, sort: str, note_type: str, note_time: str) -> tuple[tuple[Slot, ...], ...]:
    keys = _result_keys(corpus, keyword, sort, note_type, note_time)
    r = random.Random(stable_hash(corpus.seed, "layout", keyword, sort, note_type, note_time))
    pages: list[tuple[Slot, ...]] = []
    position = 0
    while position < len(keys):
        number = len(pages) + 1
        size = 20 if r.random() < 0.75 else r.randint(14, 19)  # short pages happen mid-way
        repeat = bool(pages) and r.random() < 0.3  # the last note of the previous page comes again
        fresh = keys[position : position + size - repeat]
        slots = [Slot("note", keys[position - 1])] if repeat else []
        slots += [Slot("note", k) for k in fresh]
        position += len(fresh)
        if number == 1 and len(slots) > 3:
            slots.insert(3, Slot("hot_query"))
        if number % 3 == 0:
            slots.insert(min(10, len(slots)), Slot("rec_query"))
        if number % 4 == 2:
            slots.insert(min(6, len(slots)), Slot("ads", f"shared#{r.randrange(SHARED_POOL)}"))
        pages.append(tuple(slots))
    pages.append(())
    return tuple(pages)


def _item(corpus: Corpus, slot: Slot, keyword: str) -> dict[str, Any]:
    if slot.model_type == "note":
        return {"model_type": "note", "note": corpus.note(slot.key)}
    if slot.model_type == "ads":
        return {"model_type": "ads", "ads": {"id": f"ads-{slot.key}", "note": corpus.note(slot.key), "track_id": "ad"}}
    if slot.model_type == "hot_query":
        return {
            "model_type": "hot_query",
            "hot_query": {"title": "大家都在搜", "queries": [{"name": f"{keyword} 推荐"}, {"name": f"{keyword} 测评"}]},
        }
    return {"model_type": "rec_query", "rec_query": {"title": "相关搜索", "queries": [{"name": f"{keyword} 平替"}]}}


@lru_cache(maxsize=8192)
def _page_data(corpus: Corpus, keyword: str, sort: str, note_type: str, note_time: str, page: int) -> bytes:
    layout = _layout(corpus, keyword, sort, note_type, note_time)
    slots = layout[page - 1] if page <= len(layout) else ()
    cost = 500 + stable_hash(keyword, page) % 250
    data = {
        "items": [_item(corpus, slot, keyword) for slot in slots],
        "query_type": 0,
        "query_intent": {"goodsIntent": 3, "search_ask_intent": True, "low_supply_intent": False},
        "service_status": orjson.dumps(
            {
                "filter": "not_required",
                "note": "success",
                "onebox": "not_required",
                "cost": {"all": cost, "zone": "rcsh1"},
            }
        ).decode(),
        "strategy_info": {"query_can_guide_to_feed": True, "query_average_impression_count": 19},
        "search_request_id": f"{stable_hash(keyword, sort, page):016x}",
        "is_broad_query": True,
        "can_cut": False,
    }
    return orjson.dumps(data)
