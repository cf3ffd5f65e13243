"""Where a distributed crawl stands, read from Redis (``scrapy redis status``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import redis

    from rednote_crawl.state.redis.keys import Keys


def crawl_status(server: redis.Redis, keys: Keys) -> dict[str, Any]:
    """The queue, the leases, the notes, the crawl's counters, a stop, the rate and the live workers,
    read in one pipeline (the workers' lines in a scan after it)."""
    with server.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.requests).zcard(keys.leases).llen(keys.items).get(keys.seen_count)
        pipe.hgetall(keys.stats).hgetall(keys.stop).hget(keys.ratelimit, "state")
        queued, leased, items, seen, stats, stop, rate = pipe.execute()
    prefix = keys.worker("")
    workers = {key[len(prefix) :]: server.get(key) for key in server.scan_iter(match=prefix + "*")}
    return {
        "queued": queued,
        "in_flight": leased,
        "items": items,
        "notes": int(seen or 0),
        "stats": {name: int(value) for name, value in stats.items()},
        "stop": stop or None,
        "rate": orjson.loads(rate)["rate"] if rate else None,  # calls/s; None: not set, or no ceiling
        "workers": {w: v for w, v in workers.items() if v is not None},
    }
