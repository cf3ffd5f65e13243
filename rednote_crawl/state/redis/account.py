"""The token's rate limit and call budget, shared by every worker through Redis.

Why not ``limits`` or ``pyrate-limiter`` (both have Redis backends): they enforce fixed
rates, a count per window or a leaky bucket at a configured rate. The API's limit is not
known in advance, so the rate must be found: set for every worker at once from the rate the API
accepted when a 302 comes, every worker paused for ``Retry-After``, probed upward now and then.
Those are rate.py's rules; here their state lives in one Redis key, changed by optimistic
transactions (WATCH), with Redis's clock as the one clock of all workers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from redis.exceptions import WatchError

from rednote_crawl import stops
from rednote_crawl.state.rate import AdaptiveRateLimiter, RateState, T
from rednote_crawl.state.redis.shared import CRAWL_ID, REDIS_ERRORS, SharedCrawl, lua_guard

Sleep = Callable[[float], Awaitable[bool | None]]
RETRY_REDIS = 1.0  # seconds between tries while Redis is away


class SharedRateLimiter(AdaptiveRateLimiter):
    def __init__(self, shared: SharedCrawl, max_rps: float) -> None:
        super().__init__(max_rps)
        self.shared = shared

    def change(self, rule: Callable[[RateState, float], T]) -> T:
        key = self.shared.keys.ratelimit
        with self.shared.server.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    seconds, micros = pipe.time()
                    state = RateState.from_dict(orjson.loads(raw)) if raw else self.initial()
                    result = rule(state, seconds + micros / 1e6)
                    pipe.multi()
                    pipe.set(key, orjson.dumps(state.to_dict()))
                    pipe.execute()
                except WatchError:
                    continue  # another worker changed it first: apply the rule to the new state
                self.state = state
                self.shared.health.ok()
                return result

    def epoch(self) -> int:
        raw = self.shared.server.get(self.shared.keys.ratelimit)
        return RateState.from_dict(orjson.loads(raw)).epoch if raw else 0

    async def acquire(self, sleep: Sleep) -> None:
        while True:
            try:
                return await super().acquire(sleep)
            except REDIS_ERRORS as exc:
                self.shared.health.failed(exc)
                if await sleep(RETRY_REDIS) is False:
                    return

    def slow_down(self, retry_after: float | None = None) -> None:
        try:
            super().slow_down(retry_after)
        except REDIS_ERRORS as exc:  # the next 302 after Redis is back cuts the rate
            self.shared.health.failed(exc)

    def speed_up(self) -> None:
        try:
            super().speed_up()
        except REDIS_ERRORS as exc:
            self.shared.health.failed(exc)


# KEYS: stats, stop, crawl. ARGV: budget (0 = none), reason to stop with, worker, crawl id.
# -> false: spend the call; {reason, message, worker}: the crawl is stopped, do not send it;
# LOST or RESET: the crawl is gone from Redis
SPEND = lua_guard("KEYS[3]", "ARGV[4]") + """
local stop = redis.call('HMGET', KEYS[2], 'reason', 'message', 'worker')
if stop[1] then return stop end
local calls = redis.call('HINCRBY', KEYS[1], 'calls', 1)
local budget = tonumber(ARGV[1])
if budget > 0 and calls > budget then
  redis.call('HINCRBY', KEYS[1], 'calls', -1)
  local message = 'the budget of ' .. budget .. ' calls (all workers together) is spent'
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[2], 'reason', ARGV[2], 'message', message, 'worker', ARGV[3], 'at', t[1])
  return {ARGV[2], message, ARGV[3]}
end
return false
"""


class SharedCallBudget:
    """``JUSTONEAPI_MAX_REQUESTS`` for the whole crawl, and the crawl-wide stop, checked per call."""

    def __init__(self, shared: SharedCrawl, max_requests: int, reason: str) -> None:
        self.shared = shared
        self.max_requests = max_requests
        self.reason = reason
        shared._scripts["spend"] = shared.server.register_script(SPEND)

    async def spend(self, sleep: Sleep) -> tuple[str, str, str] | None:
        """None: send the call. Else (reason, message, worker) of the stop in force."""
        keys = [self.shared.keys.stats, self.shared.keys.stop]
        while True:
            if self.shared.lost:
                return (stops.REDIS_STATE_LOST.reason, self.shared.lost, self.shared.worker_id)
            try:
                stop = self.shared.guarded("spend", keys, [self.max_requests, self.reason, self.shared.worker_id, CRAWL_ID])
            except REDIS_ERRORS as exc:
                self.shared.health.failed(exc)
                if await sleep(RETRY_REDIS) is False:
                    return ("shutdown", "the worker is shutting down", self.shared.worker_id)
                continue
            self.shared.health.ok()
            if self.shared.lost:
                continue
            return tuple(stop) if stop else None  # type: ignore[return-value]
