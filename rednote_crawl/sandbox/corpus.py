"""Deterministic search results for the sandbox, shaped like the real ones.

The same keyword, filters and page always give the same answer, so tests can ask the corpus what
a complete crawl must find. The shape of notes, ads items and page ``data`` is copied from the
vendor's published answers (``real.py``; docs/sandbox.md says what is copied and what is guessed):
previews cut at 60 UTF-16 units (titles made from the text at 40), tags written ``#tag  #tag``,
only the first image with a preview ``url``, notes without ``title``, with and without
``shared_count``, ``widgets_context`` as a JSON string, mentions, brand partnerships, videos with
and without ``video_info_v2``, pages of 20 and of 10 items. What the samples do not show is made
up and marked: short pages of other sizes in the middle, notes repeated on consecutive pages and
under several keywords, ``hot_query``/``rec_query`` items, keywords without results, an imprecise
``noteTime`` filter, and a few counts sent as display strings ("1.2万").
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from rednote_crawl import api
from rednote_crawl.sandbox import real

SANDBOX_NOW = 1795737600  # 2026-11-27T00:00:00Z: results are dated relative to this
SHARED_POOL = 60  # notes that many keywords find (cross-keyword duplicates)
NO_RESULT_KEYWORDS = frozenset({"empty", "无结果", "no results"})
DAY = 86400
NOTE_TIME_WINDOWS = {"day": DAY, "week": 7 * DAY, "half_year": 183 * DAY}

AD_POOL = 12  # sponsored notes, shown under any keyword
DISPLAY_COUNT_RATE = 0.1  # robustness case, not seen in the real samples: a count of 10,000+ sent as "1.2万"

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
    "谁懂啊🔥真的香迷糊了",
    "好吃到破防😭",
    "一定要试试‼️",
)
_SENTENCES = (
    "用了一段时间来说说真实感受",
    "细节做得很用心，性价比也很高",
    "第一次买就被惊艳到了",
    "姐妹们一定要试试，真的不踩雷",
    "做法简单，家人们快去试试吧",
    "外观和质感都在线，日常用完全够了",
)
_TAGS = (
    "好物分享",
    "测评",
    "种草",
    "日常",
    "生活记录",
    "开箱",
    "穿搭",
    "护肤",
    "数码",
    "探店",
    "美食日常",
    "记录我的生活",
)
_NICKNAMES = ("小红薯", "爱生活的猫", "Momo", "阿杰的日常", "橙子酱", "Luna", "数码小王", "今天吃什么", "满满的厨房")
_SPACES = re.compile(r"\s+")
# (seed, note id) -> (key, whole text) of every note made: pages are cached across equal corpora
# (``_page_data``), so the note a detail call names may have been made by another Corpus of the seed.
_TEXTS: dict[tuple[int, str], tuple[str, str]] = {}
_TAG = re.compile(r"#([^#\s\[\]@]+)")


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
        topic = "" if topic in ("shared", "ad") else topic
        age = int(min(r.expovariate(1 / (40 * DAY)), 700 * DAY))
        timestamp = self.now - age - r.randint(0, 3600)
        is_video = r.random() < 0.3
        user_id = real.note_id(timestamp - r.randint(DAY, 900 * DAY), r)  # user ids have the form of note ids
        nickname = r.choice(_NICKNAMES)
        mentions = _mentions(r, topic)
        text = _full_text(r, topic, [m["nickname"] for m in mentions])
        newer = r.random() < 0.7  # newer samples add shared_count, nice_count, niced, update_time, user.followed
        brand = key.startswith("ad#") or r.random() < 0.06
        liked = _likes(r)
        host, expires = r.choice(real.IMAGE_HOSTS), f"{self.now + 5 * DAY:08x}"
        note: dict[str, Any] = {
            "advanced_widgets_groups": real.AWG_VIDEO if is_video else real.AWG_IMAGE,
            "collected": False,
            "collected_count": _display_count(int(liked * r.uniform(0.1, 1.5)), r),
            "comments_count": liked // r.randint(10, 100),
            "corner_tag_info": real.corner_tags(r, *_age_text(age, timestamp), poi=r.random() < 0.05),
            "cover_image_index": 0,
            "debug_info_str": "",
            "desc": real.preview(text, api.DESC_PREVIEW_UNITS),
            "extract_text_enabled": 0,
            "geo_info": {"distance": ""},
            "has_music": False,
            "id": real.note_id(timestamp, r),
            "images_list": real.images(r, 1 if is_video else r.choice((1, 1, 2, 3, 4, 5, 6, 6, 7)), host, expires),
            "interaction_area": {"status": False, "text": str(liked), "type": 1},
            "last_update_time": 0 if r.random() < 0.85 else timestamp + r.randint(60, 30 * DAY),
            "liked": False,
            "liked_count": _display_count(liked, r),
            "note_attributes": [],
            "result_from": "",
            "tag_info": {"title": "", "type": ""},
            "timestamp": timestamp,
            "type": "video" if is_video else "normal",
            "user": real.user(r, user_id, nickname, followed=newer),
            "xsec_token": real.xsec_token(r),
        }
        if mentions:
            note["at_user_list"] = mentions
        if newer:
            note.update(nice_count=0, niced=False, update_time=(timestamp + r.randint(0, 5 * DAY)) * 1000)
            note["shared_count"] = int(liked * r.uniform(0.02, 0.5))
        roll = r.random()
        if roll < 0.2 and text:  # a title made from the text (spaces collapsed) and cut at 40, as in the samples
            note["title"] = real.preview(_SPACES.sub(" ", text), api.TITLE_PREVIEW_UNITS)
        elif roll >= 0.3:  # 0.2 to 0.3: no title key at all, as in two samples
            note["title"] = f"{topic} {r.choice(_PHRASES)}".strip()
        video = None
        if is_video:
            duration = r.randint(8, 720)
            video = {"origin_video_key": f"pre_post/1040g2t0{real.base32(r, 32)}", "video_duration": duration}
            if r.random() < 0.6:  # revision 008e887e's video notes have none
                note["video_info_v2"] = real.video_info(r, duration, host, expires)
            if r.random() < 0.1:
                note["video_preview_type"] = "full_vertical_screen"
        flags = _flags(r, is_video)
        note["widgets_context"] = real.widgets_context(user_id, nickname, video=video, flags=flags, brand=brand)
        _TEXTS[self.seed, note["id"]] = (key, text)
        return note

    # --- note detail ---------------------------------------------------------
    def detail_data(self, note_id: str) -> bytes | None:
        """The ``data`` of the note detail answer of a note search returned (None: no such note)."""
        found = _TEXTS.get((self.seed, note_id))
        if found is None:
            return None
        key, text = found
        search = self.note(key)
        r = random.Random(stable_hash(self.seed, "detail", key))
        tags = list(dict.fromkeys(_TAG.findall(text)))
        expires = f"{self.now + 5 * DAY:08x}"
        user = search.get("user", {})
        user_info = {
            "followed": False,
            "fstatus": "none",
            "id": user.get("userid"),
            "image": user.get("images"),
            "name": user.get("nickname"),
            "nickname": user.get("nickname"),
            "red_id": user.get("red_id"),
            "userid": user.get("userid"),
        }
        liked = api.parse_count(search.get("liked_count")) or 0
        note: dict[str, Any] = {
            "ats": [{"nickname": m["nickname"], "userid": m["user_id"]} for m in search.get("at_user_list", [])],
            "collected_count": api.parse_count(search.get("collected_count")),
            "comments_count": search.get("comments_count"),
            # the whole text, topics written as the real answer writes them: "#name[话题]#"
            "desc": _TAG.sub(lambda m: f"#{m.group(1)}[话题]#", text),
            "hash_tag": [real.topic_tag(r, tag) for tag in tags],
            "id": note_id,
            "images_list": real.detail_images(r, search.get("images_list", []), expires),
            "ip_location": r.choice(real.IP_LOCATIONS),
            "last_update_time": search.get("last_update_time", 0),
            "liked_count": liked,
            "model_type": "note",
            "shared_count": search.get("shared_count", int(liked * r.uniform(0.02, 0.5))),
            "time": search.get("timestamp"),
            "title": search.get("title", ""),
            "type": search.get("type"),
            "user": user_info,
            "widgets_context": search.get("widgets_context"),
        }
        return orjson.dumps(real.detail_data(note, user_info))

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


def _likes(r: random.Random) -> int:
    """Likes of a search result: hundreds to a hundred thousand, most in the thousands (as in the samples)."""
    return min(int(r.lognormvariate(8, 2)), 10**7)


def _display_count(value: int, r: random.Random) -> int | str:
    """An integer, as every sample sends it; now and then "1.2万" (``DISPLAY_COUNT_RATE``, a robustness case)."""
    if value >= 10_000 and r.random() < DISPLAY_COUNT_RATE:
        return f"{value / 10_000:.1f}万"
    return value


def _flags(r: random.Random, is_video: bool) -> dict[str, bool]:
    """``widgets_context.flags`` as the samples have them."""
    if is_video:
        return {"sound_track": True, "inspiration": True} if r.random() < 0.1 else {"sound_track": True}
    return {"filter": True} if r.random() < 0.4 else {}


def _mentions(r: random.Random, topic: str) -> list[dict[str, str]]:
    """``at_user_list``: official accounts, or the brand searched for."""
    if r.random() >= 0.12:
        return []
    names = list(real.MENTIONABLE) + ([f"{topic}官方"] if topic else [])
    mentions = []
    for nickname in r.sample(names, r.randint(1, 2)):
        account = random.Random(stable_hash("account", nickname))
        user_id = real.note_id(SANDBOX_NOW - account.randint(DAY, 2000 * DAY), account)  # same form as note ids
        mentions.append({"nickname": nickname, "user_id": user_id, "user_oid": user_id})
    return mentions


def _full_text(r: random.Random, topic: str, mentioned: list[str]) -> str:
    """The whole text of a note; search results show it cut at 60 UTF-16 units. Tags come as the
    samples write them: ``#tag  #tag`` (sometimes one space), after the text or glued to it."""
    tags = ([_SPACES.sub("", topic)] if topic and r.random() < 0.7 else []) + r.sample(_TAGS, r.randint(0, 6))
    tag_text = (" " if r.random() < 0.2 else "  ").join(f"#{tag}" for tag in tags)
    roll = r.random()
    if roll < 0.03:
        return ""
    if roll < 0.18 and tag_text:
        body = tag_text  # a text of tags only
    else:
        sentences = "，".join(r.sample(_SENTENCES, r.randint(1, 4)))
        body = f"{topic}{r.choice(_PHRASES)}！{sentences}"
        if tag_text:
            body += ("" if r.random() < 0.3 else " ") + tag_text
    if mentioned:
        body += "  " + " ".join(f"@{name}" for name in mentioned)
    return body


def _age_text(age: int, timestamp: int) -> tuple[str, str]:
    """How the app shows the publish time (``corner_tag_info``), in Chinese and English."""
    if age < DAY:
        hours = max(1, age // 3600)
        return f"{hours}小时前", f"{hours} hours ago"
    if age < 2 * DAY:
        clock = datetime.fromtimestamp(timestamp + 8 * 3600, UTC).strftime("%H:%M")
        return f"昨天 {clock}", f"Yesterday {clock}"
    if age < 7 * DAY:
        return f"{age // DAY}天前", f"{age // DAY} days ago"
    when = datetime.fromtimestamp(timestamp + 8 * 3600, UTC)
    text = when.strftime("%m-%d") if age < 180 * DAY else when.strftime("%Y-%m-%d")
    return text, text


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
        "comment_descending": lambda k: -(api.parse_count(corpus.note(k)["comments_count"]) or 0),
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
        roll = r.random()
        # Real pages hold 20 or 10 items, non-notes included; other sizes mid-way are made up.
        size = 20 if roll < 0.65 else 10 if roll < 0.85 else r.randint(11, 19)
        extras = [
            (3, Slot("hot_query")) if number == 1 else None,
            (10, Slot("rec_query")) if number % 3 == 0 else None,
            (6, Slot("ads", f"ad#{r.randrange(AD_POOL)}")) if number % 4 == 2 else None,
        ]
        extras = [extra for extra in extras if extra is not None]
        repeat = bool(pages) and r.random() < 0.3  # the last note of the previous page comes again
        fresh = keys[position : position + size - len(extras) - repeat]
        slots = [Slot("note", keys[position - 1])] if repeat else []
        slots += [Slot("note", k) for k in fresh]
        position += len(fresh)
        for at, slot in extras:
            if slot.model_type != "hot_query" or len(slots) > 3:
                slots.insert(min(at, len(slots)), slot)
        pages.append(tuple(slots))
    pages.append(())
    return tuple(pages)


def _item(corpus: Corpus, slot: Slot, keyword: str) -> dict[str, Any]:
    if slot.model_type == "note":
        return {"model_type": "note", "note": corpus.note(slot.key)}
    if slot.model_type == "ads":
        r = random.Random(stable_hash(corpus.seed, "ads", keyword, slot.key))
        return real.ads_item(corpus.note(slot.key), r, advertiser=10_000_000 + stable_hash(slot.key) % 9_000_000)
    # No real hot_query or rec_query item has been seen: these two are guesses.
    if slot.model_type == "hot_query":
        return {
            "model_type": "hot_query",
            "hot_query": {"title": "大家都在搜", "queries": [{"name": f"{keyword} 推荐"}, {"name": f"{keyword} 测评"}]},
        }
    return {"model_type": "rec_query", "rec_query": {"title": "相关搜索", "queries": [{"name": f"{keyword} 平替"}]}}


@lru_cache(maxsize=2048)  # a page is 30 to 100 kB, like the real ones
def _page_data(corpus: Corpus, keyword: str, sort: str, note_type: str, note_time: str, page: int) -> bytes:
    layout = _layout(corpus, keyword, sort, note_type, note_time)
    slots = layout[page - 1] if page <= len(layout) else ()
    r = random.Random(stable_hash(corpus.seed, "page", keyword, sort, note_type, note_time, page))
    return orjson.dumps(real.page_data([_item(corpus, slot, keyword) for slot in slots], r))
