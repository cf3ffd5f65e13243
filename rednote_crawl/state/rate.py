"""Pacing the calls of one token.

An AIMD limiter: calls start at most ``max_rps`` per second; a rate-limit
answer halves the rate and pauses every caller (``Retry-After`` when the API
sends one), and each paid page wins back a little of the rate. Plain asyncio,
no Scrapy: the middleware owns when to call it.

The rules are pure functions of a ``RateState``. ``AdaptiveRateLimiter`` keeps
that state in memory; in a distributed crawl, ``SharedRateLimiter``
(distributed/account.py) keeps it in Redis and applies the same functions.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

MIN_RATE = 0.2  # calls per second: the floor after repeated 302s
RECOVERY_STEPS = 50  # paid pages to climb back from the floor to max_rps
COOLDOWN = 1.0  # seconds: 302s closer than this count as one signal
RECENT = 50  # start times kept while the rate is unbounded, to estimate it at the first 302
PROBE_SLOWER = 10  # near the rate of the last 302, climb this many times slower

T = TypeVar("T")


@dataclass(slots=True)
class RateState:
    rate: float  # calls per second; inf: no ceiling yet
    next_start: float = 0.0
    last_cut: float = -math.inf
    epoch: int = 0  # bumped by every cut: callers waiting on an old booking book again
    recent: list[float] = field(default_factory=list)
    limit: float = math.inf  # the rate when the last 302 came: the API's limit, as far as we know

    def to_dict(self) -> dict[str, Any]:
        finite = math.isfinite
        return {
            "rate": self.rate if finite(self.rate) else None,
            "next_start": self.next_start,
            "last_cut": self.last_cut if finite(self.last_cut) else None,
            "epoch": self.epoch,
            "recent": self.recent,
            "limit": self.limit if finite(self.limit) else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RateState:
        rate, last_cut = data.get("rate"), data.get("last_cut")
        return cls(
            rate=math.inf if rate is None else float(rate),
            next_start=float(data.get("next_start", 0.0)),
            last_cut=-math.inf if last_cut is None else float(last_cut),
            epoch=int(data.get("epoch", 0)),
            recent=[float(x) for x in data.get("recent", [])],
            limit=math.inf if data.get("limit") is None else float(data["limit"]),
        )


def book(state: RateState, now: float, max_rate: float) -> tuple[int, float]:
    """Reserve the next start time; return the epoch and how long to wait for it."""
    state.rate = min(state.rate, max_rate)  # a lower JUSTONEAPI_MAX_RPS than the state was made with
    start = max(now, state.next_start)
    if math.isfinite(state.rate):
        state.next_start = start + 1 / state.rate
    else:
        state.recent = [*state.recent[-(RECENT - 1) :], start]
    return state.epoch, start - now


def cut(state: RateState, now: float, retry_after: float | None) -> None:
    """Halve the rate (once per burst of 302s) and pause every caller."""
    if now - state.last_cut >= COOLDOWN:
        if math.isinf(state.rate):
            span = (state.recent[-1] - state.recent[0]) if len(state.recent) > 1 else 0
            state.rate = len(state.recent) / span if span > 0 else 1.0
        state.limit = state.rate
        state.rate = max(MIN_RATE, state.rate / 2)
        state.last_cut = now
    pause = retry_after if retry_after and retry_after > 0 else 1 / state.rate
    # Drop every booking made at the old rate: sleepers wake and book again behind the pause.
    state.next_start = now + pause
    state.epoch += 1


def recover(state: RateState, now: float, max_rate: float) -> None:
    """Win back a step of the rate after a paid page: quickly up to 90% of the rate where the last
    302 came, then slowly (probing whether the limit moved) up to ``max_rate``."""
    if state.rate >= max_rate:
        return
    target = min(max_rate, state.limit)
    if math.isinf(target):
        target = state.rate * 2
    step = target / RECOVERY_STEPS
    if state.rate >= 0.9 * target:
        step /= PROBE_SLOWER
    state.rate = min(max_rate, state.rate + max(step, 0.01))


class AdaptiveRateLimiter:
    def __init__(self, max_rps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_rate = max_rps if max_rps > 0 else math.inf
        self.state = RateState(rate=self.max_rate)
        self.clock = clock

    @property
    def rate(self) -> float:
        """The rate as last seen (in Redis: as of this worker's last call)."""
        return self.state.rate

    def change(self, rule: Callable[[RateState, float], T]) -> T:
        """Apply a rule to the state at the current time."""
        return rule(self.state, self.clock())

    def _book(self) -> float:
        return self.change(partial(book, max_rate=self.max_rate))[1]

    async def acquire(self, sleep: Callable[[float], Awaitable[bool | None]] = asyncio.sleep) -> None:
        """Wait for this call's turn. A ``sleep`` that returns False was cut short: give up waiting."""
        while True:
            epoch, delay = self.change(partial(book, max_rate=self.max_rate))
            if delay <= 0 or await sleep(delay) is False or self.epoch() == epoch:
                return

    def epoch(self) -> int:
        """The current epoch: a cut since a booking means booking again."""
        return self.state.epoch

    def slow_down(self, retry_after: float | None = None) -> None:
        self.change(partial(cut, retry_after=retry_after))

    def speed_up(self) -> None:
        if self.rate < self.max_rate:
            self.change(partial(recover, max_rate=self.max_rate))
