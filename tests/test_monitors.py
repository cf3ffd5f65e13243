"""Monitors and notifications (issue 24, points 1, 2 and 6): pure functions on a run's figures and a
job's history, Apprise against a real HTTP receiver on 127.0.0.1 (never a mock), and the settings."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from scrapy.settings import Settings

from rednote_crawl import redaction, stops
from rednote_crawl.config import ApiConfig, ConfigError, SearchArgs, Thresholds
from rednote_crawl.names import Stat
from rednote_crawl.run import monitors
from rednote_crawl.run.monitors import Check, RunFigures, render_message, run_monitors
from rednote_crawl.run.notify import Notifier
from rednote_crawl.state import KeywordFigures
from rednote_crawl.state.jobfolder import JobFolder
from tests.conftest import TOKEN

LIMITS = Thresholds()


def run_figures(**changes) -> RunFigures:
    base = dict(spider="note_search", reason="finished", exit_status=0, seconds=65, calls=100, pages_read=100,
                pages_failed=0, new_notes=400, rate_limited=0, host="box", job_folder="jobs/brands")
    return RunFigures(**{**base, **changes})


def crawl(n: int, **new: int) -> list[KeywordFigures]:
    """One crawl of the job: each keyword with its new notes, 10 calls each."""
    return [KeywordFigures(n, keyword, 10, count, count, 0, 10) for keyword, count in new.items()]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


# --- the monitors --------------------------------------------------------------------------


def test_a_good_run_passes_every_monitor_and_its_figures_are_data():
    history = [crawl(i, 海信=50, Nike=40) for i in range(1, 5)]
    checks = run_monitors(run_figures(), history, LIMITS)
    assert [c.name for c in checks] == [
        "exit_status", "failed_pages", "rate_limited", "calls_per_new_note", "silent_keywords", "invalid_items"
    ]
    assert all(c.ok for c in checks[:-1]) and checks[-1].ok is None  # no validation ran in these figures
    assert json.loads(json.dumps([c.to_dict() for c in checks]))[0]["status"] == "passed"
    assert json.loads(json.dumps(run_figures().to_dict()))["exit_status"] == 0


@pytest.mark.parametrize(
    ("reason", "status", "words"),
    [
        ("justoneapi_insufficient_balance", 5, "the account balance is used up"),
        ("justoneapi_redis_state_lost", 10, "the crawl's state in Redis was lost"),
        ("shutdown", 1, "interrupted"),
        ("finished", 3, "some pages failed"),
    ],
)
def test_the_exit_status_monitor_says_the_stop_in_words(reason, status, words):
    check = by_name(run_monitors(run_figures(reason=reason, exit_status=status), [], LIMITS))["exit_status"]
    assert check.ok is False and words in check.text and check.value == status


def test_failed_pages_and_the_302_share_against_their_thresholds():
    checks = by_name(run_monitors(run_figures(pages_failed=2, rate_limited=6), [], LIMITS))
    assert checks["failed_pages"].ok is False and checks["failed_pages"].value == 2
    assert checks["rate_limited"].ok is False and checks["rate_limited"].value == 0.06
    relaxed = Thresholds(failed_pages=2, rate_limited=0.1)
    checks = by_name(run_monitors(run_figures(pages_failed=2, rate_limited=6), [], relaxed))
    assert checks["failed_pages"].ok and checks["rate_limited"].ok


def test_calls_per_new_note_against_the_jobs_own_history():
    usual = [crawl(i, 海信=50, Nike=50) for i in range(1, 4)]  # 20 calls, 100 new: 0.2 a new note
    costly = [KeywordFigures(4, "海信", 10, 5, 5, 0, 10), KeywordFigures(4, "Nike", 10, 5, 5, 0, 10)]  # 2.0
    check = monitors.cost_per_new_note([*usual, costly], LIMITS)
    assert check.ok is False and check.value == 2.0 and check.limit == 0.6
    assert monitors.cost_per_new_note([*usual, crawl(4, 海信=40, Nike=40)], LIMITS).ok
    assert monitors.cost_per_new_note([usual[0], costly], LIMITS).ok is None, "too little history to judge"
    assert monitors.cost_per_new_note([*usual, costly], Thresholds(cost_factor=0)).ok is None


def test_a_keyword_whose_new_notes_drop_to_zero_after_crawls_with_some():
    before = [crawl(i, 海信=5, Nike=3, 小米=0) for i in range(1, 4)]
    check = monitors.silent_keywords([*before, crawl(4, 海信=0, Nike=2, 小米=0)], LIMITS)
    assert check.ok is False and check.keywords == ["海信"] and "海信" in check.text  # 小米 never had any
    assert monitors.silent_keywords([*before[1:], crawl(4, 海信=0, Nike=2)], LIMITS).ok is None  # 2 crawls before
    assert monitors.silent_keywords([*before, crawl(4, 海信=1, Nike=2, 小米=0)], LIMITS).ok
    gap = [crawl(1, 海信=5), crawl(2, 海信=0), crawl(3, 海信=5), crawl(4, 海信=0)]
    assert monitors.silent_keywords(gap, LIMITS).ok, "said once, when the drop comes, not every silent day"


def test_the_history_monitors_judge_only_a_complete_crawl():
    history = [crawl(i, 海信=5) for i in range(1, 4)] + [crawl(4, 海信=0)]
    checks = by_name(run_monitors(run_figures(reason="justoneapi_budget_spent", exit_status=6), history, LIMITS))
    assert checks["silent_keywords"].ok is None and "not complete" in checks["silent_keywords"].text
    checks = by_name(run_monitors(run_figures(job_folder=None, items_key="note_search:items"), [], LIMITS))
    assert "a worker judges its own part" in checks["calls_per_new_note"].text


def test_notes_are_checked_against_the_output_schema_counted_and_never_dropped(caplog):
    from scrapy.utils.test import get_crawler

    from rednote_crawl.items.validate import NoteSchemaPipeline
    from tests.test_real_notes import all_real_notes
    from tests.test_real_notes import item as item_of

    crawler = get_crawler(settings_dict={"JUSTONEAPI_TOKEN": TOKEN})
    pipeline = NoteSchemaPipeline.from_crawler(crawler)
    item = dict(item_of(all_real_notes()[0]))
    assert pipeline.process_item(item) is item and crawler.stats.get_value(Stat.ITEMS_INVALID) == 0
    broken = {**item, "liked_count": "1.2万"}
    with caplog.at_level(logging.WARNING):
        assert pipeline.process_item(broken) is broken, "written all the same"
    assert crawler.stats.get_value(Stat.ITEMS_INVALID) == 1
    assert f"Note {item['note_id']} does not match the output's schema at liked_count" in caplog.text
    run = run_figures(invalid_items=crawler.stats.get_value(Stat.ITEMS_INVALID))
    check = by_name(run_monitors(run, [], LIMITS))["invalid_items"]
    assert check.ok is False and check.value == 1
    assert by_name(run_monitors(run_figures(invalid_items=0), [], LIMITS))["invalid_items"].ok


def test_the_job_folders_history_through_the_state_interface(tmp_path):
    """history() reads the job folder's per-crawl, per-keyword figures: the last N crawls, oldest first."""
    from rednote_crawl import api

    job = JobFolder.take(tmp_path / "job")
    assert job is not None
    for n in range(1, 4):
        job.begin_run(f"2026-11-2{n}T00:00:00+00:00", "fp", {})
        notes = [{"note_id": f"{n:02d}{i:022x}", "keyword": "海信"} for i in range(n)]
        job.record_page(api.Query("海信", "general", "_0", ""), 1, notes, "empty_page", n, calls=2)
        job.end_run("finished", f"2026-11-2{n}T01:00:00+00:00", 2, 0)
    history = job.history(2)
    assert [[(k.crawl, k.keyword, k.new, k.calls) for k in c] for c in history] == [
        [(2, "海信", 2, 2)],
        [(3, "海信", 3, 2)],
    ]
    job.close()


# --- the message -----------------------------------------------------------------------------


def test_the_message_holds_what_a_person_needs_to_act():
    run = run_figures(reason="justoneapi_quota_exceeded", exit_status=5, outputs=("jobs/brands/crawl-0003.jsonl",))
    checks = run_monitors(run, [], LIMITS)
    title, body = render_message(run, checks, ["  next: the daily quota is used up: run the same command again tomorrow"])
    assert "note_search" in title and "exit status 5" in title and "FAILED" in title
    for needed in ("daily quota is used up", "New notes: 400", "calls: 100", "0 failed", "next: the daily quota",
                   "scrapy report jobs/brands", "crawl-0003.jsonl", "job folder jobs/brands"):
        assert needed in body, needed


# --- notifications: a real receiver ----------------------------------------------------------


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        super().__init__(("127.0.0.1", 0), Hook)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server_port}/hook/key-9f8e7d6c5b4a3b2c1d0e"


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append((self.path, json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_notification_reaches_a_real_webhook_and_a_dead_one_is_logged(receiver, caplog):
    dead = f"json://127.0.0.1:{closed_port()}/hook/key-0a1b2c3d4e5f6a7b8c9d"
    notifier = Notifier([receiver.url, dead], timeout=10)
    with caplog.at_level(logging.INFO):
        sent = asyncio.run(notifier.send("rednote_crawl: FAILED", "Exit status 5: the balance"))
    assert sent is False, "one of the two failed"
    assert receiver.posts == [
        ("/hook/key-9f8e7d6c5b4a3b2c1d0e", {**receiver.posts[0][1], "title": "rednote_crawl: FAILED",
                                            "message": "Exit status 5: the balance"})
    ]
    log = caplog.text
    assert "Notification not sent to json://127.0.0.1:" in log and "the exit status is unchanged" in log
    assert f"Notification sent to json://127.0.0.1:{receiver.server_port}/…" in log


def test_a_service_that_does_not_answer_costs_the_timeout_at_most(caplog):
    import socket
    import time

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        notifier = Notifier([f"json://127.0.0.1:{silent.getsockname()[1]}/hook"], timeout=1)
        start = time.monotonic()
        assert asyncio.run(notifier.send("t", "b")) is False
        assert time.monotonic() - start < 3
    assert "Notification not sent within 1 s (JUSTONEAPI_NOTIFY_TIMEOUT)" in caplog.text


def test_notification_urls_are_masked_in_every_log_record(caplog):
    url = "mailtos://robot:s3cr3tpass@mail.example.com?to=team@example.com"
    hook = "json://hooks.example.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"
    redaction.install_url(url)
    redaction.install_url(hook)
    logger = logging.getLogger("apprise")
    with caplog.at_level(logging.INFO):
        logger.warning("failed %s with password s3cr3tpass", url)
        logger.warning("posting to %s", hook.replace("json://", "https://"))
    assert "s3cr3tpass" not in caplog.text and "XXXXXXXXXXXXXXXXXXXXXXXX" not in caplog.text
    assert "mailtos://mail.example.com/…" in caplog.text
    assert redaction.mask_url("dingtalk://abcdef0123456789") == "dingtalk://…"


# --- settings and arguments (point 6) ---------------------------------------------------------


def config(**settings: object) -> ApiConfig:
    return ApiConfig.from_settings(Settings(settings), environ={"JUSTONEAPI_TOKEN": TOKEN})


def test_notify_and_monitor_settings_are_checked_at_start_up():
    good = config(JUSTONEAPI_NOTIFY="json://127.0.0.1:9/hook, mailto://u:p@example.com", JUSTONEAPI_NOTIFY_ON="always")
    assert good.notify == ("json://127.0.0.1:9/hook", "mailto://u:p@example.com") and good.notify_on == "always"
    assert "notify" not in repr(good) or "json://" not in repr(good)
    with pytest.raises(ConfigError, match=r"JUSTONEAPI_NOTIFY: nosuchservice://… is not a notification URL"):
        config(JUSTONEAPI_NOTIFY="nosuchservice://secret-key-0123456789")
    with pytest.raises(ConfigError, match="JUSTONEAPI_NOTIFY_ON='sometimes' is not valid"):
        config(JUSTONEAPI_NOTIFY_ON="sometimes")
    with pytest.raises(ConfigError, match=r"JUSTONEAPI_MONITOR_RATE_LIMITED=5\.0 is a share"):
        config(JUSTONEAPI_MONITOR_RATE_LIMITED="5")
    with pytest.raises(ConfigError, match="JUSTONEAPI_MONITOR_HISTORY='x' is not a whole number"):
        config(JUSTONEAPI_MONITOR_HISTORY="x")
    with pytest.raises(ConfigError, match="did you mean JUSTONEAPI_NOTIFY_ON"):
        config(JUSTONEAPI_NOTIFY_ONN="always")
    assert config(JUSTONEAPI_MONITOR_SILENT_AFTER="5").thresholds.silent_after == 5


def test_a_keyword_that_is_a_file_is_refused_with_the_hint_keywords(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("brands.txt").write_text("海信\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"-a keyword=brands.txt names a file.*pass -a keywords=brands.txt"):
        SearchArgs.parse(keyword="brands.txt")
    assert SearchArgs.parse(keyword="brands.txt.nope,海信").keywords is not None


def test_a_mistyped_spider_argument_gets_a_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown spider argument -a sortt=.*did you mean -a sort=\.\.\.\?"):
        SearchArgs.parse(sortt="latest")
    with pytest.raises(ConfigError) as refused:
        SearchArgs.parse(colour="red")
    assert "did you mean" not in str(refused.value)


def test_the_summary_names_the_ceiling_when_it_held_the_calls():
    from scrapy.utils.test import get_crawler

    from rednote_crawl.run.summary import CrawlSummary
    from rednote_crawl.spiders.note_search import NoteSearchSpider

    crawler = get_crawler(NoteSearchSpider, {"JUSTONEAPI_MAX_RPS": 5, "JUSTONEAPI_TOKEN": TOKEN})
    summary = CrawlSummary(crawler)
    crawler.stats.set_value(Stat.RATE_HELD_SECONDS, 0.0)
    crawler.stats.set_value(Stat.RATE_HELD_BY_CEILING_SECONDS, 3.5)
    assert "held by the JUSTONEAPI_MAX_RPS ceiling (5 calls/s) for 3.5 s" in summary.render(stops.FINISHED)
    crawler.stats.set_value(Stat.RATE_HELD_SECONDS, 2.0)
    crawler.stats.set_value(Stat.RATE_HELD_BY_CEILING_SECONDS, 0.0)
    assert "held by the token's rate limit for 2.0 s" in summary.render(stops.FINISHED)


def test_the_throttle_counts_a_wait_at_the_ceiling_as_the_ceilings():
    from rednote_crawl.state.rate import AdaptiveRateLimiter

    limiter = AdaptiveRateLimiter(5)
    assert limiter.at_ceiling, "no limit known: the ceiling paces the calls"
    limiter.slow_down()  # a 302: from now on the token's limit holds them
    assert not limiter.at_ceiling
    assert not AdaptiveRateLimiter(0).at_ceiling, "no ceiling"
