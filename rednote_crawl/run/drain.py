"""Draining the Redis list ``<spider>:items`` into a JSON Lines file, exactly once, however
often it is interrupted (``scrapy redis drain FILE``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

    from rednote_crawl.state.redis.keys import Keys

DRAIN_BATCH = 1000
DRAIN_LOCK_SECONDS = 60
# KEYS: lock. ARGV: holder, seconds. The lock is still ours: renew it. -> 1, or 0 (lost).
RENEW = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end redis.call('EXPIRE', KEYS[1], ARGV[2]) return 1"
# KEYS: lock, items, marker. ARGV: holder, batch size, seconds.
TRIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[2], ARGV[2], -1)
redis.call('DEL', KEYS[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
# KEYS: lock. ARGV: holder, new holder, seconds. Take the lock over only from that holder.
TAKE_OVER = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end"
)


class DrainBusy(RuntimeError):
    pass


def drain(server: redis.Redis, keys: Keys, path: Path, batch: int = DRAIN_BATCH) -> Iterator[int]:
    """Append the items list to ``path``; yield the running count after each batch.

    One drain at a time: a lock in Redis, renewed with every batch and checked before a batch is
    written (a drain that lost it writes nothing more) and again as the batch leaves Redis (a drain
    that lost it meanwhile cuts its file back to where the batch began, and stops: DrainBusy); and
    ``flock`` on the file, so two drains never write one file. Each batch is written and fsync'ed
    before it leaves Redis. A marker in Redis names the file and its size before the batch: an
    interrupted drain is cut back to that size by the next one, which writes the batch again. No
    line is ever cut or written twice.
    """
    lock = f"{keys.drain}:lock"
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not server.set(lock, token, nx=True, ex=DRAIN_LOCK_SECONDS):
        holder = server.get(lock) or ""
        if not _dead_here(holder) or not server.eval(TAKE_OVER, 1, lock, holder, token, DRAIN_LOCK_SECONDS):
            left = server.ttl(lock)
            raise DrainBusy(
                f"another drain of {keys.items} is running ({holder}); wait for it to finish "
                f"(if it was killed on another machine, its lock expires in {left} s)"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        total = 0
        with path.open("ab") as file:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DrainBusy(f"another drain is writing to {path}; wait for it to finish") from None
            _undo_interrupted(server, keys)
            while notes := server.lrange(keys.items, 0, batch - 1):
                if not server.eval(RENEW, 1, lock, token, DRAIN_LOCK_SECONDS):
                    raise DrainBusy(_lost(path))
                size = file.seek(0, os.SEEK_END)
                server.hset(keys.drain, mapping={"path": str(path.resolve()), "size": size})
                file.write("".join(f"{note}\n" for note in notes).encode())
                file.flush()
                os.fsync(file.fileno())
                # The batch leaves the list with its marker, only while the lock is still ours.
                if not server.eval(TRIM, 3, lock, keys.items, keys.drain, token, len(notes), DRAIN_LOCK_SECONDS):
                    file.truncate(size)  # taken back: the drain that holds the lock writes these notes
                    os.fsync(file.fileno())
                    raise DrainBusy(_lost(path))
                total += len(notes)
                yield total
    finally:
        if server.get(lock) == token:
            server.delete(lock)


def _lost(path: Path) -> str:
    return (
        f"this drain stalled for over {DRAIN_LOCK_SECONDS} s and another one took over; it wrote nothing more to "
        f"{path} (its unfinished batch is taken back): let the other drain finish"
    )


def _dead_here(holder: str) -> bool:
    """The lock holder was a process on this machine that is gone (killed, say)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _undo_interrupted(server: redis.Redis, keys: Keys) -> None:
    marker = server.hgetall(keys.drain)
    if not marker:
        return
    with contextlib.suppress(FileNotFoundError), open(marker["path"], "r+b") as file:
        file.truncate(min(int(marker["size"]), file.seek(0, os.SEEK_END)))
    server.delete(keys.drain)
