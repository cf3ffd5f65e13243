"""An offline replica of ``GET /api/xiaohongshu/search-note/v2``.

It validates parameters like the real endpoint, answers from the
deterministic :class:`~rednote_crawl.sandbox.corpus.Corpus`, and injects the
faults the crawler must survive: business codes (301, 302 from a per-token
token bucket, 303 after a quota, 100, 400, 500, 503, 600, 601), HTML 502
gateway pages, cut-off bodies, dropped connections and latency.

Every call is written to a request log (``SandboxServer.log`` and
``GET /__sandbox__/log``) so tests can count what was paid for. The log keeps a
short hash of the token, never the token.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp import web

from rednote_crawl import api
from rednote_crawl.sandbox.corpus import Corpus, stable_hash

# HTTP status that goes with each business code when ``status_style`` is
# "mapped" (the vendor's OpenAPI lists these statuses for the envelope).
MAPPED_STATUS = {
    0: 200,
    404: 404,
    100: 401,
    301: 200,
    302: 429,
    303: 429,
    400: 400,
    500: 500,
    503: 503,
    600: 403,
    601: 403,
}
# A fault is a business code (any number: 301, 601, or one the vendor never documented like 602),
# or one of these raw answers. "cut" and "slow" are paid pages that the client may not get whole;
# "gzipbomb", "badutf8" and "deepjson" are paid pages that arrive whole but that a client cannot
# take as they are (docs/sandbox.md).
PAID_FAULTS = frozenset({"cut", "slow", "gzipbomb", "badutf8", "deepjson"})
RAW_FAULTS = frozenset({"html502", "html200", "reset"}) | PAID_FAULTS
GZIP_BOMB_PADDING = 8 * 2**20  # bytes of JSON whitespace after the page: gzipped, some 8 kB
DEEP_JSON_LEVELS = 2000  # orjson reads 1024 levels at most
FAULT_KINDS = "a business code (301, 302, 303, 100, 400, 500, 503, 600, 601, ...) or " + ", ".join(sorted(RAW_FAULTS))
INT32_MAX = 2**31 - 1
VALID_NOTE_TIMES = {wire: name for style in api.NOTE_TIME_STYLES.values() for name, wire in style.items()}
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


_FAULT_SPEC = re.compile(
    rf"(\d+|{'|'.join(sorted(RAW_FAULTS, key=len, reverse=True))})(?::([\d.]+))?(?:@(.*?)(?:#(\d+))?)?(?:x(\d+))?"
)


@dataclass
class Fault:
    """Answer ``kind`` instead of the page, for matching calls.

    ``rate`` is the share of matching calls that fail, decided by a hash of the
    call (query, page, attempt number): the same crawl meets the same faults
    every run. ``times`` fails only the first N matching calls of each page.
    """

    kind: str
    rate: float = 1.0
    keyword: str | None = None
    page: int | None = None
    times: int | None = None

    def __post_init__(self) -> None:
        if not (self.kind.isdigit() or self.kind in RAW_FAULTS):
            raise ValueError(f"unknown fault {self.kind!r}; use {FAULT_KINDS}")
        if not 0 <= self.rate <= 1:
            raise ValueError(f"fault rate {self.rate} must be between 0 and 1")

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``KIND[:RATE][@KEYWORD[#PAGE]][xTIMES]``, e.g. ``301:0.1``, ``html502@Nike#2x2``."""
        match = _FAULT_SPEC.fullmatch(text)
        if match is None:
            raise ValueError(
                f"unknown fault {text!r}: use KIND[:RATE][@KEYWORD[#PAGE]][xTIMES], e.g. 301:0.1 or 301@Nike#2x1"
            )
        kind, rate, keyword, page, times = match.groups()
        if keyword and page is None and times:  # "301@Xbox360": x360 is part of the keyword
            keyword, times = f"{keyword}x{times}", None
        return cls(
            kind,
            float(rate) if rate else 1.0,
            keyword or None,
            int(page) if page else None,
            int(times) if times else None,
        )

    def hits_detail(self, note_id: str, attempt: int, seed: int) -> bool:
        """For a note detail call: a fault naming no keyword, the keyword ``detail`` or the note's id."""
        if self.keyword not in (None, "detail", note_id) or self.page is not None:
            return False
        if self.times is not None and attempt >= self.times:
            return False
        return self.rate >= 1 or stable_hash(seed, self.kind, "detail", note_id, attempt) % 10_000 < self.rate * 10_000

    def hits(self, keyword: str, page: int, attempt: int, seed: int) -> bool:
        if self.keyword is not None and keyword != self.keyword:
            return False
        if self.page is not None and page != self.page:
            return False
        if self.times is not None and attempt >= self.times:
            return False
        return self.rate >= 1 or stable_hash(seed, self.kind, keyword, page, attempt) % 10_000 < self.rate * 10_000


@dataclass
class SandboxConfig:
    seed: int = 7
    latency: float = 0.0  # seconds per call, +-20%
    rate_limit: float | None = None  # calls per second per token; more get 302
    quota: int | None = None  # code-0 answers per token; after that 303
    tokens: frozenset[str] | None = None  # None: any non-empty token is valid
    token_codes: dict[str, int] = field(default_factory=dict)  # token -> 100/600/601
    faults: list[Fault] = field(default_factory=list)
    status_style: str = "mapped"  # "mapped": HTTP status per code; "200": always HTTP 200
    slow_seconds: float = 5.0  # how long a "slow" fault stalls before it answers the page
    retry_after: float | None = None  # sent as Retry-After with 302 answers
    log_limit: int = 1_000_000  # calls kept in the request log (a long-running sandbox stays bounded)
    cassettes: str | None = None  # a folder of betamax cassettes: their answers are served as recorded
    replay_only: bool = False  # with cassettes: a call without a recording answers 404


class TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate, self.capacity = rate, max(1.0, rate)
        self.tokens, self.stamp = self.capacity, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def token_fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def _damaged(data: bytes, fault: str | None) -> bytes:
    """A page's ``data`` with the damage of a "badutf8" or "deepjson" fault, in its first note."""
    at = data.find(b'"desc":"') + len(b'"desc":"') if fault == "badutf8" else data.find(b'"note":{') + len(b'"note":{')
    if fault == "badutf8" and at >= len(b'"desc":"'):
        return data[:at] + b"\xff\xfe bad bytes \xc3" + data[at:]  # not UTF-8, inside one note's desc
    if fault == "deepjson" and at >= len(b'"note":{'):
        return data[:at] + b'"deep":' + b"[" * DEEP_JSON_LEVELS + b"]" * DEEP_JSON_LEVELS + b"," + data[at:]
    return data


class SandboxServer:
    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.corpus = Corpus(seed=self.config.seed)
        self.log: deque[dict[str, Any]] = deque(maxlen=self.config.log_limit)
        self._attempts: dict[tuple[Any, ...], int] = {}
        self._paid: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._random = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._recordings: dict[tuple[Any, ...], tuple[int, str, bytes]] = {}
        if self.config.cassettes:
            self.load_cassettes(Path(self.config.cassettes))

    # --- HTTP ------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(api.SEARCH_PATH, self.search)
        app.router.add_get(api.DETAIL_PATH, self.detail)
        app.router.add_get("/__sandbox__/log", self.show_log)
        app.router.add_get("/__sandbox__/health", self.health)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "calls": len(self.log)})

    async def show_log(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(list(self.log)), content_type="application/json")

    async def search(self, request: web.Request) -> web.StreamResponse:
        q = request.rel_url.query
        token = q.get("token", "")
        keyword = q.get("keyword", "")
        page_text = q.get("page", "1")
        sort = q.get("sort", "general")
        note_type = q.get("noteType", "_0")
        note_time = q.get("noteTime")
        entry: dict[str, Any] = {
            "time": time.time(),
            "token": token_fingerprint(token),
            "keyword": keyword,
            "page": page_text,
            "sort": sort,
            "noteType": note_type,
            "noteTime": note_time,
        }
        if self.config.latency:
            await asyncio.sleep(self.config.latency * self._random.uniform(0.8, 1.2))
        recording = self._recordings.get(self._call_key(q)) if self._recordings else None
        if recording is not None or self.config.replay_only:
            return self._replay(entry, token, recording)
        answer = self._answer(entry, token, keyword, page_text, sort, note_type, note_time)
        self.log.append(entry)
        if isinstance(answer, bytes):
            answer = _damaged(answer, entry.get("fault"))
        return await self._respond(request, entry, answer)

    async def _respond(self, request: web.Request, entry: dict[str, Any], answer: int | str | bytes) -> web.StreamResponse:
        """The HTTP answer to one call: a fault of the connection or the gateway, a code's envelope, or
        ``data`` in a code-0 envelope (late, cut or a gzip bomb, as the call's fault says)."""
        if answer == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if answer in ("html502", "html200"):
            return web.Response(status=int(answer[4:]), body=HTML_502, content_type="text/html")
        if isinstance(answer, int):
            return self._envelope(answer, api.CODE_NAMES.get(answer, "undocumented error"))
        assert isinstance(answer, bytes)
        body = self._envelope_bytes(0, "success", answer)
        if entry.get("fault") == "slow":  # the work is done (and paid); the answer comes late
            await asyncio.sleep(self.config.slow_seconds)
        if entry.get("fault") == "cut":
            return web.Response(status=200, body=body[: len(body) // 2], content_type="application/json")
        if entry.get("fault") == "gzipbomb":  # a whole page that inflates to GZIP_BOMB_PADDING bytes and more
            bomb = gzip.compress(body + b" " * GZIP_BOMB_PADDING, compresslevel=6)
            headers = {"Content-Encoding": "gzip"}
            return web.Response(status=200, body=bomb, content_type="application/json", headers=headers)
        return web.Response(status=200, body=body, content_type="application/json")

    async def detail(self, request: web.Request) -> web.StreamResponse:
        """Note detail (v1): the note's whole text and more, for a note search returned; the same
        token checks, rate limit, quota, faults and codes as search. A fault applies to detail calls
        when it names no keyword, or the keyword ``detail``, or the note's id (``404@detail:0.1``: a
        tenth of the notes are gone)."""
        q = request.rel_url.query
        token = q.get("token", "")
        note_id = q.get("noteId", "")
        entry: dict[str, Any] = {"time": time.time(), "token": token_fingerprint(token), "kind": "detail", "note_id": note_id}
        if self.config.latency:
            await asyncio.sleep(self.config.latency * self._random.uniform(0.8, 1.2))
        config = self.config
        answer: int | str | bytes
        with self._lock:
            code = self._check_token(token)
            if code is None and not note_id.strip():
                code = 400
            if code is None:
                code = self._account(token)
            fault = None
            if code is None:
                call = ("detail", note_id)
                attempt = self._attempts.get(call, 0)
                self._attempts[call] = attempt + 1
                fault = next((f for f in config.faults if f.hits_detail(note_id, attempt, config.seed)), None)
                if fault is not None:
                    entry["fault"] = fault.kind
                    if fault.kind.isdigit():
                        code = int(fault.kind)
            if code is not None:
                entry["code"] = code
                answer = code
            elif fault is not None and fault.kind not in PAID_FAULTS:
                entry["code"] = None
                answer = fault.kind
            else:
                entry["code"] = 0
                self._paid[token] = self._paid.get(token, 0) + 1
                data = self.corpus.detail_data(note_id)
                entry["found"] = data is not None
                answer = data if data is not None else b"[]"
            self.log.append(entry)
        return await self._respond(request, entry, answer)

    def _account(self, token: str) -> int | None:
        """The token's rate limit and daily quota, for any paid call (under the lock): 302, 303 or None."""
        config = self.config
        if config.rate_limit:
            bucket = self._buckets.setdefault(token, TokenBucket(config.rate_limit))
            if not bucket.take():
                return 302
        if config.quota is not None and self._paid.get(token, 0) >= config.quota:
            return 303
        return None

    def _answer(
        self,
        entry: dict[str, Any],
        token: str,
        keyword: str,
        page_text: str,
        sort: str,
        note_type: str,
        note_time: str | None,
    ) -> int | str | bytes:
        """The code, raw fault or page ``data`` for one call; records it in ``entry``."""
        config = self.config
        with self._lock:
            code = self._check_token(token)
            if code is None:
                digits = page_text.isascii() and page_text.isdigit()
                page = int(page_text) if digits and int(page_text) <= INT32_MAX else 0  # an int32, >= 1
                note_time_name = VALID_NOTE_TIMES.get(note_time) if note_time is not None else "any"  # "" is invalid
                if (
                    not keyword.strip()
                    or page < 1
                    or sort not in api.SORTS.values()
                    or note_type not in ("_0", "_1", "_2")
                    or note_time_name is None
                ):
                    code = 400
            if code is None:
                code = self._account(token)
            if code is None:
                call = (keyword, sort, note_type, note_time, page)
                attempt = self._attempts.get(call, 0)
                self._attempts[call] = attempt + 1
                fault = next((f for f in config.faults if f.hits(keyword, page, attempt, config.seed)), None)
                if fault is not None:
                    entry["fault"] = fault.kind
                    if fault.kind.isdigit():
                        code = int(fault.kind)
                    elif fault.kind not in PAID_FAULTS:
                        entry["code"] = None
                        return fault.kind
            if code is not None:
                entry["code"] = code
                return code
            entry["code"] = 0
            self._paid[token] = self._paid.get(token, 0) + 1
            assert note_time_name is not None
            layout = self.corpus.layout(keyword, sort, note_type, note_time_name)
            entry["items"] = len(layout[page - 1]) if page <= len(layout) else 0
        return self.corpus.page_data(keyword, sort, note_type, note_time_name, page)

    def _replay(self, entry: dict[str, Any], token: str, recording: tuple[int, str, bytes] | None) -> web.Response:
        with self._lock:
            code = self._check_token(token)
            entry["replayed"] = recording is not None
            if code is None and recording is None:
                code = 404  # replay_only and no recording of this call
            if code is not None:
                entry["code"] = code
                self.log.append(entry)
                return self._envelope(
                    code, "no recording of this call" if code == 404 else api.CODE_NAMES.get(code, "")
                )
            assert recording is not None
            status, content_type, body = recording
            answer = api.judge(status, body)
            entry["code"] = answer.code
            if answer.code == 0:
                entry["items"] = api.read_page(answer.envelope or {}).size
            self.log.append(entry)
        return web.Response(status=status, body=body, content_type=content_type)

    def _check_token(self, token: str) -> int | None:
        if not token:
            return 100
        if token in self.config.token_codes:
            return self.config.token_codes[token]
        if self.config.tokens is not None and token not in self.config.tokens:
            return 100
        return None

    def _envelope_bytes(self, code: int, message: str, data: bytes = b"null") -> bytes:
        request_id = f"{self._random.getrandbits(64):016x}"
        record_time = time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(time.time() + 8 * 3600))
        return b"".join(
            (
                b'{"code":',
                str(code).encode(),
                b',"data":',
                data,
                b',"message":',
                orjson.dumps(message),
                b',"recordTime":"',
                record_time.encode(),
                b'","requestId":"',
                request_id.encode(),
                b'"}',
            )
        )

    def _envelope(self, code: int, message: str) -> web.Response:
        status = 200 if self.config.status_style == "200" else MAPPED_STATUS.get(code, 200)
        headers = {"Retry-After": f"{self.config.retry_after:g}"} if code == 302 and self.config.retry_after else None
        return web.Response(
            status=status, body=self._envelope_bytes(code, message), content_type="application/json", headers=headers
        )

    # --- recorded answers ------------------------------------------------------------
    @staticmethod
    def _call_key(params: dict[str, Any]) -> tuple[Any, ...]:
        return (
            params.get("keyword", ""),
            str(params.get("page", "1")),
            params.get("sort", "general"),
            params.get("noteType", "_0"),
            params.get("noteTime"),
        )

    def add_recording(
        self, params: dict[str, Any], status: int, body: bytes, content_type: str = "application/json"
    ) -> None:
        """Answer the call with these parameters (the token aside) exactly like this."""
        self._recordings[self._call_key(params)] = (status, content_type, body)

    def load_cassettes(self, folder: Path) -> int:
        """Serve every interaction of the betamax cassettes in ``folder``; returns how many.

        When several cassettes recorded the same call, a code-0 answer wins over an error, so
        that the cassettes of error codes do not hide the pages.
        """
        paths = sorted(folder.glob("*.json"))
        if not paths:
            raise ValueError(f"{folder} holds no betamax cassettes (*.json)")
        count = 0
        for path in paths:
            for interaction in orjson.loads(path.read_bytes()).get("http_interactions", []):
                query = parse_qs(urlsplit(interaction["request"]["uri"]).query)
                params = {k: v[0] for k, v in query.items() if k != api.TOKEN_PARAM}
                response = interaction["response"]
                body = response["body"]
                raw = (
                    base64.b64decode(body["base64_string"])
                    if body.get("base64_string")
                    else body.get("string", "").encode()
                )
                content_type = (response.get("headers", {}).get("Content-Type") or ["application/json"])[0]
                known = self._recordings.get(self._call_key(params))
                if known is not None and api.judge(known[0], known[2]).code == 0:
                    continue
                self.add_recording(params, response["status"]["code"], raw, content_type.split(";")[0])
                count += 1
        return count

    # --- queries over the log ----------------------------------------------------
    def paid_pages(self) -> list[tuple[str, str, str, str | None, str]]:
        """(keyword, sort, noteType, noteTime, page) of every code-0 answer, in order.

        A cut-off or late ("cut", "slow") answer counts: the API did the work, whether or not
        the client could read it.
        """
        return [
            (e["keyword"], e["sort"], e["noteType"], e["noteTime"], e["page"])
            for e in self.log
            if e.get("code") == 0 and e.get("kind") != "detail"
        ]

    def paid_details(self) -> list[str]:
        """The note id of every code-0 answer to a note detail call, in order."""
        return [e["note_id"] for e in self.log if e.get("code") == 0 and e.get("kind") == "detail"]

    # --- running -------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        await site.start()
        sockets = site._server.sockets if site._server else ()
        self.url = f"http://{host}:{sockets[0].getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve from a daemon thread with its own event loop; returns the base URL."""
        started = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start(host, port))
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="justoneapi-sandbox", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the sandbox did not start within 10 s")
        return self.url

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None
