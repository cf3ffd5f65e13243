"""The Redis keys of a distributed crawl, per spider (``Keys``; the first three are scrapy-redis's
own names), and how a seen note id is stored in its bucket.

==================  ======  ==================================================================
requests            ZSET    ids of the requests waiting, scored by -priority
dupefilter          SET     fingerprints of the calls (kind, query, page: requests.py), not of URLs
items               LIST    the notes, one JSON object each (same fields as the JSON Lines output)
requests:data       HASH    id -> the request as JSON: its call's kind and parameters (no URL, no token)
leases              ZSET    ids of the requests workers have taken, scored by their deadline
held                HASH    note id -> a new note waiting for its detail call (``-a details=``), as JSON
seen_notes:XXX      HASH    ids of the notes already delivered: 16 fields, 10 bytes an id (``seen_record``)
seen_notes:other    SET     ids of another form than the API's 24 hex digits
seen_notes:count    STRING  how many notes were delivered
stats               HASH    crawl-wide counters (``scrapy redis status`` shows them)
stop                HASH    why the crawl stopped, set by the worker that saw it
ratelimit           HASH    the token's shared rate: ``state`` (JSON) and its version ``v`` (account.py)
requests:unreadable HASH    id -> requests no worker could read, set aside for a look
workers:<id>        STRING  one per live worker, expiring unless its heartbeat renews it
workers             ZSET    the live workers, scored by when they expire (counted by the heartbeat)
crawl               STRING  the crawl's id, written by its first worker (``JOIN``); ``2:`` begins it
verdict             STRING  who judged the whole crawl as it ended: ``<crawl id> <stop or finished> <worker>``
                            (``VERDICT``: set once; ``reset`` and ``resume`` clear it)
applied:<op>        STRING  an operation's answer, for a worker that sends it again (10 minutes)
==================  ======  ==================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scrapy_redis import defaults as scrapy_redis_defaults

_OBJECT_ID = re.compile(r"[0-9a-f]{24}")  # the API's note ids (MongoDB ObjectIds)


@dataclass(frozen=True, slots=True)
class Keys:
    spider: str

    def _key(self, name: str) -> str:
        return f"{self.spider}:{name}"

    @property
    def requests(self) -> str:
        return scrapy_redis_defaults.SCHEDULER_QUEUE_KEY % {"spider": self.spider}

    @property
    def dupefilter(self) -> str:
        return scrapy_redis_defaults.SCHEDULER_DUPEFILTER_KEY % {"spider": self.spider}

    @property
    def items(self) -> str:
        return scrapy_redis_defaults.PIPELINE_KEY % {"spider": self.spider}

    @property
    def data(self) -> str:
        return self._key("requests:data")

    @property
    def leases(self) -> str:
        return self._key("leases")

    @property
    def unreadable(self) -> str:
        return self._key("requests:unreadable")

    @property
    def seen_notes(self) -> str:
        """The prefix of the buckets of seen note ids; ``seen_notes:*`` are all of them."""
        return self._key("seen_notes")

    def seen_bucket(self, note_id: str) -> str:
        """A hash of 16 fields (``seen_field``), one of 4,096, or the plain set ``seen_notes:other``."""
        return f"{self.seen_notes}:{note_id[-3:]}" if _OBJECT_ID.fullmatch(note_id) else f"{self.seen_notes}:other"

    @property
    def seen_count(self) -> str:
        return f"{self.seen_notes}:count"

    @property
    def stats(self) -> str:
        return self._key("stats")

    @property
    def held(self) -> str:
        """New notes waiting for their detail calls; each call delivers its note whole (scripts.DETAIL)."""
        return self._key("held")

    @property
    def stop(self) -> str:
        return self._key("stop")

    @property
    def ratelimit(self) -> str:
        return self._key("ratelimit")

    @property
    def drain(self) -> str:
        return self._key("items:drain")

    def worker(self, worker_id: str) -> str:
        return self._key(f"workers:{worker_id}")

    @property
    def crawl(self) -> str:
        return self._key("crawl")

    @property
    def verdict(self) -> str:
        return self._key("verdict")

    @property
    def history(self) -> str:
        """Each ended crawl's figures, one JSON a crawl, the last ``HISTORY_KEPT`` (the monitors compare)."""
        return self._key("history")

    def applied(self, op: str) -> str:
        return self._key(f"applied:{op}")

    @property
    def workers(self) -> str:
        return self._key("workers")

    def crawl_state(self) -> list[str]:
        """What ``scrapy redis reset`` clears: the crawl, not the notes."""
        return [
            self.requests,
            self.data,
            self.leases,
            self.held,
            self.dupefilter,
            self.stats,
            self.stop,
            self.ratelimit,
            self.unreadable,
            self.crawl,
            self.workers,
            self.verdict,
        ]

    def notes(self) -> list[str]:
        """What ``scrapy redis reset --notes`` clears as well."""
        return [self.items, self.drain, self.history]  # and every seen_notes:* key


def seen_record(note_id: str) -> bytes:
    """The API's note ids are 24 hex digits (MongoDB ObjectIds): the last 3 name the bucket and the
    one before them its field (they are the low bits of a counter, so buckets fill evenly); the first
    20 are stored in 10 bytes. b'': another form, kept in a plain set."""
    return bytes.fromhex(note_id[:20]) if _OBJECT_ID.fullmatch(note_id) else b""


def seen_field(note_id: str) -> str:
    """The field of the note's bucket that holds its record (one hex digit: 16 per bucket)."""
    return note_id[20] if _OBJECT_ID.fullmatch(note_id) else ""
