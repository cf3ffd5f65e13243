"""Requests as they are kept in Redis: JSON, never pickle (whoever can write to Redis must not be
able to run code on the workers), with scrapy-redis's fingerprints for its dupefilter."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import orjson
from scrapy.utils.request import request_from_dict
from scrapy_redis.dupefilter import RFPDupeFilter

from rednote_crawl.names import Meta
from rednote_crawl.search import SearchCall

if TYPE_CHECKING:
    from scrapy import Request, Spider


# (id, request as JSON, score, fingerprint ('' : not filtered), whether it starts a query)
Push = tuple[str, str, float, str, bool]


class RequestCodec:
    def __init__(self, spider: Spider, dupefilter_key: str) -> None:
        self.spider = spider
        self.dupefilter = RFPDupeFilter(None, dupefilter_key)  # only its fingerprints: the set is ours

    def encode(self, request: Request) -> str:
        data = request.to_dict(spider=self.spider)
        meta = {k: v for k, v in (data.get("meta") or {}).items() if k not in (Meta.LEASE, Meta.STORED)}
        if isinstance(call := meta.get(Meta.CALL), SearchCall):
            meta[Meta.CALL] = call.to_json()
        data["meta"] = meta
        data["headers"] = {k.decode("latin-1"): [v.decode("latin-1") for v in vs] for k, vs in data["headers"].items()}
        data["body"] = data["body"].decode("latin-1")
        try:
            return orjson.dumps(data).decode()
        except TypeError as exc:
            raise TypeError(f"a request to {request.url} cannot be stored in Redis as JSON: {exc}") from None

    def decode(self, encoded: str) -> Request:
        data = orjson.loads(encoded)
        meta = data.get("meta") or {}
        if isinstance(call := meta.get(Meta.CALL), list):
            meta[Meta.CALL] = SearchCall.from_json(call)
        data["body"] = data.get("body", "").encode("latin-1")
        return request_from_dict(data, spider=self.spider)

    def push(self, request: Request, replaces: str = "") -> Push:
        """The request as the queue's scripts take it."""
        fingerprint = "" if request.dont_filter else self.dupefilter.request_fingerprint(request)
        call = request.meta.get(Meta.CALL)
        starts_query = isinstance(call, SearchCall) and call.page == 1 and not replaces
        return uuid.uuid4().hex, self.encode(request), -request.priority, fingerprint, starts_query
