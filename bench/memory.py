"""Dedupe memory (issue 7, point 4): bytes per seen note id, locally and in Redis, exact.

- local: the single-machine pipeline's Python set of ids (tracemalloc)
- redis seen_notes: the distributed crawl's buckets of 10-byte records (scripts.SEEN_ADD, through
  the page script ``SharedCrawl.page``)
- redis SET of ids: what a plain Redis set of the 24-character ids would take
- scrapy-redis dupefilter: its SET of 40-character SHA1 fingerprints, one per request

Redis figures are ``used_memory`` after minus before, on a fresh redis-server per layout.
Ids are ObjectId-like (time, random, counter), as the API's are.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import random
import tracemalloc
from typing import Any

import redis
from scrapy.settings import Settings

from bench.common import redis_server
from rednote_crawl.state.redis.shared import SharedCrawl

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


def shared_crawl(url: str) -> SharedCrawl:
    shared = SharedCrawl(url, Settings(), "bench", 60)
    shared.join()
    return shared


async def add_notes(shared: SharedCrawl, ids: list[str], page: int) -> None:
    """Through the page script, ``page`` notes a call; then the worker's client closes."""
    for start in range(0, len(ids), page):
        new = await shared.page("", [(note_id, b"") for note_id in ids[start : start + page]], [])
        assert new is not None
    await shared.aclose()


def redis_seen_notes(ids: list[str]) -> float:
    def fill(client: redis.Redis, url: str) -> int:
        shared = shared_crawl(url)
        asyncio.run(add_notes(shared, ids, 1000))
        client.delete(shared.keys.items)  # the notes themselves are not the dedupe's memory
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


# Issue 12: seen notes at 1, 10 and 100 million ids, the structure filled directly (a crawl, or
# 100 million script calls, would take hours), then 20,000 adds of new ids through the script.
# Bytes per id: used_memory after minus before. µs per add: Redis's own time per EVALSHA
# (INFO commandstats), so the figure is Redis CPU, not the round trip. A plain HGET of a random
# field, timed the same way, shows what this machine's memory makes any access cost at that size.
ADDS = 20_000
PAGE = 20  # notes per page script call, as the API's pages bring them
BUCKETS, FIELDS, SPLIT = 16**3, 16, 256  # scripts.SEEN_ADD
# The layout before issue 12, for comparison: 4,096 strings of 11-byte records, rewritten whole.
OLD_ADD = """
local seen = redis.call('GET', KEYS[1])
if seen then
  local from = 1
  while true do
    local at = string.find(seen, ARGV[1], from, true)
    if not at then break end
    if (at - 1) % 11 == 0 then return 0 end
    from = at + 1
  end
end
redis.call('SET', KEYS[1], (seen or '') .. ARGV[1])
redis.call('INCR', KEYS[2])
return 1
"""


def new_ids(count: int) -> list[str]:
    rng = os.urandom(5).hex()
    return [f"{1_800_000_000 + i:08x}{rng}{i & 0xFFFFFF:06x}" for i in range(count)]


def fill_split(client: redis.Redis, prefix: str, count: int) -> int:
    """About ``count`` random ids in the layout the page script leaves: fields of 10-byte records,
    a field of SPLIT records or more split in 16 by the next digit to the left. Returns how many."""
    per_field = count // (BUCKETS * FIELDS)
    stored = 0
    for bucket in range(BUCKETS):
        mapping: dict[str, bytes] = {}
        for field in range(FIELDS):
            stored += _leaves(mapping, f"{field:x}", per_field)
        client.hset(f"{prefix}:{bucket:03x}", mapping=mapping)
    return stored


def _leaves(mapping: dict[str, bytes], field: str, count: int) -> int:
    if count >= SPLIT:
        mapping[field] = b""  # split: its records are one level down
        return sum(_leaves(mapping, f"{field}{d:x}", count // 16) for d in range(16))
    records = bytearray(os.urandom(10 * count))
    for level, digit in enumerate(field[1:], start=2):  # the digits the field's name stands for
        at = 21 - level  # the id's digit of that level (level 2: digit 19, in record byte 9)
        nibble = int(digit, 16)
        table = bytes(((b & 0x0F) | nibble << 4) if at % 2 == 0 else ((b & 0xF0) | nibble) for b in range(256))
        records[at // 2 :: 10] = records[at // 2 :: 10].translate(table)
    mapping[field] = bytes(records)
    return count


def _usec(client: redis.Redis, command: str) -> float:
    return float(client.info("commandstats")[f"cmdstat_{command}"]["usec_per_call"])


def plain_hget(client: redis.Redis, prefix: str) -> float:
    client.config_resetstat()
    with client.pipeline(transaction=False) as pipe:
        for _ in range(ADDS):
            pipe.hget(f"{prefix}:{random.randrange(BUCKETS):03x}", f"{random.randrange(FIELDS):x}")
        pipe.execute()
    return _usec(client, "hget")


def seen_notes_at_scale(count: int, layout: str) -> dict[str, Any]:
    """layout 'split': the page script's (now); 'string': 4,096 strings of 11-byte records (before issue 12)."""
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        before = client.info("memory")["used_memory"]
        prefix = "bench:seen_notes"
        if layout == "split":
            shared = shared_crawl(url)
            prefix = shared.keys.seen_notes
            count = fill_split(client, prefix, count)
        else:
            per, extra = divmod(count, BUCKETS)
            for n in range(BUCKETS):
                client.set(f"{prefix}:{n:03x}", os.urandom(11 * (per + (n < extra))))
        after = client.info("memory")["used_memory"]
        client.config_resetstat()
        if layout == "split":
            asyncio.run(add_notes(shared, new_ids(ADDS), PAGE))
            us = _usec(client, "evalsha") / PAGE
        else:
            script = client.register_script(OLD_ADD)
            with client.pipeline(transaction=False) as pipe:
                for i in new_ids(ADDS):
                    script(keys=[f"{prefix}:{i[-3:]}", "bench:count"], args=[bytes.fromhex(i[:21] + "0")], client=pipe)
                pipe.execute()
            us = _usec(client, "evalsha")
        hget = plain_hget(client, prefix) if layout == "split" else None
        client.close()
    row = {
        "ids": count,
        "layout": layout,
        "bytes_per_id": round((after - before) / count, 2),
        "us_per_add": round(us, 2),
    }
    return row | ({"us_per_hget": round(hget, 2)} if hget is not None else {})


def measure_scale(counts: tuple[int, ...] = (1_000_000, 10_000_000, 100_000_000)) -> list[dict[str, Any]]:
    rows = []
    for count in counts:
        for layout in ("split", "string"):
            row = seen_notes_at_scale(count, layout)
            print(f"  {row}", flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    import sys

    measure_scale(tuple(int(float(a)) for a in sys.argv[1:]) or (1_000_000, 10_000_000, 100_000_000))
