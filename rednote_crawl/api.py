"""The wire contract of Just One API's Xiaohongshu note search v2.

Everything the crawler knows about the vendor lives here: the URL and its
parameters, the filter values, the business codes and what to do about each,
the response envelope, pagination and the mapping of an API note to an output
item. This module is plain Python: it knows nothing of Scrapy's engine, so the
spider, the middlewares, the sandbox and the tests all share one definition.

The facts it rests on (the vendor's OpenAPI definition, and real answers it published): the
business result is the envelope's ``code``, not the HTTP status (HTTP 200 can carry an error,
HTTP 4xx/5xx the envelope, a gateway an HTML page or a cut-off body); there is no "has more",
total or cursor, so a query ends at its first page without items, and pages can be short in the
middle; the same note comes back on consecutive pages and under many keywords; counts may come
as display strings ("1.2万"); ``widgets_context`` is a JSON string. docs/architecture.md has more.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict
from urllib.parse import quote, urlencode

import orjson
from itemadapter import ItemAdapter

from rednote_crawl import stops

DEFAULT_BASE_URL = "https://api.justoneapi.com"
SEARCH_PATH = "/api/xiaohongshu/search-note/v2"
# Note detail, v1: the vendor's recommended version; why v1 and not v2-v7 is in docs/decisions.md.
DETAIL_PATH = "/api/xiaohongshu/get-note-detail/v1"
TOKEN_PARAM = "token"
EXPLORE_URL = "https://www.xiaohongshu.com/explore/{note_id}?xsec_token={xsec_token}"

# --- filters -----------------------------------------------------------------
# Each filter maps the values a user may type (the API's own, plus friendly
# names) to the one value sent on the wire.

SORTS: dict[str, str] = {
    "general": "general",
    "popularity_descending": "popularity_descending",
    "popular": "popularity_descending",
    "time_descending": "time_descending",
    "latest": "time_descending",
    "comment_descending": "comment_descending",
    "comments": "comment_descending",
    "collect_descending": "collect_descending",
    "collects": "collect_descending",
}
NOTE_TYPES: dict[str, str] = {
    "_0": "_0",
    "all": "_0",
    "_1": "_1",
    "video": "_1",
    "_2": "_2",
    "normal": "_2",
    "image": "_2",
}
# noteTime is sent in one of two forms: the vendor's OpenAPI enum ("vendor",
# the default) or the Chinese values of the user's document ("chinese").
# "any" sends no noteTime at all.
NOTE_TIME_STYLES: dict[str, dict[str, str]] = {
    "vendor": {"day": "ONE_DAY", "week": "ONE_WEEK", "half_year": "HALF_YEAR"},
    "chinese": {"day": "一天内", "week": "一周内", "half_year": "半年内"},
}
NOTE_TIMES: dict[str, str] = {"any": "any", "day": "day", "week": "week", "half_year": "half_year"}
for _style in NOTE_TIME_STYLES.values():
    NOTE_TIMES.update({wire: name for name, wire in _style.items()})

# The name an analyst knows for each value sent (the output's ``search.*_name``): the friendly name a
# user may type, one per wire value. noteTime's name is the canonical one (``Query.note_time``).
SORT_NAMES: dict[str, str] = {
    "general": "general",
    "popularity_descending": "popular",
    "time_descending": "latest",
    "comment_descending": "comments",
    "collect_descending": "collects",
}
NOTE_TYPE_NAMES: dict[str, str] = {"_0": "all", "_1": "video", "_2": "normal"}

DEFAULT_SORT = "general"
DEFAULT_NOTE_TYPE = "_0"
DEFAULT_NOTE_TIME = "any"


def parse_choices(option: str, raw: str | None, choices: Mapping[str, str], default: str) -> list[str]:
    """Turn ``"video,normal"`` into the canonical values, in order, each once.

    Raises ``ValueError`` naming the option and every accepted value.
    """
    if raw is None or not str(raw).strip():
        return [default]
    values: list[str] = []
    for part in str(raw).split(","):
        key = part.strip()
        canonical = choices.get(key) or choices.get(key.lower())
        if canonical is None:
            accepted = ", ".join(choices)
            raise ValueError(
                f"{option}={key!r} is not a valid value; use one of: {accepted} (comma-separated for several)"
            )
        if canonical not in values:
            values.append(canonical)
    return values


@dataclass(frozen=True, slots=True)
class Query:
    """One search: a keyword with one value of each filter. Pages are added per request."""

    keyword: str
    sort: str = DEFAULT_SORT
    note_type: str = DEFAULT_NOTE_TYPE
    note_time: str = DEFAULT_NOTE_TIME  # canonical name: any, day, week, half_year

    def params(self, page: int, note_time_style: str = "vendor") -> dict[str, str]:
        """The query string without the token, in the API's parameter names."""
        params = {"keyword": self.keyword, "page": str(page), "sort": self.sort, "noteType": self.note_type}
        if self.note_time != "any":
            params["noteTime"] = NOTE_TIME_STYLES[note_time_style][self.note_time]
        return params

    def describe(self) -> str:
        return f"keyword={self.keyword!r} sort={self.sort} note_type={self.note_type} note_time={self.note_time}"


def search_url(base_url: str, params: Mapping[str, str]) -> str:
    """The search URL; spaces become %20 and every reserved character is escaped."""
    return f"{base_url.rstrip('/')}{SEARCH_PATH}?{urlencode(params, quote_via=quote, safe='')}"


def detail_url(base_url: str, note_id: str) -> str:
    """The note detail call for one note: ``noteId`` (the token is added at the last hop)."""
    return f"{base_url.rstrip('/')}{DETAIL_PATH}?{urlencode({'noteId': note_id})}"


def add_token(url: str, token: str) -> str:
    """Append the token as the last query parameter (only done on the way out)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{TOKEN_PARAM}={quote(token, safe='')}"


# --- codes and what to do about them ------------------------------------------


class Action(enum.StrEnum):
    PARSE = "parse"
    RETRY = "retry"  # transient: retry with backoff, bounded
    SLOW_DOWN = "slow_down"  # rate limited: slow the token down, retry later
    DROP_QUERY = "drop_query"  # the parameters are wrong: never retried
    UNUSABLE = "unusable"  # paid for but unreadable (code 0 without items): the page fails, not retried
    STOP = "stop"  # nothing later can succeed: stop the whole crawl
    NOTE_GONE = "note_gone"  # a detail call: the answer concerns this one note (deleted, hidden, refused)


# The business codes of the vendor (its OpenAPI definition). Codes that stop the crawl are in stops.py.
CODE_NAMES: dict[int, str] = {
    0: "success",
    100: "invalid or inactive token",
    301: "collection failed, retry",
    302: "rate limit",
    303: "daily quota exceeded",
    400: "invalid parameters",
    500: "internal error",
    503: "service unavailable",
    600: "permission denied",
    601: "insufficient balance",
}


# --- reading an answer ---------------------------------------------------------------
# An answer that arrived whole (its brackets close) but that orjson refuses is not a cut-off body
# and is not asked for again and again: invalid UTF-8 inside its strings is replaced with U+FFFD
# (and counted), and an item of a list that still cannot be read (JSON nested deeper than orjson's
# 1024 levels, say) becomes ``UNPARSEABLE`` (skipped and counted by ``read_page``), so that the
# page's other notes go on. Only the envelope, ``data``, its lists and their items are taken apart.

SALVAGE_DEPTH = 3  # envelope (0) > data (1) > items (2) > one item (3): an item that fails is skipped
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.S)
_BYTE_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)
_KEY = re.compile(r'\s*("(?:[^"\\]|\\.)*")\s*:', re.S)


class _Unparseable:
    """An item of an answer's list that could not be read (a placeholder that ``read_page`` counts)."""

    def __repr__(self) -> str:
        return "UNPARSEABLE"


UNPARSEABLE: Any = _Unparseable()


class _Unreadable(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Decoded:
    """A body as JSON: ``value`` (None: unreadable), and what it took to read it."""

    value: Any
    whole: bool = True  # False: cut off (or not JSON at all)
    replaced: int = 0  # invalid UTF-8 sequences replaced with U+FFFD
    unparseable: int = 0  # list items that could not be read, left as UNPARSEABLE


def decode(body: bytes) -> Decoded:
    """Read a body as JSON; salvage what can be read of one that arrived whole (see above)."""
    try:
        return Decoded(orjson.loads(body))
    except orjson.JSONDecodeError:
        pass
    if not _whole(body):
        return Decoded(None, whole=False)
    text = body.decode("utf-8", "replace")
    replaced = text.count("\ufffd") - body.count("\ufffd".encode())
    try:
        return Decoded(orjson.loads(text), replaced=replaced)
    except orjson.JSONDecodeError:
        pass
    try:
        value, unparseable = _salvage(text, 0)
    except (_Unreadable, orjson.JSONDecodeError, RecursionError):
        return Decoded(None, replaced=replaced)
    return Decoded(value, replaced=replaced, unparseable=unparseable)


def _whole(body: bytes) -> bool:
    """Whether a body is one JSON object or list whose brackets all close, at its end: it was not cut off."""
    data = body.strip()
    if data[:1] not in (b"{", b"["):
        return False
    depth = 0
    for match in _BYTE_TOKEN.finditer(data):
        char = match.group()[:1]
        if char == b'"':
            continue
        depth += 1 if char in (b"{", b"[") else -1
        if depth == 0:
            return match.end() == len(data)
        if depth < 0:
            return False
    return False


def _parts(span: str) -> list[str]:
    """The members of an object, or the elements of a list, at the top level of ``span``."""
    depth, start, parts = 0, 1, []
    for match in _TOKEN.finditer(span):
        char = match.group()[0]
        if char == '"':
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                parts.append(span[start : match.start()])
                break
        elif depth == 1:  # a comma between two members
            parts.append(span[start : match.start()])
            start = match.end()
    return [part for part in parts if part.strip()]


def _salvage(text: str, depth: int) -> tuple[Any, int]:
    """``text`` as JSON, an item of a list that fails left as UNPARSEABLE (down to SALVAGE_DEPTH)."""
    try:
        return orjson.loads(text), 0
    except orjson.JSONDecodeError:
        if depth >= SALVAGE_DEPTH:
            raise
    span = text.strip()
    if span[:1] == "[":
        values: list[Any] = []
        lost = 0
        for part in _parts(span):
            try:
                value, n = _salvage(part, depth + 1)
            except (_Unreadable, orjson.JSONDecodeError, RecursionError):
                value, n = UNPARSEABLE, 1
            values.append(value)
            lost += n
        return values, lost
    if span[:1] == "{":
        members: dict[str, Any] = {}
        lost = 0
        for part in _parts(span):
            key = _KEY.match(part)
            if key is None:
                raise _Unreadable("not an object member")
            members[orjson.loads(key.group(1))], n = _salvage(part[key.end() :], depth + 1)
            lost += n
        return members, lost
    raise _Unreadable("not JSON")


@dataclass(frozen=True, slots=True)
class Answer:
    """What one HTTP answer means for the crawl.

    ``label`` names the answer in stats and logs: ``code_0``, ``code_302``,
    ``http_502_html``, ``http_200_truncated`` ...
    """

    action: Action
    label: str
    code: int | None = None
    message: str = ""
    envelope: dict[str, Any] | None = None
    unexpected: bool = False  # an undocumented code, or a 4xx without the envelope (wrong URL?)
    retries: int | None = None  # RETRY: at most this many (None: JUSTONEAPI_RETRY_TIMES)
    replaced: int = 0  # invalid UTF-8 sequences replaced with U+FFFD to read it

    @property
    def stop(self) -> stops.Stop | None:
        """The stop this answer causes (a fatal code), or None."""
        return stops.for_code(self.code)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii():
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


# Codes that, answering a note detail call, concern that one note (the vendor's schema lists them
# without a meaning; a deleted or hidden note, an id it refuses): they end that note's detail call,
# never the crawl, and are not retried. A 400 on a detail call (its one parameter, the note id) too.
NOTE_CODES = frozenset({101, 202, 300, 400, 404, 602})
SEARCH, DETAIL = "search", "detail"  # the kinds of call


def judge(status: int, body: bytes, kind: str = SEARCH) -> Answer:
    """Classify an HTTP answer by its business ``code``, not its HTTP status.

    HTTP 200 may carry an error code and HTTP 4xx/5xx may carry the envelope;
    an HTML page or a cut-off body is transient. An answer that arrived whole is read as far as it
    can be (``decode``); one that still cannot be read is tried once more, no more. Unknown codes
    are retried a bounded number of times (the safe default), never a crash.
    """
    decoded = decode(body)
    envelope = decoded.value
    if envelope is None and not decoded.whole:
        head = body.lstrip()[:1]
        kind = "html" if head == b"<" else "truncated" if head in (b"{", b"[") else "text" if body else "empty"
        action = Action.SLOW_DOWN if status == 429 else Action.RETRY  # a gateway's own 429 page
        # A redirect, a 4xx page or a 200 that is not the API's JSON: the URL is likely wrong.
        unexpected = status < 500 and status not in (408, 429)
        return Answer(
            action,
            f"http_{status}_{kind}",
            message=f"unreadable {kind} body ({len(body)} bytes)",
            unexpected=unexpected,
        )
    code = _as_int(envelope.get("code")) if isinstance(envelope, dict) else None
    if envelope is None:  # whole, but not JSON anyone can read: the same again would not help
        message = f"unreadable JSON body ({len(body)} bytes, arrived whole)"
        return Answer(Action.RETRY, f"http_{status}_unreadable", message=message, unexpected=True, retries=1)
    if code is None:
        return Answer(Action.RETRY, f"http_{status}_no_code", message="answer without a business code", unexpected=True)
    message = str(envelope.get("message") or CODE_NAMES.get(code, "unknown code"))
    label = f"code_{code}"
    if kind == DETAIL and code == 0:  # the one difference in the table: a note's own answers
        if detail_note(envelope) is None:
            return Answer(Action.NOTE_GONE, "code_0_no_note", code, "code 0 without the note (deleted or hidden)")
        return Answer(Action.PARSE, label, code, message, envelope, replaced=decoded.replaced)
    if kind == DETAIL and code in NOTE_CODES:
        return Answer(Action.NOTE_GONE, label, code, message)
    if code == 0:
        data = envelope.get("data")
        if not (isinstance(data, dict) and isinstance(data.get("items"), list)):
            # Paid for, but without a list of items: not the end of the query and not retried.
            return Answer(Action.UNUSABLE, "code_0_no_items", code, "code 0 without a data.items list")
        return Answer(Action.PARSE, label, code, message, envelope, replaced=decoded.replaced)
    fatal = stops.for_code(code) is not None
    if code == 302 or (status == 429 and not fatal):
        return Answer(Action.SLOW_DOWN, label, code, message)
    if code == 400:
        return Answer(Action.DROP_QUERY, label, code, message)
    if fatal:
        return Answer(Action.STOP, label, code, message)
    return Answer(Action.RETRY, label, code, message, unexpected=code not in CODE_NAMES)


# --- pages and notes ------------------------------------------------------------


class UserInfo(TypedDict):
    user_id: str | None
    nickname: str | None
    red_id: str | None
    avatar: str | None


class SearchInfo(TypedDict):
    sort: str
    sort_name: str
    note_type: str
    note_type_name: str
    note_time: str | None
    note_time_name: str


class Mention(TypedDict):
    user_id: str | None
    nickname: str | None


class ImageInfo(TypedDict):
    url: str | None
    width: int | None
    height: int | None


class NoteItem(TypedDict):
    """One output line. Field order is the output order."""

    note_id: str
    url: str | None
    xsec_token: str | None
    type: str | None
    title: str | None
    desc: str | None
    desc_truncated: bool
    hashtags: list[str]
    mentions: list[Mention]
    liked_count: int | None
    collected_count: int | None
    comments_count: int | None
    shared_count: int | None
    published_at: str | None
    published_at_china: str | None
    published_date_china: str | None
    edited_at: str | None
    updated_at: str | None
    user: UserInfo
    images: list[str]
    cover_url: str | None
    video_duration: int | None
    video_url: str | None
    brand_partnership: bool
    sponsored: bool
    keyword: str
    search: SearchInfo
    page: int
    rank: int
    fetched_at: str
    # With -a details=new|cut|brand (the note detail call, ``detail_fields``): why the note has no
    # details when it has none, its IP location and its images at original size.
    details: NotRequired[str]
    ip_location: NotRequired[str | None]
    images_original: NotRequired[list[ImageInfo]]
    raw: NotRequired[dict[str, Any]]


NOTE_FIELDS: tuple[str, ...] = tuple(NoteItem.__annotations__)
DETAIL_FIELDS: tuple[str, ...] = ("details", "ip_location", "images_original")  # only with -a details=
SEARCH_FIELDS: tuple[str, ...] = tuple(f for f in NOTE_FIELDS if f not in (*DETAIL_FIELDS, "raw"))  # every item


@dataclass(slots=True)
class Page:
    """The notes of one page and what was skipped on it."""

    notes: list[dict[str, Any]]
    skipped: Counter[str]
    size: int  # len(items), notes or not: 0 ends the query

    @property
    def is_last(self) -> bool:
        return self.size == 0


def read_page(envelope: Mapping[str, Any], keep_ads: bool = False) -> Page:
    """Split ``data.items`` into API notes and counted non-notes.

    ``ads`` items wrap a sponsored note; they are skipped unless ``keep_ads``.
    Anything without a note id is counted under its model type.
    """
    data = envelope.get("data")
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):  # judge() does not let such a page through
        items = []
    notes: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for item in items:
        if item is UNPARSEABLE:  # arrived whole, but no one can read it (decode)
            skipped["unparseable"] += 1
            continue
        if not isinstance(item, dict):
            skipped["malformed"] += 1
            continue
        model_type = str(item.get("model_type") or "unknown")
        note = None
        if model_type == "note":
            note = item.get("note")
        elif model_type == "ads" and keep_ads:
            ads = item.get("ads")
            note = ads.get("note") if isinstance(ads, dict) else None
            if isinstance(note, dict):
                note = {**note, "_sponsored": True}
        if isinstance(note, dict) and _note_id(note):
            notes.append(note)
        else:
            skipped[model_type if model_type != "note" else "note_without_id"] += 1
    return Page(notes, skipped, len(items))


@dataclass(frozen=True, slots=True)
class PageOutcome:
    """What one page means for its query: the notes it gives and whether the query goes on.

    The spider follows it (next page or not), and the page's bookkeeping (stats, the job
    folder, the report) records it: one function decides, everybody reads the result.
    """

    notes: list[tuple[int, dict[str, Any]]]  # (rank, API note) of the notes kept, in page order
    skipped: Counter[str]  # items that are not notes (by model type), and notes without an id
    seen: int  # notes on the page, older ones included
    older: int  # notes published before ``since``: not kept
    end: str | None  # why the query ends here: "empty_page", "max_pages" or "since"; None: it goes on
    next_rank: int  # the rank offset of the next page
    odd_ids: int = 0  # notes whose id is not of the API's form (kept: odd_note_id)

    @property
    def goes_on(self) -> bool:
        return self.end is None


QUERY_ENDS = ("empty_page", "max_pages", "since")


def page_outcome(
    envelope: Mapping[str, Any],
    *,
    page: int,
    rank_offset: int,
    max_pages: int,
    since: int | None,
    sort: str,
    keep_ads: bool = False,
) -> PageOutcome:
    """A query ends at its first empty page (the API has no "has more"), at ``max_pages``, or
    once its notes are older than ``since``: sorted by time, at the first older note (every later
    page is older too); otherwise when a whole page is older (the best sign there is)."""
    read = read_page(envelope, keep_ads=keep_ads)
    kept: list[tuple[int, dict[str, Any]]] = []
    older = 0
    for rank, note in enumerate(read.notes, start=rank_offset + 1):
        published = epoch_seconds(note.get("timestamp"))
        if since is not None and published is not None and published < since:
            older += 1
        else:
            kept.append((rank, note))
    since_reached = older > 0 and (sort == "time_descending" or older == len(read.notes))
    end = "empty_page" if read.is_last else "max_pages" if page >= max_pages else "since" if since_reached else None
    odd_ids = sum(1 for note in read.notes if odd_note_id(_note_id(note) or ""))
    return PageOutcome(kept, read.skipped, len(read.notes), older, end, rank_offset + len(read.notes), odd_ids)


# A note id is 24 hex digits (docs/reference.md). Another form is kept (the note was paid for, and
# docs/decisions.md accepts other forms) but counted, and one longer than NOTE_ID_MAX characters is
# kept as its first characters, "~" and 16 hex digits of its SHA-256 (two long ids stay apart). An id
# goes into the note's URL quoted, never as it is; no file name is made from one.
NOTE_ID_MAX = 64
_NOTE_ID = re.compile(r"[0-9a-f]{24}")


def _note_id(note: Mapping[str, Any]) -> str | None:
    note_id = note.get("id")
    note_id = note_id.strip() if isinstance(note_id, str) else None
    if not note_id:
        return None
    if len(note_id) > NOTE_ID_MAX:
        digest = hashlib.sha256(note_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        note_id = f"{note_id[: NOTE_ID_MAX - 17]}~{digest}"
    return note_id


def odd_note_id(note_id: str) -> bool:
    """An id not of the API's form (24 lowercase hex digits)."""
    return _NOTE_ID.fullmatch(note_id) is None


_COUNT_UNITS = {"万": 10_000, "w": 10_000, "W": 10_000, "亿": 100_000_000, "k": 1_000, "K": 1_000}


def parse_count(value: Any) -> int | None:
    """Counts come as ints, numeric strings or display strings like ``"1.2万"`` / ``"10万+"``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if abs(value) < _INT64 else None
    if isinstance(value, str):
        text = value.strip().rstrip("+").replace(",", "")
        factor = 1
        if text and text[-1] in _COUNT_UNITS:
            factor = _COUNT_UNITS[text[-1]]
            text = text[:-1]
        try:
            value = float(text) * factor
        except ValueError:
            return None
    if isinstance(value, float) and math.isfinite(value) and abs(value) < _INT64:
        return round(value)
    return None  # "1e30" is no count; and JSON Lines writers (orjson) take 64-bit integers only


_INT64 = 2**63


def epoch_seconds(value: Any) -> int | None:
    """A publish time as epoch seconds; the API sends seconds, sometimes milliseconds."""
    seconds = parse_count(value)
    if seconds is None or seconds <= 0:
        return None
    return seconds // 1000 if seconds > 10**11 else seconds


def _clock(seconds: int) -> str | None:
    """``YYYY-MM-DDTHH:MM:SS`` of epoch seconds read as UTC (``time.gmtime``: a few times faster than
    ``datetime.strftime``, which cost JSON Lines 5% of its CPU per note for the three times of a note)."""
    try:
        t = time.gmtime(seconds)
    except (OverflowError, OSError, ValueError):
        return None
    if not 1 <= t.tm_year <= 9999:
        return None
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def iso_utc(value: Any) -> str | None:
    seconds = epoch_seconds(value)
    if seconds is None:
        return None
    clock = _clock(seconds)
    return clock + "Z" if clock else None


# China's time: UTC+8 all year (China has no daylight saving time), the dates the app shows.
CHINA_OFFSET = 8 * 3600


def china_time(value: Any) -> tuple[str, str] | tuple[None, None]:
    """(ISO 8601 time with ``+08:00``, calendar date) in China's time zone, from epoch seconds or ms."""
    seconds = epoch_seconds(value)
    clock = _clock(seconds + CHINA_OFFSET) if seconds is not None else None
    if clock is None:
        return None, None
    return clock + "+08:00", clock[:10]


def _str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


# Search results carry previews, not whole texts: ``desc`` is cut at 60 UTF-16 units, and a title made
# from the text at 40 (the real pages in tests/data/: 23 of 41 descs are exactly 60 units long, none
# longer; "…#在家做美食  #一" is cut inside a tag, and so is the title "…#家庭版酸辣粉 #在", 40 long).
# A cut never splits a character of 2 units (an emoji), so a cut preview can be 59 units long: 5 descs
# of the samples are, and one of them (note 6a157051…) @-mentions HOWTO薯 after its end.
DESC_PREVIEW_UNITS = 60
TITLE_PREVIEW_UNITS = 40

# A tag is ``#tag`` (real notes write ``#tag  #tag``, or glue it to the text: "超好吃#酸辣粉") or the
# app's ``#tag[话题]#``; the closing ``#`` belongs to the bracket form only, so ``#a#b`` is two tags.
_HASHTAG = re.compile(r"#([^#\s\[\]]+)(?:\[[^\]]*\]#?)?")
_NOT_A_TAG = ("\ufe0f", "\u20e3")  # "#️⃣" is the keycap emoji, not a tag


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit the API cuts previews in (an emoji outside the BMP counts 2).
    Encoded in C: counting the wide characters in Python cost 3 µs a text, 3 texts a note."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _complete_tags(text: str | None, preview_units: int) -> Iterator[str]:
    """The tags of one text, but for one whose name runs to the end of a text as long as the API's
    preview of it: that one may have been cut."""
    cut_here = len(text or "") if utf16_len(text or "") >= preview_units else -1
    for match in _HASHTAG.finditer(text or ""):
        tag = match.group(1)
        if match.end(1) != cut_here and not tag.startswith(_NOT_A_TAG):
            yield tag


def hashtags(title: str | None, desc: str | None) -> list[str]:
    """The note's complete tags, title first, in order, each once.

    A tag that ends a text cut at its preview length may be a fragment ("#在家做美食" cut to "#在"):
    it is left out, unless the same tag is written complete elsewhere in the note.
    """
    seen: dict[str, None] = {}
    for text, units in ((title, TITLE_PREVIEW_UNITS), (desc, DESC_PREVIEW_UNITS)):
        for tag in _complete_tags(text, units):
            seen.setdefault(tag, None)
    return list(seen)


# The shortest preview that may be cut: the API cuts at 60 units (59 when a 2-unit character would
# cross the limit) and then trims the whitespace at the cut. Real notes separate tags with two spaces
# ("#tag  #tag"), so a cut that lands after them leaves 58 units; so does a cut at 59 after one space.
DESC_MAY_BE_CUT_UNITS = DESC_PREVIEW_UNITS - 2


def desc_truncated(desc: str | None) -> bool:
    """Whether ``desc`` may be a cut preview of a longer text: 58 UTF-16 units or longer. A preview is
    cut at 60 units (59 when a 2-unit emoji would cross the limit) and the whitespace at the cut is
    trimmed, so a cut preview that lost the two spaces between tags is 58 units long. A whole text of
    58 or 59 units is marked too ("may be cut"); a cut that lost three or more units of whitespace is
    not seen."""
    return desc is not None and utf16_len(desc) >= DESC_MAY_BE_CUT_UNITS


def _images(note: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """The large image of each, and the cover's: ``url`` is a 576 px preview on the first image only
    (the others send ``url: ""``), ``url_size_large`` is the 1440 px image of every one. The cover
    is the image at ``cover_image_index`` in ``images_list`` (an image without a URL counts there),
    else the first."""
    images = note.get("images_list")
    urls_at = [
        (_str(image.get("url_size_large")) or _str(image.get("url"))) if isinstance(image, dict) else None
        for image in (images if isinstance(images, list) else ())
    ]
    urls = [url for url in urls_at if url]
    index = parse_count(note.get("cover_image_index")) or 0
    cover = urls_at[index] if 0 <= index < len(urls_at) and urls_at[index] else (urls[0] if urls else None)
    return urls, cover


def _mentions(note: Mapping[str, Any]) -> list[Mention]:
    """The accounts the note @-mentions (``at_user_list``), often brands."""
    mentions: list[Mention] = []
    users = note.get("at_user_list")
    for user in users if isinstance(users, list) else ():
        if isinstance(user, dict):
            mention: Mention = {"user_id": _str(user.get("user_id")), "nickname": _str(user.get("nickname"))}
            if mention["user_id"] or mention["nickname"]:
                mentions.append(mention)
    return mentions


def _widgets_context(note: Mapping[str, Any]) -> dict[str, Any]:
    """``widgets_context``, which the API sends as a JSON string; {} when it is missing or unreadable."""
    context = note.get("widgets_context")
    if isinstance(context, str) and context:
        try:
            context = orjson.loads(context)
        except orjson.JSONDecodeError:
            return {}
    return context if isinstance(context, dict) else {}


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _brand_partnership(context: Mapping[str, Any]) -> bool:
    """A note a brand paid for: ``order_cooperate`` or ``commercial_bridge_note`` in ``widgets_context``."""
    return _flag(context.get("order_cooperate")) or _flag(context.get("commercial_bridge_note"))


def _video_duration(note: Mapping[str, Any], context: Mapping[str, Any]) -> int | None:
    """Whole seconds (``85``): ``widgets_context.video_duration``, else (missing or unreadable)
    ``video_info_v2.capa.duration``."""
    video = note.get("video_info_v2")
    capa = video.get("capa") if isinstance(video, dict) else None
    for duration in (context.get("video_duration"), capa.get("duration") if isinstance(capa, dict) else None):
        seconds = parse_count(duration)
        if seconds is not None and seconds >= 0:
            return seconds
    return None


def _video_url(note: Mapping[str, Any]) -> str | None:
    """The video's stream (``video_info_v2.media.stream``: the default h264 stream's ``master_url``,
    else the first of any codec). Signed by the CDN: it expires."""
    video = note.get("video_info_v2")
    media = video.get("media") if isinstance(video, dict) else None
    stream = media.get("stream") if isinstance(media, dict) else None
    if not isinstance(stream, dict):
        return None
    found: list[tuple[int, str]] = []
    for codec in ("h264", "h265", "av1", "h266"):
        for entry in stream.get(codec) or ():
            if isinstance(entry, dict) and (url := _str(entry.get("master_url"))):
                found.append((0 if codec == "h264" and entry.get("default_stream") in (1, True) else 1, url))
    return min(found, key=lambda pair: pair[0])[1] if found else None


def note_item(
    note: Mapping[str, Any],
    *,
    query: Query,
    note_time_sent: str | None,
    page: int,
    rank: int,
    fetched_at: str,
    keep_raw: bool = False,
) -> NoteItem:
    """Map one API note (``items[].note``) to an output item. Missing or null fields are normal."""
    note_id = _note_id(note)
    assert note_id is not None, "read_page() only yields notes with an id"
    xsec_token = _str(note.get("xsec_token"))
    title, desc = _str(note.get("title")), _str(note.get("desc"))
    user = note.get("user") if isinstance(note.get("user"), dict) else {}
    images, cover = _images(note)
    context = _widgets_context(note)
    published = epoch_seconds(note.get("timestamp"))
    published_china, published_date = china_time(published)
    item: NoteItem = {
        "note_id": note_id,
        "url": (
            EXPLORE_URL.format(note_id=quote(note_id, safe=""), xsec_token=quote(xsec_token, safe=""))
            if xsec_token
            else None
        ),
        "xsec_token": xsec_token,
        "type": _str(note.get("type")),
        "title": title,
        "desc": desc,
        "desc_truncated": desc_truncated(desc),
        "hashtags": hashtags(title, desc),
        "mentions": _mentions(note),
        "liked_count": parse_count(note.get("liked_count")),
        "collected_count": parse_count(note.get("collected_count")),
        "comments_count": parse_count(note.get("comments_count")),
        "shared_count": parse_count(note.get("shared_count")),
        "published_at": iso_utc(published),
        "published_at_china": published_china,
        "published_date_china": published_date,
        "edited_at": iso_utc(note.get("last_update_time")),  # 0 when never edited: None
        "updated_at": iso_utc(note.get("update_time")),  # milliseconds
        "user": {
            "user_id": _str(user.get("userid")),
            "nickname": _str(user.get("nickname")),
            "red_id": _str(user.get("red_id")),
            "avatar": _str(user.get("images")),
        },
        "images": images,
        "cover_url": cover,
        "video_duration": _video_duration(note, context),
        "video_url": _video_url(note),
        "brand_partnership": _brand_partnership(context),
        "sponsored": bool(note.get("_sponsored")),
        "keyword": query.keyword,
        "search": {
            "sort": query.sort,
            "sort_name": SORT_NAMES.get(query.sort, query.sort),
            "note_type": query.note_type,
            "note_type_name": NOTE_TYPE_NAMES.get(query.note_type, query.note_type),
            "note_time": note_time_sent,
            "note_time_name": query.note_time,
        },
        "page": page,
        "rank": rank,
        "fetched_at": fetched_at,
    }
    if keep_raw:
        item["raw"] = {k: v for k, v in note.items() if k != "_sponsored"}
    return item


# --- note detail -----------------------------------------------------------------

DETAILS_MODES = ("none", "new", "cut", "brand")  # -a details=: which new notes get a detail call


class Details(enum.StrEnum):
    """The ``details`` field: whether the note's details came, and why not when they did not."""

    FETCHED = "fetched"
    NOT_ASKED = "not_asked"  # the note did not match -a details= (or was found by an earlier crawl)
    FAILED = "failed"  # the detail call failed after its retries
    NOTE_GONE = "note_gone"  # the API answered that the note is gone (deleted, hidden) or refused it
    NOT_SENT = "not_sent"  # the crawl stopped before the call (no job folder to finish it later)


def wants_details(mode: str, item: Mapping[str, Any]) -> bool:
    """Whether a new note gets a detail call under ``-a details=mode``."""
    if mode == "new":
        return True
    if mode == "cut":
        return bool(item.get("desc_truncated"))
    if mode == "brand":
        return bool(item.get("brand_partnership"))
    return False


def detail_note(envelope: Mapping[str, Any]) -> dict[str, Any] | None:
    """The note of a detail answer: v1 puts it at ``data[0].note_list[0]``; v6's shape (the note
    itself at ``data[0]``) is read too. None when the answer holds no note."""
    data = envelope.get("data")
    first = data[0] if isinstance(data, list) and data else data if isinstance(data, dict) else None
    if not isinstance(first, dict):
        return None
    notes = first.get("note_list")
    note = notes[0] if isinstance(notes, list) and notes else first if "note_list" not in first else None
    return note if isinstance(note, dict) and _note_id(note) else None


def _original_images(note: Mapping[str, Any]) -> list[ImageInfo]:
    """Each image at original size (``original``, else ``url``) with its width and height."""
    found: list[ImageInfo] = []
    images = note.get("images_list")
    for image in images if isinstance(images, list) else ():
        if isinstance(image, dict):
            url = _str(image.get("original")) or _str(image.get("url_size_large")) or _str(image.get("url"))
            found.append({"url": url, "width": parse_count(image.get("width")), "height": parse_count(image.get("height"))})
    return found


def detail_fields(detail: Mapping[str, Any]) -> dict[str, Any]:
    """What a detail answer's note adds to (or corrects in) the search's item: the whole ``desc``,
    every topic (``hash_tag``, then any other ``#tag`` of the whole text), the share count, the IP
    location, the images at original size, the edit time. The search's own fields (keyword, page,
    rank, counts it has, the video's stream) stay."""
    desc, title = _str(detail.get("desc")), _str(detail.get("title"))
    topics = [
        name
        for tag in (detail.get("hash_tag") if isinstance(detail.get("hash_tag"), list) else ())
        if isinstance(tag, dict) and (name := _str(tag.get("name")))
    ]
    tags = list(dict.fromkeys([*topics, *_complete_tags(title, 10**9), *_complete_tags(desc, 10**9)]))
    fields: dict[str, Any] = {
        "desc": desc,
        "desc_truncated": False,
        "hashtags": tags,
        "ip_location": _str(detail.get("ip_location")),
        "images_original": _original_images(detail),
        "details": Details.FETCHED.value,
    }
    if title:
        fields["title"] = title
    if (shared := parse_count(detail.get("shared_count"))) is not None:
        fields["shared_count"] = shared
    if edited := iso_utc(detail.get("last_update_time")):
        fields["edited_at"] = edited
    return fields


def merge_details(item: dict[str, Any], detail: Mapping[str, Any] | None, status: str) -> dict[str, Any]:
    """The item with its details, or without them and saying why (``status``)."""
    if detail is None:
        return {**item, "details": status, "ip_location": None, "images_original": []}
    return {**item, **detail_fields(detail)}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_dict(item: Any) -> Any:
    """The item as orjson takes it. Notes are plain dicts already: ItemAdapter.asdict() would copy
    each one deeply, checking every nested value (it was the crawl's biggest CPU cost per note)."""
    return item if type(item) is dict else ItemAdapter(item).asdict()


def dumps(data: Any) -> bytes:
    """A note as one JSON object: the line format of the feed and of the Redis items list."""
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
