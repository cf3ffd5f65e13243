"""Dedupe memory (issue 7, point 4): bytes per seen note id, locally and in Redis, exact.

- local: the single-machine pipeline's Python set of ids (tracemalloc)
- redis seen_notes: the distributed pipeline's buckets of 11-byte records (SharedCrawl.add_note)
- redis SET of ids: what a plain Redis set of the 24-character ids would take
- scrapy-redis dupefilter: its SET of 40-character SHA1 fingerprints, one per request

Redis figures are ``used_memory`` after minus before, on a fresh redis-server per layout.
Ids are ObjectId-like (time, random, counter), as the API's are.
"""

from __future__ import annotations

import gc
import hashlib
import os
import tracemalloc
from typing import Any

import redis
from scrapy.settings import Settings

from bench.common import redis_server
from rednote_crawl.state.redis.shared import SharedCrawl, connect

BATCH = 10_000


def note_ids(count: int) -> list[str]:
    """ObjectId-like ids: 4 bytes of time, 5 random bytes per process, a 3-byte counter."""
    rng = os.urandom(5).hex()
    return [f"{1_700_000_000 + i // 50:08x}{rng}{i & 0xFFFFFF:06x}" for i in range(count)]


def local_set(ids: list[str]) -> float:
    gc.collect()
    tracemalloc.start()
    seen: set[str] = set()
    for note_id in ids:
        seen.add(note_id.encode().decode())  # a str of its own, as one decoded from a page
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size / len(ids)


def _redis_bytes(fill: Any) -> float:
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        before = client.info("memory")["used_memory"]
        count = fill(client, url)
        after = client.info("memory")["used_memory"]
        client.close()
    return (after - before) / count


def redis_seen_notes(ids: list[str]) -> float:
    def fill(client: redis.Redis, url: str) -> int:
        shared = SharedCrawl(connect(url, Settings()), "bench", url, 60)
        for start in range(0, len(ids), BATCH):
            with shared.server.pipeline(transaction=False) as pipe:
                for note_id in ids[start : start + BATCH]:
                    shared.add_note(note_id, b"", client=pipe)
                pipe.execute()
        client.delete(shared.keys.items)  # the notes themselves are not the dedupe's memory
        shared.server.close()
        return len(ids)

    return _redis_bytes(fill)


def redis_set(members: list[str]) -> float:
    def fill(client: redis.Redis, url: str) -> int:
        for start in range(0, len(members), BATCH):
            client.sadd("bench:set", *members[start : start + BATCH])
        return len(members)

    return _redis_bytes(fill)


def measure(counts: tuple[int, ...] = (1_000_000, 10_000_000)) -> list[dict[str, Any]]:
    results = []
    for count in counts:
        ids = note_ids(count)
        fingerprints = [hashlib.sha1(i.encode()).hexdigest() for i in ids]
        row = {
            "ids": count,
            "local_python_set": round(local_set(ids), 1),
            "redis_seen_notes": round(redis_seen_notes(ids), 1),
            "redis_set_of_ids": round(redis_set(ids), 1),
            "scrapy_redis_dupefilter": round(redis_set(fingerprints), 1),
        }
        print(f"  {row}", flush=True)
        results.append(row)
        del ids, fingerprints
        gc.collect()
    return results
