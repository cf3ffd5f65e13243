"""The token's AIMD rate limiter, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from rednote_crawl.state.rate import MIN_RATE, RECOVERY_STEPS, AdaptiveRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_calls_are_spaced_at_the_rate():
    clock = Clock()
    limiter = AdaptiveRateLimiter(4, clock)
    assert [round(limiter._book(), 3) for _ in range(5)] == [0, 0.25, 0.5, 0.75, 1.0]


def test_a_rate_limit_halves_the_rate_and_pauses_everyone():
    clock = Clock()
    limiter = AdaptiveRateLimiter(10, clock)
    limiter.slow_down()
    assert limiter.rate == 5
    assert limiter._book() == pytest.approx(0.2)
    limiter.slow_down()  # within the cooldown: the same burst of 302s counts once
    assert limiter.rate == 5
    clock.now += 2
    limiter.slow_down(retry_after=7)
    assert limiter.rate == 2.5
    assert limiter._book() == pytest.approx(7)
    for _ in range(10):
        clock.now += 2
        limiter.slow_down()
    assert limiter.rate == MIN_RATE


def test_paid_pages_win_the_rate_back_quickly_then_probe_up_to_the_ceiling():
    limiter = AdaptiveRateLimiter(10, Clock())
    limiter.slow_down()
    for _ in range(int(RECOVERY_STEPS * 0.4)):  # 5 -> 9, at 10/RECOVERY_STEPS a page
        limiter.speed_up()
    assert limiter.rate == pytest.approx(9)
    for _ in range(RECOVERY_STEPS // 2):  # near the rate of the 302: ten times slower
        limiter.speed_up()
    assert 9.4 < limiter.rate < 9.8
    for _ in range(RECOVERY_STEPS):
        limiter.speed_up()
    assert limiter.rate == 10


def test_without_a_ceiling_the_rate_of_the_last_302_is_the_limit_to_probe_past_slowly():
    clock = Clock()
    limiter = AdaptiveRateLimiter(0, clock)
    for _ in range(21):
        limiter._book()
        clock.now += 0.05
    limiter.slow_down()  # the 302 came at about 20 calls/s
    for _ in range(RECOVERY_STEPS * 2 // 5):
        limiter.speed_up()
    assert 18.5 < limiter.rate < 19.5, "quickly back near the rate of the 302"
    for _ in range(RECOVERY_STEPS):
        limiter.speed_up()
    assert limiter.rate < 21.5, "then past it slowly, not doubling"


def test_without_a_ceiling_a_rate_limit_starts_from_the_observed_rate():
    clock = Clock()
    limiter = AdaptiveRateLimiter(0, clock)
    for _ in range(21):
        assert limiter._book() == 0
        clock.now += 0.05  # 20 calls per second
    limiter.slow_down()
    assert limiter.rate == pytest.approx(10.5, rel=0.01)


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
        await asyncio.sleep(0.01)
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
