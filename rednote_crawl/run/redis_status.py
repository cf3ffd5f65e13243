"""Where a distributed crawl stands, read from Redis (``scrapy redis status``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from rednote_crawl.state.redis.client import display_url, mask

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


STATUS_FORMAT = "rednote_crawl/redis-status"
STATUS_VERSION = 1  # raised only when a key changes meaning or goes; new keys may appear within a version
_BEAT = re.compile(r"^(\d+) requests? in flight, last beat (\S+)$")  # a worker's line (scripts.py, BEAT)


def status_document(spider: str, url: str, status: dict[str, Any]) -> dict[str, Any]:
    """``scrapy redis status --json`` (docs/distributed.md, "Status as JSON"): what the text shows, from
    the same ``crawl_status``, in a shape that stays. ``url`` is REDIS_URL: only its masked form goes in,
    and a stop's message is masked the same way (it never holds the token: no worker has it in Redis)."""
    stats = status["stats"]
    workers = []
    for worker, line in sorted(status["workers"].items()):
        beat = _BEAT.match(line)
        workers.append(
            {
                "id": worker,
                "in_flight": int(beat.group(1)) if beat else None,
                "last_beat": beat.group(2) if beat else None,  # the worker's time of day, HH:MM:SS
            }
        )
    stop = status["stop"]
    return {
        "format": STATUS_FORMAT,
        "version": STATUS_VERSION,
        "generated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "spider": spider,
        "redis": display_url(url),
        "queries": {"seeded": stats.get("queries", 0), "rejected": stats.get("queries_rejected", 0)},
        "requests": {
            "queued": status["queued"],
            "in_flight": status["in_flight"],
            "leases_expired": stats.get("leases_expired", 0),
        },
        "pages": {"paid": stats.get("pages_paid", 0), "failed": stats.get("pages_failed", 0)},
        "calls": stats.get("calls", 0),
        "notes": {"delivered": status["notes"], "waiting": status["items"], "items_key": f"{spider}:items"},
        "rate": status["rate"],
        "workers": workers,
        "stop": None
        if not stop
        else {
            "reason": stop.get("reason"),
            "message": mask(stop.get("message") or "", url),
            "worker": stop.get("worker"),
        },
        "idle": not status["queued"] and not status["in_flight"],
        "counters": dict(sorted(stats.items())),  # every counter Redis keeps for the crawl, by its name
    }
