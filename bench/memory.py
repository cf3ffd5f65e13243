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


# Issue 12: seen notes at 1, 10 and 100 million ids, the structure filled directly (a crawl, or
# 100 million script calls, would take hours), then 20,000 adds of new ids through the script.
# Bytes per id: used_memory after minus before. µs per add: Redis's own time per EVALSHA
# (INFO commandstats), so the figure is Redis CPU, not the round trip.
ADDS = 20_000
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


def _per_add(client: redis.Redis, add: Any) -> float:
    rng = os.urandom(5).hex()
    ids = [f"{1_800_000_000 + i:08x}{rng}{i & 0xFFFFFF:06x}" for i in range(ADDS)]
    client.config_resetstat()
    with client.pipeline(transaction=False) as pipe:
        for note_id in ids:
            add(pipe, note_id)
        pipe.execute()
    return float(client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])


def seen_notes_at_scale(count: int, layout: str) -> dict[str, Any]:
    """layout 'hash': 4,096 hashes x 16 fields of 10-byte records (now); 'string': 4,096 strings of 11."""
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        before = client.info("memory")["used_memory"]
        shared = SharedCrawl(connect(url, Settings()), "bench", url, 60)
        buckets = 4096 * 16 if layout == "hash" else 4096
        per, extra = divmod(count, buckets)
        size = 10 if layout == "hash" else 11
        with client.pipeline(transaction=False) as pipe:
            for n in range(buckets):
                records = os.urandom(size * (per + (n < extra)))
                if layout == "hash":
                    pipe.hset(f"{shared.keys.seen_notes}:{n >> 4:03x}", f"{n & 15:x}", records)
                else:
                    pipe.set(f"{shared.keys.seen_notes}:{n:03x}", records)
                if n % 1024 == 1023:
                    pipe.execute()
            pipe.execute()
        after = client.info("memory")["used_memory"]
        if layout == "hash":
            us = _per_add(client, lambda pipe, i: shared.add_note(i, b"", client=pipe))
        else:
            script = client.register_script(OLD_ADD)
            us = _per_add(
                client,
                lambda pipe, i: script(
                    keys=[f"{shared.keys.seen_notes}:{i[-3:]}", "bench:count"],
                    args=[bytes.fromhex(i[:21] + "0")],
                    client=pipe,
                ),
            )
        shared.server.close()
        client.close()
    return {"ids": count, "layout": layout, "bytes_per_id": round((after - before) / count, 2), "us_per_add": us}


def measure_scale(counts: tuple[int, ...] = (1_000_000, 10_000_000, 100_000_000)) -> list[dict[str, Any]]:
    rows = []
    for count in counts:
        for layout in ("hash", "string"):
            row = seen_notes_at_scale(count, layout)
            print(f"  {row}", flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    import sys

    measure_scale(tuple(int(float(a)) for a in sys.argv[1:]) or (1_000_000, 10_000_000, 100_000_000))
