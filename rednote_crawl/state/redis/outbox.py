"""A worker's outbox: the writes nobody waits for (pushes, acks, counters), sent to Redis in order,
as one pipeline per batch, and kept while Redis is away."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from rednote_crawl.state.redis.client import REDIS_ERRORS

if TYPE_CHECKING:
    import redis.asyncio

    from rednote_crawl.state.redis.client import RedisHealth

BATCH = 200  # writes sent in one pipeline: one round trip


@dataclass(slots=True)
class Write:
    """A write of the outbox: one Redis command (a script call, mostly); ``then`` gets its answer."""

    command: tuple[Any, ...]
    then: Callable[[Any], None] | None = None
    guarded: bool = False


class Outbox:
    """Writes in order, so an ack never overtakes the writes it depends on. A guarded write's answer
    is handed to ``gone``: when it says the crawl is gone, the outbox is closed (``close``)."""

    def __init__(
        self,
        server: redis.asyncio.Redis,
        health: RedisHealth,
        load_scripts: Callable[[], Awaitable[None]],
        gone: Callable[[Any], bool],
        retry: float,
    ) -> None:
        self.server = server
        self.retry = retry  # seconds before a failed or refused batch goes again
        self.health = health
        self._load_scripts = load_scripts
        self._gone = gone
        self.writes: deque[Write] = deque()
        self.closed = False
        self.round_trips = 0
        self._writer: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self.writes)

    def add(self, write: Write) -> None:
        if self.closed:
            return
        self.writes.append(write)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._send())

    def close(self) -> None:
        """The crawl is gone: nothing of it may be written into whatever Redis holds now."""
        self.closed = True
        self.writes.clear()

    async def flushed(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until every write is in Redis."""
        deadline = time.monotonic() + timeout
        while self.writes and not self.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self.writes

    def cancel(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()

    async def _send(self) -> None:
        while self.writes and not self.closed:
            batch = [self.writes[i] for i in range(min(BATCH, len(self.writes)))]
            try:
                answers = await self._pipeline([w.command for w in batch])
            except REDIS_ERRORS as exc:
                self.health.failed(exc)
                await asyncio.sleep(self.retry)
                continue
            # Up to the first error reply: stored. From it on, the writes stay, in order, and go again
            # (a write after it that Redis did take is idempotent: its script answers as it did).
            refusal = next((a for a in answers if isinstance(a, redis.RedisError)), None)
            for write, answer in zip(batch, answers, strict=True):
                if isinstance(answer, redis.RedisError):
                    break
                self.writes.popleft()
                if write.guarded and self._gone(answer):
                    return
                if write.then is not None:
                    write.then(answer)
            if refusal is not None:
                self.health.failed(refusal)
                await asyncio.sleep(self.retry)
                continue
            self.health.ok()

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Every command, in order, in one round trip (again after loading the scripts, if Redis lost them:
        each write is idempotent). Error replies are answers, for ``_send`` to keep their writes."""
        for _ in range(2):
            self.round_trips += 1
            async with self.server.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                answers = await pipe.execute(raise_on_error=False)
            if not any(isinstance(a, redis.exceptions.NoScriptError) for a in answers):
                break
            await self._load_scripts()
        for answer in answers:
            if isinstance(answer, (redis.ConnectionError, redis.TimeoutError)):
                raise answer
        return answers
