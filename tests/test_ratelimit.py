"""The token's rate limiter, on a fake clock: finding the limit from what the API accepts."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

from rednote_crawl.state.rate import (
    FALLBACK_CUT,
    MARGIN,
    MIN_RATE,
    PROBE_EVERY,
    PROBE_STEP,
    SEARCH_STEP,
    AdaptiveRateLimiter,
    book,
)
from tests.conftest import until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_calls_are_spaced_at_the_rate():
    clock = Clock()
    limiter = AdaptiveRateLimiter(4, clock)
    assert [round(limiter._book(), 3) for _ in range(5)] == [0, 0.25, 0.5, 0.75, 1.0]


def accept_at(limiter: AdaptiveRateLimiter, clock: Clock, per_second: float, seconds: float) -> None:
    """The API accepts calls at ``per_second`` for ``seconds``."""
    for _ in range(round(per_second * seconds)):
        clock.now += 1 / per_second
        limiter.speed_up()


def refused_at(limiter: AdaptiveRateLimiter, clock: Clock, limit: float, seconds: float) -> None:
    """Calls go out faster than ``limit``: the API accepts ``limit`` a second and refuses the rest."""
    for n in range(round(limit * seconds)):
        clock.now += 1 / limit
        limiter.speed_up()
        if n % 2 == 0:
            limiter.slow_down()


def test_302s_measure_the_limit_the_rate_goes_below_it_and_everyone_pauses():
    clock = Clock()
    limiter = AdaptiveRateLimiter(10, clock)
    accept_at(limiter, clock, 10, 3)
    refused_at(limiter, clock, 6, 4)  # the API took 6 calls/s between its 302s: its limit
    assert limiter.limit == pytest.approx(6, rel=0.1) and limiter.rate == pytest.approx(limiter.limit * (1 - MARGIN))
    rate = limiter.rate
    limiter.slow_down(retry_after=7)  # within the cooldown: the same burst of 302s cuts once
    assert limiter.rate == rate and limiter._book() == pytest.approx(7), "but every 302 pauses"
    clock.now += 10
    refused_at(limiter, clock, 3, 4)
    assert limiter.limit == pytest.approx(3, rel=0.1), "a limit that fell is measured again"


def test_a_first_302_starts_from_the_burst_the_api_took():
    clock = Clock()
    limiter = AdaptiveRateLimiter(0, clock)
    for _ in range(16):
        assert limiter._book() == 0, "no limit known: no wait"
    limiter.slow_down()  # before any accepted answer: nothing to start from yet
    assert limiter.rate == float("inf")
    clock.now += 0.1
    for _ in range(5):
        limiter.speed_up()
    clock.now += 0.1
    limiter.slow_down()
    assert limiter.rate == 5 and limiter.limit is None


def test_after_a_probe_a_302_goes_back_below_the_limit_and_lower_while_refused():
    clock = Clock()
    limiter = AdaptiveRateLimiter(10, clock)
    limiter.start_at(9)
    limiter.state.rate = 9.5  # a probe went past the limit
    limiter.slow_down()
    assert limiter.rate == pytest.approx(9 * (1 - MARGIN))
    clock.now += 1.5
    limiter.slow_down()  # refused below the limit: a little lower, until 302s can measure it
    assert limiter.rate == pytest.approx(9 * (1 - MARGIN) ** 2)
    for _ in range(2):
        clock.now += 1.5
        limiter.slow_down()
    # refused for long, with nothing accepted to measure the limit by: cut
    assert limiter.rate == pytest.approx(9 * (1 - MARGIN) ** 3 * FALLBACK_CUT)
    for _ in range(40):
        clock.now += 2
        limiter.slow_down()
    assert limiter.rate == MIN_RATE


def test_without_a_302_the_rate_creeps_up_rarely_and_gently_to_the_ceiling():
    clock = Clock()
    limiter = AdaptiveRateLimiter(10, clock)
    limiter.start_at(5)
    rate = limiter.rate
    accept_at(limiter, clock, rate, (PROBE_EVERY - 2) / rate)
    assert limiter.rate == rate, "no probe before PROBE_EVERY accepted calls"
    accept_at(limiter, clock, rate, 3 / rate)
    assert limiter.rate == pytest.approx(rate * (1 + PROBE_STEP)), "one small step up"
    accept_at(limiter, clock, 9, PROBE_EVERY * 60 / 9)
    assert limiter.rate == 10, "never past JUSTONEAPI_MAX_RPS"


def test_before_a_limit_is_measured_the_rate_climbs_every_second():
    clock = Clock()
    limiter = AdaptiveRateLimiter(0, clock)
    limiter.speed_up()
    limiter.slow_down()
    assert limiter.rate == 1
    clock.now += 3
    accept_at(limiter, clock, 1, 5)
    assert limiter.rate == pytest.approx((1 + SEARCH_STEP) ** 5), "one step a second"


def test_a_learned_limit_is_where_the_next_crawl_starts():
    limiter = AdaptiveRateLimiter(0, Clock())
    limiter.start_at(7.5)
    assert limiter.rate == pytest.approx(7.5 * (1 - MARGIN)) and limiter.limit == 7.5
    capped = AdaptiveRateLimiter(5, Clock())
    capped.start_at(7.5)
    assert capped.rate == 5, "JUSTONEAPI_MAX_RPS stays a ceiling"
    fresh = AdaptiveRateLimiter(0, Clock())
    fresh.start_at(None)
    assert fresh.limit is None and fresh.rate == float("inf")


class Bucket:
    """The API's limit: a token bucket at ``rate`` holding ``burst`` calls (what the sandbox does)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def simulate(limit: float, seconds: float, learned: float | None = None, concurrency: int = 16, latency: float = 0.4):
    """A crawl against a bucket, on a fake clock: (accepted calls/s after 10 s, share of 302s after 10 s)."""
    clock = Clock()
    limiter = AdaptiveRateLimiter(0, clock)
    limiter.start_at(learned)
    bucket = Bucket(limit, max(4, limit / 2), clock.now)
    start = clock.now
    slots = [clock.now] * concurrency  # when each of the crawl's slots may send again
    events: list[tuple[float, bool]] = []
    while clock.now - start < seconds:
        slot = min(range(concurrency), key=slots.__getitem__)
        clock.now = max(clock.now, slots[slot])
        epoch, wait = limiter.change(partial(book, max_rate=limiter.max_rate))
        while wait > 0:  # as acquire() does: sleep, and book again if a 302 came meanwhile
            clock.now += wait
            if limiter.epoch() == epoch:
                break
            epoch, wait = limiter.change(partial(book, max_rate=limiter.max_rate))
        accepted = bucket.take(clock.now)
        events.append((clock.now, accepted))
        answered = clock.now + latency
        slots[slot] = answered
        if accepted:
            limiter.speed_up()
        else:
            limiter.slow_down()
    late = [ok for at, ok in events if at - start >= 10]
    span = seconds - 10
    return sum(late) / span, late.count(False) / len(late)


@pytest.mark.parametrize("limit", [2, 8, 20])
def test_with_the_limit_unknown_the_crawl_finds_it(limit):
    rate, share_302 = simulate(limit, seconds=120)
    assert rate >= 0.95 * limit and share_302 <= 0.01, (rate, share_302)


@pytest.mark.parametrize("limit", [2, 8, 20])
def test_with_the_limit_learned_the_next_crawl_has_no_302_storm(limit):
    rate, share_302 = simulate(limit, seconds=120, learned=limit)
    assert rate >= 0.95 * limit and share_302 <= 0.01, (rate, share_302)


def test_a_slow_down_drops_the_bookings_made_at_the_old_rate():
    clock = Clock()
    limiter = AdaptiveRateLimiter(10, clock)
    for _ in range(16):
        limiter._book()  # 16 calls queued up to 1.5 s ahead
    limiter.slow_down(retry_after=0.2)
    assert limiter._book() == pytest.approx(0.2), "the next call waits for the pause, not the old queue"


def test_sleepers_rebook_after_a_slow_down():
    async def scenario() -> float:
        limiter = AdaptiveRateLimiter(20)
        limiter._book()  # the next free slot is 50 ms away
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.ensure_future(limiter.acquire())
        await until(limiter._turn.locked)  # the caller has booked its slot and sleeps
        limiter.slow_down(retry_after=0.3)
        await task
        return loop.time() - started

    assert asyncio.run(scenario()) >= 0.25, "a caller asleep at the 302 waits for the pause, not its old slot"


def test_a_sleep_cut_short_ends_the_wait():
    async def no_sleep(seconds: float) -> bool:
        return False

    async def scenario() -> None:
        limiter = AdaptiveRateLimiter(1)
        limiter._book()
        await asyncio.wait_for(limiter.acquire(no_sleep), timeout=1)

    asyncio.run(scenario())
