"""The token's rate limit and call budget, shared by every worker through Redis.

Why not ``limits`` or ``pyrate-limiter`` (both have Redis backends): they enforce fixed
rates, a count per window or a leaky bucket at a configured rate. The API's limit is not
known in advance, so the rate must be found: set for every worker at once from the rate the API
accepted when a 302 comes, every worker paused for ``Retry-After``, probed upward now and then.
Those are rate.py's rules; here their state lives in one Redis hash, with Redis's clock as the
one clock of all workers.

Round trips: a worker applies the rules to the state it last saw and writes the result back by
compare-and-set (scripts.RATE), which spends the call from the budget in the same script when
the booking needs no wait: one round trip per call, two when another worker changed the rate
first (the answer brings the new state) or when the booking is slept on (scripts.SEND checks no
302 changed the rate meanwhile, and spends then). Accepted answers and 302s are kept here and
applied with the next change: no round trip of their own.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from rednote_crawl import stops
from rednote_crawl.state.rate import AdaptiveRateLimiter, RateState, accept, book, cut
from rednote_crawl.state.redis.client import REDIS_ERRORS
from rednote_crawl.state.redis.shared import SharedCrawl, new_op
from rednote_crawl.stops import StopEvent

Sleep = Callable[[float], Any]
ACCEPTS_WITHIN = 0.5  # seconds: an accepted answer reaches the shared state this soon
Rule = Callable[[RateState, float], Any]


class SharedRateLimiter(AdaptiveRateLimiter):
    def __init__(self, shared: SharedCrawl, max_rps: float, max_requests: int) -> None:
        super().__init__(max_rps)
        self.shared = shared
        self.max_requests = max_requests
        self.version = "0"  # of the state in Redis as last seen
        self.confirmed = self.initial()  # that state
        self.pending: list[tuple[float, Rule]] = []  # answers seen here, not yet applied in Redis
        self._flushing: asyncio.Task[None] | None = None  # a 302, on its way to Redis now
        self._accepts: asyncio.Task[None] | None = None  # accepted answers, on their way within ACCEPTS_WITHIN
        self._writing = asyncio.Lock()
        # A call spent from the budget (scripts.RATE or SEND) sent and not answered (a timeout, an error
        # reply): this worker's next spending call goes under its id, so the call is spent once.
        self._spending: str | None = None

    def _spend_op(self) -> str:
        self._spending = self._spending or new_op()
        return self._spending

    def start_at(self, learned: float | None) -> None:
        super().start_at(learned)
        self.confirmed = self.initial()

    def now(self) -> float:
        return self.shared.now()

    def _heard(self, now_ms: Any, version: Any = None, raw: Any = None) -> None:
        self.shared.heard_time(now_ms)
        if version is not None:
            self.version = str(version)
            self.confirmed = RateState.from_dict(orjson.loads(raw)) if raw else self.initial()

    def _next(self, applied: int) -> RateState:
        """The state as last seen in Redis, with the first ``applied`` pending answers applied to it."""
        state = RateState.from_dict(self.confirmed.to_dict())
        for at, rule in self.pending[:applied]:
            rule(state, at)
        return state

    async def _change(self, rule: Rule | None = None) -> tuple[list[Any] | None, Any]:
        """Apply the pending answers (and ``rule``) to the state last seen and write it back by
        compare-and-set; a booking (``rule`` = book) that needs no wait spends its call in the same
        script. -> (the script's answer, None when the crawl is gone; what ``rule`` returned)."""
        async with self._writing:  # one change of this worker at a time: ``pending`` stays whole
            applied = len(self.pending)
            state = self._next(applied)
            result = rule(state, self.now()) if rule is not None else None
            spend = result is not None and result[1] <= 0
            budget = self._budget_args() if spend else ["", "", ""]
            k = self.shared.keys
            # A spending call whose answer was lost is sent again under its id (it was spent once, or not at
            # all); a change alone gets a new id (sent again, it answers CHANGED and the state is read again).
            op = self._spend_op() if spend else new_op()
            args = [self.version, orjson.dumps(state.to_dict()), *budget]
            answer = await self.shared.call("rate", [k.ratelimit, k.stats, k.stop], args, op)
            if spend:
                self._spending = None
            if answer is None:
                return None, result
            if answer[0] == "CHANGED":
                self._heard(answer[1], answer[2], answer[3])
                return answer, result
            self._heard(answer[1])
            self.version = str(int(self.version) + 1)
            self.confirmed = self.state = state
            del self.pending[:applied]
            return answer, result

    def _budget_args(self) -> list[Any]:
        return [self.max_requests, stops.BUDGET_SPENT.reason, self.shared.worker_id]

    async def book_call(self, sleep: Sleep) -> tuple[str, str, str] | None:
        """Wait for this call's turn at the shared rate and spend it from the shared budget.
        None: send it; else (reason, message, worker) of the stop in force. One booking of this
        worker at a time (``_turn``, rate.py): none is made far ahead at an old rate."""
        async with self._turn:
            while True:
                try:
                    answer = await self._book_once(sleep)
                except REDIS_ERRORS as exc:
                    self.shared.health.failed(exc)
                    if await sleep(self.shared.beat) is False:
                        return (stops.SHUTDOWN.reason, "the worker is shutting down", self.shared.worker_id)
                    continue
                if answer != "again":
                    return answer  # type: ignore[return-value]

    async def _book_once(self, sleep: Sleep) -> tuple[str, str, str] | str | None:
        if self.shared.lost:
            return (stops.REDIS_STATE_LOST.reason, self.shared.lost, self.shared.worker_id)
        answer, (epoch, delay) = await self._change(partial(book, max_rate=self.max_rate))
        if answer is None or answer[0] == "CHANGED":
            return "again"
        if delay > 0:
            if await sleep(delay) is False:
                return (stops.SHUTDOWN.reason, "the worker is shutting down", self.shared.worker_id)
            k = self.shared.keys
            args = [epoch, *self._budget_args()]
            answer = await self.shared.call("send", [k.ratelimit, k.stats, k.stop], args, self._spend_op())
            self._spending = None
            if answer is None:
                return "again"
            if answer[0] == "CHANGED":  # a 302 meanwhile: book again, behind its pause
                self._heard(answer[1], answer[2], answer[3])
                return "again"
            self._heard(answer[1])
        stop = answer[2]
        return tuple(stop) if stop else None  # type: ignore[return-value]

    def _later(self, rule: Rule) -> None:
        """An answer for the rules: applied here at once (what this worker logs), in Redis with the next change."""
        at = self.now()
        self.pending.append((at, rule))
        rule(self.state, at)

    def slow_down(self, retry_after: float | None = None) -> None:
        """A 302: every worker must pause, so it goes to Redis now, without waiting for a booking."""
        self._later(partial(cut, retry_after=retry_after))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    def speed_up(self) -> None:
        """Applied with this worker's next change, and within ACCEPTS_WITHIN seconds at the latest: a
        302 seen by another worker measures the limit from every worker's accepted answers."""
        self._later(partial(accept, max_rate=self.max_rate))
        if self._accepts is None or self._accepts.done():
            self._accepts = asyncio.get_running_loop().create_task(self._flush(after=ACCEPTS_WITHIN))

    async def _flush(self, after: float = 0.0) -> None:
        """Not behind ``_turn``: a booking sleeping there must not hold a 302 back from the other workers."""
        if after:
            await asyncio.sleep(after)
        while self.pending and not self.shared.lost:
            try:
                answer, _ = await self._change()
            except REDIS_ERRORS as exc:  # the next booking takes them along
                self.shared.health.failed(exc)
                return
            if answer is None:
                return

    @property
    def limit(self) -> float | None:
        limit = min(self.state.limit, self.confirmed.limit)
        return limit if math.isfinite(limit) else None


def stop_event(stop: tuple[str, str, str], worker_id: str) -> StopEvent:
    reason, message, worker = stop
    return StopEvent(reason, message, by=None if worker == worker_id else worker)
