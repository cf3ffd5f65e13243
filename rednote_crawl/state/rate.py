"""Pacing the calls of one token, and finding its limit from what the API accepts.

The vendor publishes no rate limit, and answers 302 above it (a token bucket, as far as its
behaviour shows). While 302s come, the rate of code-0 answers the API still gives is its limit
itself: a bucket refills at its rate. So a 302 sets the rate to the accepted rate of the last few
seconds (between 302s: what its bucket refilled), less a small margin, and pauses every caller
(``Retry-After`` when the API sends one).
Without 302s, the rate creeps up rarely and gently (2% after 300 accepted calls) to find a limit
that was raised; before any limit was measured (the first seconds), it climbs back faster. Calls are spaced evenly at the rate: never a burst of the whole
concurrency. Once found, the limit is remembered for the token (``learned``), so the next crawl
starts there instead of searching again.

The rules are pure functions of a ``RateState``. ``AdaptiveRateLimiter`` keeps that state in
memory; a distributed crawl keeps it in Redis (state/redis/account.py) and applies the same rules.
Plain asyncio, no Scrapy: the throttle middleware owns when to call them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

MIN_RATE = 0.2  # calls per second: the floor
MARGIN = 0.02  # below the measured limit
WINDOW = 8.0  # seconds of answers the estimate reads
MIN_SPAN = 2.0  # seconds of accepted answers an estimate needs (answer times jitter with the latency)
MIN_SAMPLES = 4  # accepted answers an estimate needs (at slow rates, a longer span)
FALLBACK_CUT = 0.7
COOLDOWN = 1.0  # seconds: 302s closer than this count as one signal
MAX_GAP = 2.0  # seconds: 302s further apart than this belong to different runs of them
PROBE_EVERY = 300  # accepted answers without a 302 before the rate tries PROBE_STEP higher
PROBE_STEP = 0.02
SEARCH_EVERY = 0.5  # seconds: before the limit was ever measured, climb SEARCH_STEP this often (soon at a 302: measured)
SEARCH_STEP = 0.5
RECENT = 50  # start times kept while the rate is unbounded, to estimate it at the first 302

T = TypeVar("T")


@dataclass(slots=True)
class RateState:
    rate: float  # calls per second; inf: no ceiling yet
    next_start: float = 0.0
    last_cut: float = -math.inf
    epoch: int = 0  # bumped by every cut: callers waiting on an old booking book again
    recent: list[float] = field(default_factory=list)  # start times, while the rate is unbounded
    accepted: list[float] = field(default_factory=list)  # times of accepted answers, the last WINDOW seconds
    rejected: list[float] = field(default_factory=list)  # times of 302s, the last WINDOW seconds
    since_cut: int = 0  # accepted answers since the last 302 or probe
    changed_at: float = -math.inf  # when the rate last changed
    last_302: float = -math.inf
    limit: float = math.inf  # the API's limit as last measured (inf: not yet)

    def to_dict(self) -> dict[str, Any]:
        finite = math.isfinite
        return {
            "rate": self.rate if finite(self.rate) else None,
            "next_start": self.next_start,
            "last_cut": self.last_cut if finite(self.last_cut) else None,
            "epoch": self.epoch,
            "recent": self.recent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "since_cut": self.since_cut,
            "changed_at": self.changed_at if finite(self.changed_at) else None,
            "last_302": self.last_302 if finite(self.last_302) else None,
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
            accepted=[float(x) for x in data.get("accepted", [])],
            rejected=[float(x) for x in data.get("rejected", [])],
            since_cut=int(data.get("since_cut", 0)),
            changed_at=-math.inf if data.get("changed_at") is None else float(data["changed_at"]),
            last_302=-math.inf if data.get("last_302") is None else float(data["last_302"]),
            limit=math.inf if data.get("limit") is None else float(data["limit"]),
        )


def start_rate(max_rate: float, learned: float | None) -> float:
    """Where a crawl starts: below the limit learned before, within the ceiling."""
    if learned and learned > 0:
        return min(max_rate, max(MIN_RATE, learned * (1 - MARGIN)))
    return max_rate


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
    """A 302: every caller pauses, and the rate becomes the API's limit as measured, less the margin.

    Between two 302s the API's bucket was empty at both ends, so what it accepted in between is
    what it refilled: its rate exactly, whatever ours was. Once such a span covers MIN_SPAN, the
    limit is measured and kept. Before that: the very first 302 starts the rate at the burst the
    API took; a 302 after a limit was known goes back below it, and cuts deeper if it keeps coming.
    """
    state.rejected = [t for t in state.rejected if t > now - WINDOW]
    state.rejected.append(now)
    window = [t for t in state.accepted if t > now - WINDOW]
    if math.isinf(state.rate) and not window:
        pass  # the first 302 came before any accepted answer: wait for the burst's answers
    elif now - state.last_cut >= COOLDOWN:
        first = _episode_start(state.rejected)
        between = [t for t in window if t > first]
        below_limit = state.limit * (1 - MARGIN)
        refilled = between[-1] - between[0] if between else 0.0
        if refilled >= MIN_SPAN and len(between) >= MIN_SAMPLES:
            state.limit = (len(between) - 1) / refilled  # what the API refilled: its limit
            state.rate = max(MIN_RATE, state.limit * (1 - MARGIN))
        elif math.isinf(state.rate):  # the first 302: start from the burst the API accepted, as calls/s
            state.rate = max(MIN_RATE, float(len(window)))
        elif now - first >= 2 * MIN_SPAN:  # refused for long, too slowly to measure: cut
            state.rate = max(MIN_RATE, state.rate * FALLBACK_CUT)
        elif state.rate > below_limit:  # past a known limit (a probe): back below it
            state.rate = max(MIN_RATE, below_limit)
        elif math.isfinite(state.limit):  # below the known limit and refused: a little lower (more 302s measure it)
            state.rate = max(MIN_RATE, state.rate * (1 - MARGIN))
        state.changed_at = now
        state.last_cut = now
        state.since_cut = 0
    state.last_302 = now
    pause = retry_after if retry_after and retry_after > 0 else 1 / state.rate if math.isfinite(state.rate) else COOLDOWN
    # Drop every booking made at the old rate: sleepers wake and book again behind the pause.
    state.next_start = now + pause
    state.epoch += 1


def _episode_start(rejected: list[float]) -> float:
    """When the current run of 302s began: the bucket was empty all along only while they kept coming."""
    first = rejected[-1]
    for earlier in reversed(rejected[:-1]):
        if first - earlier > MAX_GAP:
            break
        first = earlier
    return first


def accept(state: RateState, now: float, max_rate: float) -> None:
    """A code-0 answer: count it for the next estimate; after many without a 302, probe a little higher."""
    state.accepted = [t for t in state.accepted if t > now - WINDOW]
    state.accepted.append(now)
    state.since_cut += 1
    if not math.isfinite(state.rate) or state.rate >= max_rate or now - state.last_302 <= COOLDOWN:
        return
    if math.isinf(state.limit):  # no limit measured yet: climb every second until 302s come, and measure them
        if now - state.changed_at >= SEARCH_EVERY:
            state.rate = min(max_rate, state.rate * (1 + SEARCH_STEP))
            state.changed_at = now
    elif state.since_cut >= PROBE_EVERY:  # rarely and gently: has the limit risen?
        state.rate = min(max_rate, state.rate * (1 + PROBE_STEP))
        state.since_cut = 0
        state.changed_at = now


class AdaptiveRateLimiter:
    def __init__(self, max_rps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_rate = max_rps if max_rps > 0 else math.inf
        self.state = self.initial()
        self.clock = clock
        self.learned: float | None = None
        self._turn = asyncio.Lock()

    def initial(self) -> RateState:
        """The state a crawl starts from."""
        learned = getattr(self, "learned", None)
        return RateState(rate=start_rate(self.max_rate, learned), limit=learned or math.inf)

    def start_at(self, learned: float | None) -> None:
        """Begin at a limit learned by an earlier crawl of the token."""
        self.learned = learned
        self.state = self.initial()

    @property
    def rate(self) -> float:
        """The rate as last seen (in Redis: as of this worker's last call)."""
        return self.state.rate

    @property
    def limit(self) -> float | None:
        """The API's limit as last measured, or None."""
        return self.state.limit if math.isfinite(self.state.limit) else None

    @property
    def at_ceiling(self) -> bool:
        """Whether ``JUSTONEAPI_MAX_RPS``, not the token's limit, paces the calls: the rate is the ceiling
        and the API has not answered 302 (after a 302, a wait is the token's, even at the ceiling)."""
        return math.isfinite(self.max_rate) and self.state.rate >= self.max_rate and not math.isfinite(self.state.last_302)

    def change(self, rule: Callable[[RateState, float], T]) -> T:
        """Apply a rule to the state at the current time."""
        return rule(self.state, self.clock())

    def _book(self) -> float:
        return self.change(partial(book, max_rate=self.max_rate))[1]

    async def acquire(self, sleep: Callable[[float], Awaitable[bool | None]] = asyncio.sleep) -> None:
        """Wait for this call's turn. A ``sleep`` that returns False was cut short: give up waiting.

        One caller of the process books at a time, the others queue behind it here: a booking is
        never made far ahead at an old rate, so a rate found higher applies to the very next call.
        """
        async with self._turn:
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
        self.change(partial(accept, max_rate=self.max_rate))
