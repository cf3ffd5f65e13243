"""The token's limit learned and kept, and an API that cannot be reached."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import orjson
import pytest
from scrapy.exceptions import CannotResolveHostError, DownloadConnectionRefusedError, IgnoreRequest
from twisted.internet.error import TimeoutError as TwistedTimeoutError

from rednote_crawl import stops
from rednote_crawl.downloader import policy
from rednote_crawl.downloader.policy import UNREACHABLE_GRACE, ApiPolicyMiddleware
from rednote_crawl.downloader.throttle import TokenThrottleMiddleware
from rednote_crawl.names import Meta
from rednote_crawl.state.limits import FILE, LimitFile, token_key
from tests.conftest import TOKEN, crawl_args, scrapy_in_process, start_scrapy
from tests.test_components import answer, api_request, make_crawler

# --- the learned limit, kept per token ------------------------------------------------------------


def test_a_learned_limit_is_kept_per_token_under_a_hash(tmp_path):
    limits = LimitFile(tmp_path)
    assert limits.get("token-a") is None
    limits.put("token-a", 7.8125)
    limits.put("token-b", 19)
    assert (limits.get("token-a"), limits.get("token-b"), LimitFile(tmp_path).get("token-c")) == (7.812, 19, None)
    stored = (tmp_path / FILE).read_text()
    assert "token-a" not in stored and token_key("token-a") in stored, "the token itself is never kept"


def test_a_folder_that_cannot_be_written_costs_a_warning(tmp_path, caplog):
    (tmp_path / "file").write_text("")
    LimitFile(tmp_path / "file" / "sub").put("t", 3)
    assert "JUSTONEAPI_STATE_DIR" in caplog.text


SEEDS = ["海信", "Nike", "小米", "蔚来", "Apple", "喜茶", "比亚迪", "李宁"]  # 93 pages: eight queries at once


def crawl(server, tmp_path: Path, n: int, *args: str, here: bool = False) -> subprocess.CompletedProcess[str]:
    """A crawl of eight keywords, in a subprocess: the limit it learns is a measure of time, which a
    crawl sharing this process (and its GIL) with the sandbox would skew (seen: 18.3 calls/s of 15).
    ``here``: in this process (conftest.py), for a crawl that measures nothing."""
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(SEEDS), encoding="utf-8")
    output = tmp_path / f"notes-{n}.jsonl"
    cmd = crawl_args(*args, seeds=seeds, output=output, settings={"JUSTONEAPI_MAX_RPS": "0"}, state=tmp_path / "state")
    env = {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BASE_URL": server.url}
    if here:
        return scrapy_in_process(*cmd, env=env)
    proc = start_scrapy(*cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.crawl
def test_the_next_crawl_with_the_token_starts_at_its_learned_limit(sandbox_factory, tmp_path):
    server = sandbox_factory(rate_limit=15, latency=0.05)
    # The limit is measured over 2 s or more of 302s (MIN_SPAN, COOLDOWN in state/rate.py): 2.4 to 5 s
    # into the crawl, seen; all 93 pages last 5.3 s.
    first = crawl(server, tmp_path, 1)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "the token's limit is about" in first.stderr and "measured in this run" in first.stderr
    kept = orjson.loads((tmp_path / "state" / FILE).read_bytes())
    assert list(kept) == [token_key(TOKEN)] and 12 <= kept[token_key(TOKEN)]["limit"] <= 18
    assert TOKEN not in (tmp_path / "state" / FILE).read_text()
    calls_before = len(server.log)
    # The next crawl measures nothing: in this process. Four pages of the eight queries (32 calls, 2.2 s
    # at the limit) are enough to see a storm: a crawl that started without the limit met 6 or 7 302s.
    second = crawl(server, tmp_path, 2, "-a", "max_pages=4", here=True)
    assert second.returncode == 0, second.stderr[-2000:]
    calls = list(server.log)[calls_before:]
    assert len(calls) >= 4 * len(SEEDS)
    assert sum(1 for c in calls if c["code"] == 302) <= max(1, len(calls) // 100), "no 302 storm: at most 1%"
    assert "learned by an earlier crawl" in second.stderr


# --- an API that cannot be reached -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("error", [CannotResolveHostError("no such host"), DownloadConnectionRefusedError("refused")])
def test_before_the_first_answer_an_unreachable_api_stops_the_crawl_after_the_grace(monkeypatch, error):
    clock = Clock()
    monkeypatch.setattr(policy.time, "monotonic", clock)

    async def scenario():
        crawler = make_crawler(JUSTONEAPI_BASE_URL="https://api.example.invalid")
        mw = ApiPolicyMiddleware(crawler)
        retry = mw.process_exception(api_request(), error)
        assert retry is not None and retry.meta[Meta.NOT_BEFORE] > 0 and "retry_times" not in retry.meta
        clock.now += UNREACHABLE_GRACE - 1
        assert mw.process_exception(api_request(), error) is not None, "within the grace: tried again"
        clock.now += 1
        with pytest.raises(IgnoreRequest, match=r"cannot reach the API at api\.justoneapi\.com"):  # the host tried
            mw.process_exception(api_request(), error)
        await asyncio.sleep(0)
        return crawler

    crawler = asyncio.run(scenario())
    assert crawler.engine.closed == [stops.API_UNREACHABLE.reason]


def test_after_the_first_answer_an_unreachable_api_is_a_network_blip(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(policy.time, "monotonic", clock)
    crawler = make_crawler(JUSTONEAPI_RETRY_TIMES=1)
    mw = ApiPolicyMiddleware(crawler)
    request = api_request()
    mw.process_response(request, answer(request))
    first = mw.process_exception(api_request(), CannotResolveHostError("blip"))
    assert first is not None and first.meta["retry_times"] == 1, "retried as any transient failure"
    clock.now += UNREACHABLE_GRACE * 3
    with pytest.raises(IgnoreRequest, match="retries spent"):
        mw.process_exception(first, CannotResolveHostError("blip"))
    assert crawler.engine.closed == []


def test_a_silent_host_keeps_the_timeout_rule(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(policy.time, "monotonic", clock)
    crawler = make_crawler()
    mw = ApiPolicyMiddleware(crawler)
    clock.now += UNREACHABLE_GRACE * 3
    retry = mw.process_exception(api_request(), TwistedTimeoutError())
    assert retry is not None and retry.meta["retry_times"] == 1 and crawler.engine.closed == []


def test_a_call_that_never_left_is_not_counted_as_sent_nor_against_the_budget():
    async def scenario():
        crawler = make_crawler(JUSTONEAPI_MAX_REQUESTS=1, JUSTONEAPI_MAX_RPS=0)
        throttle, mw = TokenThrottleMiddleware(crawler), ApiPolicyMiddleware(crawler)
        request = api_request()
        await throttle.process_request(request)
        mw.process_exception(request, DownloadConnectionRefusedError("refused"))
        await throttle.process_request(api_request())  # the budget of 1 call is still whole
        await asyncio.sleep(0)
        return crawler

    crawler = asyncio.run(scenario())
    stats = crawler.stats
    assert stats.get_value("justoneapi/requests/sent") == 1 and stats.get_value("justoneapi/requests/not_delivered") == 1
    assert crawler.engine.closed == []
