"""Pacing the calls of one token.

An AIMD limiter: calls start at most ``max_rps`` per second; a rate-limit
answer halves the rate and pauses every caller (``Retry-After`` when the API
sends one), and each paid page wins back a little of the rate. Plain asyncio,
no Scrapy: the middleware owns when to call it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

MIN_RATE = 0.2  # calls per second: the floor after repeated 302s
RECOVERY_STEPS = 50  # paid pages to climb back from the floor to max_rps
COOLDOWN = 1.0  # seconds: 302s closer than this count as one signal


class AdaptiveRateLimiter:
    def __init__(self, max_rps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_rate = max_rps if max_rps > 0 else math.inf
        self.rate = self.max_rate
        self.clock = clock
        self._next_start = 0.0
        self._last_cut = -math.inf
        self._epoch = 0  # bumped by slow_down(): sleepers re-book their slot
        self._recent: list[float] = []  # start times, to estimate the rate when unbounded

    def _book(self) -> float:
        """Reserve the next start time; return how long to wait for it."""
        now = self.clock()
        start = max(now, self._next_start)
        if math.isfinite(self.rate):
            self._next_start = start + 1 / self.rate
        else:
            self._recent = [*self._recent[-49:], start]
        return start - now

    async def acquire(self, sleep: Callable[[float], Awaitable[bool | None]] = asyncio.sleep) -> None:
        """Wait for this call's turn. A ``sleep`` that returns False was cut short: give up waiting."""
        while True:
            epoch = self._epoch
            delay = self._book()
            if delay <= 0 or await sleep(delay) is False or epoch == self._epoch:
                return

    def slow_down(self, retry_after: float | None = None) -> None:
        now = self.clock()
        if now - self._last_cut >= COOLDOWN:
            if math.isinf(self.rate):
                span = (self._recent[-1] - self._recent[0]) if len(self._recent) > 1 else 0
                self.rate = len(self._recent) / span if span > 0 else 1.0
            self.rate = max(MIN_RATE, self.rate / 2)
            self._last_cut = now
        pause = retry_after if retry_after and retry_after > 0 else 1 / self.rate
        # Drop every booking made at the old rate: sleepers wake and book again behind the pause.
        self._next_start = now + pause
        self._epoch += 1

    def speed_up(self) -> None:
        if self.rate < self.max_rate:
            ceiling = self.max_rate if math.isfinite(self.max_rate) else self.rate * 2
            step = max(ceiling / RECOVERY_STEPS, 0.05)
            self.rate = min(self.max_rate, self.rate + step)
