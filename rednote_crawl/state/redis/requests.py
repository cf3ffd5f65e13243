"""Requests as they are kept in Redis: the call, not a URL.

What Redis holds for a request is its kind (``search``: a page of note search; ``detail``: a
note's detail call, with the held note it delivers under ``Meta.HELD_NOTE``) and the call's parameters as JSON, with what its retries carry (tries, backoff).
The worker that takes it builds and signs the URL for its own ``JUSTONEAPI_BASE_URL`` (the spider's
builder of that kind): workers whose API hosts are written differently, or two sandboxes, share one
crawl. JSON, never pickle: whoever can write to Redis must not be able to run code on the workers;
and no URL, so no host and no token either. The dupefilter's fingerprints follow the call too
(its kind and what names it: the query and the page, or the note), not the URL.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from rednote_crawl.names import Meta
from rednote_crawl.search import DetailCall, SearchCall

if TYPE_CHECKING:
    from scrapy import Request, Spider


# (id, request as JSON, score, fingerprint ('' : not filtered), whether it starts a query)
Push = tuple[str, str, float, str, bool]

# Meta that stays with the worker that holds the request.
LOCAL_META = (Meta.CALL, Meta.LEASE, Meta.STORED, Meta.HANDOFF, "download_slot", "download_latency", "depth")


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of paid call: its value type (``to_json``/``from_json``), the spider's method that builds
    its request for this worker's API base, and what names one call of it for the dupefilter."""

    name: str
    call_type: type[Any]
    builder: str  # the spider's method: call -> Request

    def identity(self, call: Any) -> Any:
        if isinstance(call, DetailCall):
            return [self.name, call.note_id]  # one detail call per note and crawl
        query, page, *_ = call.to_json()  # the query and its page; not where its ranks start, nor options
        return [self.name, query, page]


KINDS = {
    kind.name: kind
    for kind in (Kind("search", SearchCall, "page_request"), Kind("detail", DetailCall, "detail_request"))
}


class RequestCodec:
    def __init__(self, spider: Spider, dupefilter_key: str) -> None:
        self.spider = spider
        self.dupefilter_key = dupefilter_key  # the set is the scripts'; the fingerprints are ours

    @staticmethod
    def kind_of(call: Any) -> Kind:
        for kind in KINDS.values():
            if isinstance(call, kind.call_type):
                return kind
        raise TypeError(f"a request without a call of a known kind cannot be stored in Redis ({call!r})")

    def encode(self, request: Request) -> str:
        call = request.meta.get(Meta.CALL)
        kind = self.kind_of(call)
        meta = {k: v for k, v in request.meta.items() if k not in LOCAL_META}
        data = {
            "kind": kind.name,
            "call": call.to_json(),
            "priority": request.priority,
            "dont_filter": request.dont_filter,
            "meta": meta,
        }
        try:
            return orjson.dumps(data).decode()
        except TypeError as exc:
            raise TypeError(f"a {kind.name} call ({call.describe()}) cannot be stored in Redis as JSON: {exc}") from None

    def decode(self, encoded: str) -> Request:
        """The request for this worker's API base; ValueError: not a call this version knows."""
        data = orjson.loads(encoded)
        if not isinstance(data, dict) or "url" in data:
            raise ValueError("a request of an earlier format (a URL), not a call")
        kind = KINDS.get(data.get("kind", ""))
        if kind is None:
            raise ValueError(f"a call of an unknown kind {data.get('kind')!r} (a newer version of the project?)")
        request = getattr(self.spider, kind.builder)(kind.call_type.from_json(data["call"]))
        request = request.replace(priority=int(data.get("priority", request.priority)))
        request.dont_filter = bool(data.get("dont_filter", False))
        request.meta.update(data.get("meta") or {})
        return request

    def fingerprint(self, request: Request) -> str:
        kind = self.kind_of(request.meta.get(Meta.CALL))
        return hashlib.sha1(orjson.dumps(kind.identity(request.meta[Meta.CALL]))).hexdigest()

    def push(self, request: Request, replaces: str = "") -> Push:
        """The request as the queue's scripts take it."""
        fingerprint = "" if request.dont_filter else self.fingerprint(request)
        call = request.meta.get(Meta.CALL)
        starts_query = isinstance(call, SearchCall) and call.page == 1 and not replaces
        return uuid.uuid4().hex, self.encode(request), -request.priority, fingerprint, starts_query
