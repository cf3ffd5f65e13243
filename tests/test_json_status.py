"""Status for dashboards (issue 24, point 5): ``scrapy report DIR --json`` and ``scrapy redis status
--json``, each a documented shape with a version, made from the same data as the text they stand for,
and without the token or a Redis password."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from rednote_crawl import api
from rednote_crawl.run import report
from rednote_crawl.state.jobfolder import JobFolder
from rednote_crawl.state.redis.keys import Keys
from tests.conftest import TOKEN, RedisServer, scrapy_in_process

ROOT = Path(__file__).resolve().parent.parent
KEYS = Keys("note_search")
QUIET, LOUD = api.Query("静音"), api.Query("Nike")


def documented_keys(page: str, heading: str) -> set[str]:
    """The keys a docs page lists in the JSON blocks of its section ``heading``: ``"key":`` at any depth."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    section = re.split(r"\n#{1,3} ", text.split(heading, 1)[1], maxsplit=1)[0]
    blocks = [part.split("```", 1)[0] for part in section.split("```json")[1:]]
    assert blocks, f"no JSON example under {heading} in docs/{page}"
    return {key for block in blocks for key in re.findall(r'"([a-z_]+)":', block)}


def all_keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


def shown(value: object) -> str:
    """A number as the text report prints it."""
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


# --- scrapy report DIR --json --------------------------------------------------------------------


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A job of four daily crawls, the last one today: ``静音`` brings new notes in the first three
    and none in the fourth (the silent-keyword monitor fails on crawl 4); crawl 2 had a failed page."""
    folder = tmp_path / "job"
    job = JobFolder.take(folder)
    now = datetime.now(UTC)
    for crawl in range(1, 5):
        at = (now - timedelta(days=4 - crawl, minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        job.begin_run(at, "f", {})
        quiet = [] if crawl == 4 else [{"note_id": f"q{crawl}-{i}", "keyword": QUIET.keyword} for i in range(3)]
        job.record_page(QUIET, 1, quiet, "empty_page", len(quiet) + 1, calls=2)
        loud = [{"note_id": f"l{crawl}-{i}", "keyword": LOUD.keyword} for i in range(5 + crawl)]
        job.record_page(LOUD, 1, loud, None if crawl == 2 else "empty_page", len(loud) + 1, calls=1)
        if crawl == 2:
            job.record_failed(LOUD, 2, "timeout", calls=3)
        job.end_run("finished", at, calls=3 + 3 * (crawl == 2), exit_status=3 if crawl == 2 else 0)
        if crawl == 2:  # a second run finishes crawl 2
            job.begin_run(at, "f", {})
            job.end_run("finished", at, calls=0, exit_status=0)
    job.close()
    return folder


def report_command(*args: str) -> tuple[int, str, str]:
    done = scrapy_in_process("report", *args, env={"JUSTONEAPI_TOKEN": TOKEN})
    return done.returncode, done.stdout, done.stderr


def test_the_report_as_json_is_the_text_reports_table_and_its_monitors(job):
    code, text, _ = report_command(str(job))
    assert code == 0
    code, out, err = report_command(str(job), "--json")
    assert code == 0, err
    doc = orjson.loads(out)
    assert (doc["format"], doc["version"], doc["view"], doc["crawls"]) == ("rednote_crawl/report", 1, "crawl", 4)
    assert doc["days"] is None and doc["trend"] is None and doc["job"] == str(job)
    # one model: the table is the one the text prints, key for key
    reader = JobFolder.read(job)
    assert doc["tables"] == [report.crawl_report(reader.crawl_figures(4)).as_dict()]
    reader.close()
    table = doc["tables"][0]
    assert text.splitlines()[0] == table["title"]
    for row in [*table["rows"], table["total"]]:
        line = next(line for line in text.splitlines() if line.split()[:1] == [row["keyword"]])
        numbers = [c["key"] for c in table["columns"][1:]]
        assert line.split()[1:] == [shown(row[k]) for k in numbers]
    assert [r["keyword"] for r in table["rows"]] == ["Nike", "静音"]
    assert table["rows"][1] == {"keyword": "静音", "pages": 1, "notes": 0, "new": 0, "failed": 0, "calls": 2, "calls_per_new": None}
    assert doc["crawl"]["number"] == 4 and doc["crawl"]["complete"] is True and doc["crawl"]["calls"] == 3
    assert doc["crawl"]["runs"][0]["exit_status"] == 0
    # the job's history monitors, judged on this crawl, as Check.to_dict() gives them
    checks = {c["name"]: c for c in doc["monitors"]}
    assert checks["silent_keywords"]["status"] == "failed" and checks["silent_keywords"]["keywords"] == ["静音"]
    assert checks["calls_per_new_note"]["status"] == "passed"
    assert TOKEN not in out


def test_the_report_as_json_follows_crawl_and_days_as_the_text_does(job):
    code, out, _ = report_command(str(job), "--crawl", "2", "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert doc["crawl"]["number"] == 2 and [r["exit_status"] for r in doc["crawl"]["runs"]] == [3, 0]
    assert doc["tables"][0]["title"].startswith("Report of crawl 2 of job")
    assert {c["name"]: c["status"] for c in doc["monitors"]} == {"calls_per_new_note": "skipped", "silent_keywords": "skipped"}
    code, text, _ = report_command(str(job), "--crawl", "2")
    assert code == 0 and text.splitlines()[0] == doc["tables"][0]["title"], "--crawl N reports crawl N in text too"

    code, out, _ = report_command(str(job), "--days", "2", "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert doc["view"] == "trend" and doc["days"] == 2 and doc["crawl"] is None and doc["monitors"] == []
    assert [c["number"] for c in doc["trend"]["crawls"]] == [3, 4]
    code, text, _ = report_command(str(job), "--days", "2")
    table = doc["tables"][0]
    assert code == 0 and text.splitlines()[0] == table["title"]
    total = next(line for line in text.splitlines() if line.split()[:1] == ["total"])
    assert total.split()[1:] == [str(table["total"]["crawl_3"]), str(table["total"]["crawl_4"])]
    points = {(p["crawl"], p["keyword"]): p["new"] for p in doc["trend"]["points"]}
    assert points == {(3, "Nike"): 8, (4, "Nike"): 9, (3, "静音"): 3, (4, "静音"): 0}

    code, out, _ = report_command(str(job), "--days", "1", "--json")  # only crawl 4 began in the last day
    assert [c["number"] for c in orjson.loads(out)["trend"]["crawls"]] == [4]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--json", "--export", "x.jsonl"], "--json is the report itself"),
        (["--json", "--crawl", "all"], "all goes with --export"),
        (["--json", "--crawl", "9"], "1 to 4"),
        (["--json", "--days", "3", "--crawl", "2"], "name one of them"),
    ],
)
def test_the_report_as_json_refuses_what_it_cannot_combine(job, args, said):
    code, out, err = report_command(str(job), *args)
    assert code == 2 and said in err and out == ""


def test_every_key_of_the_report_is_documented(job):
    crawl, trend = (orjson.loads(report_command(str(job), *a)[1]) for a in (["--json"], ["--json", "--days", "30"]))
    keys = all_keys(crawl) | all_keys(trend)
    keys -= {c for c in keys if c.startswith("crawl_")}  # the trend's columns: one per crawl
    assert keys <= documented_keys("jobs.md", "### The report as JSON")
    assert set(crawl) == set(trend), "every top-level key is always there"


# --- scrapy redis status --json ------------------------------------------------------------------


def status_command(url: str, *args: str) -> tuple[int, str, str]:
    done = scrapy_in_process("redis", "status", *args, env={"REDIS_URL": url})
    return done.returncode, done.stdout, done.stderr


def test_redis_status_as_json_is_what_the_text_says(sandbox, crawl, redis_server: RedisServer):
    client = redis_server.client()
    password = "pw-for-dashboards-77"
    client.acl_setuser("grafana", enabled=True, passwords=[f"+{password}"], keys=["~*"], commands=["+@all"], reset=True)
    url = f"redis://grafana:{password}@127.0.0.1:{redis_server.port}/0"
    # A crawl that stops on its budget: requests stay queued, and a stop is set for every worker.
    result = crawl(
        sandbox,
        keywords=["海信", "Nike", "小米"],
        output=False,
        settings={
            "JUSTONEAPI_MAX_REQUESTS": "4",
            "CONCURRENT_REQUESTS": "1",
            "JUSTONEAPI_REDIS_HEARTBEAT": "0.25",  # as the distributed tests' workers: stops and idleness seen at once
            "MAX_IDLE_TIME_BEFORE_CLOSE": "0.3",
        },
        env={"REDIS_URL": url},
    )
    assert result.returncode == 6, result.log[-2000:]
    client.set(KEYS.worker("host-b:123:abcdef"), "2 requests in flight, last beat 12:00:01", ex=60)  # a live worker

    code, text, _ = status_command(url)
    assert code == 0
    code, out, err = status_command(url, "--json")
    assert code == 0, err
    doc = orjson.loads(out)
    stats = {k: int(v) for k, v in client.hgetall(KEYS.stats).items()}
    assert (doc["format"], doc["version"], doc["spider"]) == ("rednote_crawl/redis-status", 1, "note_search")
    assert doc["redis"] == f"redis://***:***@127.0.0.1:{redis_server.port}/0"
    assert doc["calls"] == stats["calls"] == 4
    assert doc["pages"] == {"paid": stats["pages_paid"], "failed": stats.get("pages_failed", 0)}
    assert doc["queries"] == {"seeded": 3, "rejected": 0}
    assert doc["requests"]["queued"] == client.zcard(KEYS.requests) > 0 and doc["requests"]["in_flight"] == 0
    assert doc["notes"] == {"delivered": stats["notes"], "waiting": client.llen(KEYS.items), "items_key": KEYS.items}
    assert doc["stop"]["reason"] == "justoneapi_budget_spent" and doc["idle"] is False
    assert doc["workers"] == [{"id": "host-b:123:abcdef", "in_flight": 2, "last_beat": "12:00:01"}]
    assert doc["counters"] == dict(sorted(stats.items()))
    # the text says the same figures
    assert f"{doc['requests']['queued']} queued, 0 in flight" in text
    assert f"{doc['pages']['paid']} paid, {doc['pages']['failed']} failed; 4 calls sent" in text
    assert f"{doc['notes']['delivered']} delivered" in text and f"STOPPED:  {doc['stop']['reason']}" in text
    assert "host-b:123:abcdef: 2 requests in flight" in text
    for shown in (out, err, text, result.log):
        assert password not in shown and "grafana" not in shown and TOKEN not in shown


def test_every_key_of_the_redis_status_is_documented_and_always_there(redis_server: RedisServer):
    code, out, _ = status_command(redis_server.url, "--json")  # an empty Redis: no crawl yet
    assert code == 0
    doc = orjson.loads(out)
    assert doc["stop"] is None and doc["workers"] == [] and doc["rate"] is None and doc["idle"] is True
    assert doc["calls"] == 0 and doc["pages"] == {"paid": 0, "failed": 0}
    keys = all_keys(doc) | {"reason", "message", "worker", "id", "in_flight", "last_beat"}  # a stop's, a worker's
    assert keys <= documented_keys("distributed.md", "### Status as JSON")


def test_json_goes_with_status_only(redis_server: RedisServer):
    done = scrapy_in_process("redis", "resume", "--json", env={"REDIS_URL": redis_server.url})
    assert done.returncode == 2 and "--json goes with status" in done.stderr
