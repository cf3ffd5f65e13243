"""Each note once, into the Redis list ``<spider>:items``, and from there into a file.

``RedisNotePipeline`` checks ``seen_notes`` and appends to ``items`` in one script, so a note
is delivered once across all workers, and a page done twice (after a kill) adds nothing.
``drain`` moves the list into a JSON Lines file exactly once, however often it is interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itemadapter import ItemAdapter
from scrapy.exceptions import NotConfigured

from rednote_crawl.distributed.account import RETRY_REDIS
from rednote_crawl.distributed.shared import REDIS_ERRORS, Keys, shared_crawl
from rednote_crawl.exporters import dumps
from rednote_crawl.pipelines import NoteDedupePipeline

if TYPE_CHECKING:
    import redis
    from scrapy.crawler import Crawler

DRAIN_BATCH = 1000
DRAIN_LOCK_SECONDS = 60


class RedisNotePipeline(NoteDedupePipeline):
    def __init__(self, crawler: Crawler) -> None:
        shared = shared_crawl(crawler)
        if shared is None:
            raise NotConfigured
        self.shared = shared
        self.stats = crawler.stats
        self.earlier: set[str] = set()  # seen_notes keeps every earlier crawl's notes until a reset --notes

    async def first_time(self, note_id: str, item: Any) -> bool:
        note = dumps(ItemAdapter(item).asdict())
        while True:
            try:
                new = self.shared.add_note(note_id, note)
            except REDIS_ERRORS as exc:
                self.shared.health.failed(exc)
                await asyncio.sleep(RETRY_REDIS)
                continue
            self.shared.health.ok()
            return new


class DrainBusy(RuntimeError):
    pass


def drain(server: redis.Redis, keys: Keys, path: Path, batch: int = DRAIN_BATCH) -> Iterator[int]:
    """Append the items list to ``path``; yield the running count after each batch.

    Each batch is written and fsync'ed before it leaves Redis. A marker in Redis names the
    file and its size before the batch: an interrupted drain is cut back to that size by the
    next one, which writes the batch again. The head of the list only moves here, under a lock.
    """
    lock = f"{keys.drain}:lock"
    token = uuid.uuid4().hex
    if not server.set(lock, token, nx=True, ex=DRAIN_LOCK_SECONDS):
        raise DrainBusy(f"another drain of {keys.items} is running; wait for it to finish")
    try:
        _undo_interrupted(server, keys)
        path.parent.mkdir(parents=True, exist_ok=True)
        total = 0
        with path.open("ab") as file:
            while notes := server.lrange(keys.items, 0, batch - 1):
                size = file.seek(0, os.SEEK_END)
                server.hset(keys.drain, mapping={"path": str(path.resolve()), "size": size})
                file.write("".join(f"{note}\n" for note in notes).encode())
                file.flush()
                os.fsync(file.fileno())
                with server.pipeline() as pipe:  # MULTI: the batch leaves the list with its marker
                    pipe.ltrim(keys.items, len(notes), -1).delete(keys.drain).expire(lock, DRAIN_LOCK_SECONDS)
                    pipe.execute()
                total += len(notes)
                yield total
    finally:
        if server.get(lock) == token:
            server.delete(lock)


def _undo_interrupted(server: redis.Redis, keys: Keys) -> None:
    marker = server.hgetall(keys.drain)
    if not marker:
        return
    with contextlib.suppress(FileNotFoundError), open(marker["path"], "r+b") as file:
        file.truncate(min(int(marker["size"]), file.seek(0, os.SEEK_END)))
    server.delete(keys.drain)
