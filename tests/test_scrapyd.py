"""Deploying to a real scrapyd with scrapyd-deploy, and scheduling note_search over its HTTP API."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from rednote_crawl.sandbox import SandboxConfig, SandboxServer
from rednote_crawl.sandbox.corpus import Corpus
from rednote_crawl.seeds import read_keywords
from tests.conftest import ROOT, TOKEN, RedisServer, expected_ids, paid_twice, run_command

pytestmark = [pytest.mark.crawl, pytest.mark.xdist_group("scrapyd")]  # one scrapyd for the module

CORPUS = Corpus()
BRANDS = read_keywords(ROOT / "seeds" / "brands.txt")
DEPTH = 2  # pages a query of the seed file's job: all its keywords, not all their pages


def first_pages(keywords: list[str], pages: int, sort: str = "general") -> frozenset[str]:
    """The note ids of the first ``pages`` pages of each keyword's query on the default sandbox (``sort``
    as the API names it): the oracle of a crawl with JUSTONEAPI_MAX_PAGES=pages (expected_ids: a whole crawl's)."""
    layouts = (CORPUS.layout(k, sort, "_0", "any")[:pages] for k in keywords)
    slots = (slot for layout in layouts for page in layout for slot in page)
    return frozenset(CORPUS.note(slot.key)["id"] for slot in slots if slot.model_type == "note")


IGNORE = shutil.ignore_patterns(".git", "output", "jobs", "build", "*.egg-info", "__pycache__", ".*_cache", ".venv")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Scrapyd:
    url: str
    folder: Path

    def schedule(self, **args: str | list[str]) -> str:
        answer = requests.post(
            f"{self.url}/schedule.json", data={"project": "rednote_crawl", "spider": "note_search", **args}, timeout=10
        ).json()
        assert answer["status"] == "ok", answer
        return answer["jobid"]

    def wait(self, *jobs: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            listed = requests.get(f"{self.url}/listjobs.json", params={"project": "rednote_crawl"}, timeout=10).json()
            if {job["id"] for job in listed["finished"]} >= set(jobs):
                return
            assert time.monotonic() < deadline, f"jobs not finished: {listed}"
            time.sleep(0.1)

    def log(self, job: str) -> str:
        return (self.folder / "logs" / "rednote_crawl" / "note_search" / f"{job}.log").read_text(encoding="utf-8")

    def items(self, job: str) -> list[dict[str, Any]]:
        path = self.folder / "items" / "rednote_crawl" / "note_search" / f"{job}.jl"
        return [orjson.loads(line) for line in path.read_bytes().splitlines()]

    def listjobs(self) -> str:
        return requests.get(f"{self.url}/listjobs.json", params={"project": "rednote_crawl"}, timeout=10).text


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(SandboxConfig())
    server.start_in_thread()
    yield server
    server.stop_thread()


@pytest.fixture
def sandbox(shared_sandbox: SandboxServer) -> SandboxServer:
    shared_sandbox.log.clear()  # each test counts its own calls
    return shared_sandbox


@pytest.fixture(scope="module")
def scrapyd(tmp_path_factory: pytest.TempPathFactory, shared_sandbox: SandboxServer) -> Iterator[Scrapyd]:
    """scrapyd on a free loopback port, its folders in a temporary folder; the token is in its environment only."""
    folder = tmp_path_factory.mktemp("scrapyd")
    port = free_port()
    (folder / "scrapyd.conf").write_text(
        "[scrapyd]\n"
        f"bind_address = 127.0.0.1\nhttp_port = {port}\n"
        f"eggs_dir = {folder}/eggs\nlogs_dir = {folder}/logs\nitems_dir = {folder}/items\ndbs_dir = {folder}/dbs\n"
        "poll_interval = 0.2\nmax_proc = 4\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUSTONEAPI_", "REDIS_", "SCRAPY_"))}
    env |= {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BASE_URL": shared_sandbox.url}
    with (folder / "scrapyd.out").open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scrapyd"], cwd=folder, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/daemonstatus.json", timeout=1)
            break
        except requests.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, (folder / "scrapyd.out").read_text()
            time.sleep(0.1)
    yield Scrapyd(url, folder)
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def deployed(scrapyd: Scrapyd, tmp_path_factory: pytest.TempPathFactory) -> Scrapyd:
    """`scrapyd-deploy` run from a copy of the project as it is; the target URL comes from a user config."""
    tmp_path = tmp_path_factory.mktemp("deploy")
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, symlinks=True, ignore=IGNORE)
    config = tmp_path / "config"
    config.mkdir()
    (config / "scrapy.cfg").write_text(f"[deploy:test]\nurl = {scrapyd.url}\nproject = rednote_crawl\n")
    deploy = run_command(
        [sys.executable, "-m", "scrapyd_client.deploy", "test"], {"XDG_CONFIG_HOME": str(config)}, project
    )
    assert deploy.returncode == 0 and '"status": "ok"' in deploy.stdout, deploy.stderr + deploy.stdout
    assert '"spiders": 1' in deploy.stdout
    return scrapyd


def test_the_cron_lines_daily_job_finds_its_seed_file_in_the_egg_and_keeps_the_token_out(deployed, sandbox, tmp_path):
    """deploy/cron/rednote-crawl.cron's scrapyd line, as cron runs it (issue 24, point 3): a deployed
    job of the seed file the egg brings, its job folder keeping the daily history, the token only in
    scrapyd's environment. (Two tests before, the seed file's job and the cron line's: one job checks
    both, the cron line's, a job's start being most of a job's cost.)"""
    assert not (deployed.folder / "seeds").exists(), "scrapyd's folder has no seeds/: the egg must bring them"
    cron = (ROOT / "deploy" / "cron" / "rednote-crawl.cron").read_text(encoding="utf-8").splitlines()
    line = next(x for x in cron if "schedule.json" in x and not x.startswith("#"))
    assert "-d keywords=seeds/brands.txt -d sort=latest" in line
    command = line.split(None, 5)[5].replace("http://127.0.0.1:6800", deployed.url)
    command = command.replace("/var/lib/scrapyd/jobs", str(tmp_path))
    command += f" -d setting=JUSTONEAPI_MAX_PAGES={DEPTH} -d setting=JUSTONEAPI_MAX_RPS=0"
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    job = orjson.loads(done.stdout)["jobid"]
    deployed.wait(job)
    log = deployed.log(job)
    assert "Summary of note_search: finished, exit status 0" in log, log[-3000:]
    assert f"Searching {len(BRANDS)} keywords" in log, "every keyword of the egg's seed file"
    ids = [item["note_id"] for item in deployed.items(job)]
    assert len(ids) == len(set(ids)) and set(ids) == first_pages(BRANDS, DEPTH, "time_descending")
    assert paid_twice(sandbox) == {}
    assert TOKEN not in log and TOKEN not in deployed.listjobs()
    assert TOKEN not in (deployed.folder / "scrapyd.out").read_text()
    assert (tmp_path / "brands" / "job.db").exists(), "the job folder keeps the daily history"


def test_inline_keywords_and_a_token_passed_as_a_job_setting(deployed, sandbox):
    job = deployed.schedule(keyword="小米,华为", setting="LOGSTATS_INTERVAL=0")
    leaked = deployed.schedule(keyword="小米", setting="JUSTONEAPI_TOKEN=tok-passed-in-the-open")
    deployed.wait(job, leaked)
    ids = {item["note_id"] for item in deployed.items(job)}
    assert ids == expected_ids(["小米", "华为"])
    refused = deployed.log(leaked)
    assert "the token must not be passed with -s JUSTONEAPI_TOKEN" in refused
    assert "tok-passed-in-the-open" not in refused
    assert len([e for e in sandbox.log if e.get("keyword") == "小米"]) == len(
        CORPUS.layout("小米", "general", "_0", "any")
    )


def test_scheduled_jobs_share_one_redis(deployed, sandbox, redis_server: RedisServer):
    seeds = ["海信", "Nike", "小米", "蔚来"]
    settings = [f"REDIS_URL={redis_server.url}", "CONCURRENT_REQUESTS=2"]
    settings += ["JUSTONEAPI_REDIS_HEARTBEAT=0.25", "MAX_IDLE_TIME_BEFORE_CLOSE=0.3"]  # as test_distributed's WORKER
    first = deployed.schedule(keyword=",".join(seeds), setting=settings)
    second = deployed.schedule(setting=settings)  # a worker: no keywords
    deployed.wait(first, second)
    for job in (first, second):
        assert "Summary of note_search: finished, exit status 0" in deployed.log(job), deployed.log(job)[-3000:]
    notes = [orjson.loads(n)["note_id"] for n in redis_server.client().lrange("note_search:items", 0, -1)]
    assert len(notes) == len(set(notes)) and set(notes) == expected_ids(seeds)
    assert paid_twice(sandbox) == {}
