"""Fixtures: the sandbox served over loopback, and `scrapy crawl` run as a user runs it."""

from __future__ import annotations

import functools
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
import redis
from hypothesis import settings as hypothesis_settings

from rednote_crawl.sandbox import Fault, SandboxConfig, SandboxServer
from rednote_crawl.sandbox.corpus import Corpus

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-9f8e7d6c5b4a-SECRET"  # a fake token that is easy to grep for


# The files of long tests (subprocesses, servers, generated examples), the longest first; the rest
# after them. pytest-xdist hands tests out in collection order as its workers free up: started
# first, the long tests end together and the short ones fill the gaps (at the end, one worker
# would run a long test alone while the others wait).
LONG_FIRST = (
    "test_distributed.py",
    "test_storage.py",
    "test_rate_and_reach.py",
    "test_resume.py",
    "test_run_ux.py",
    "test_crawl.py",
    "test_probe.py",
    "test_fuzz.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))  # stable: file order kept


# Property-based tests: 200 examples each in the suite; --hypothesis-profile=thorough for 5,000.
hypothesis_settings.register_profile("suite", max_examples=200, deadline=None)
hypothesis_settings.register_profile("thorough", max_examples=5000, deadline=None)
hypothesis_settings.load_profile("suite")


PROJECT_LIMITS = ROOT / ".scrapy" / "token-limits.json"  # the default JUSTONEAPI_STATE_DIR of a crawl run here


@pytest.fixture(autouse=True, scope="session")
def no_learned_limit_in_the_project() -> Iterator[None]:
    """A crawl test that keeps the token's learned limit in the project's own folder slows down every
    crawl test after it (they start at that limit): each must have a JUSTONEAPI_STATE_DIR of its own."""
    before = PROJECT_LIMITS.stat().st_mtime if PROJECT_LIMITS.exists() else None
    yield
    after = PROJECT_LIMITS.stat().st_mtime if PROJECT_LIMITS.exists() else None
    assert after == before, f"a test wrote {PROJECT_LIMITS}: give its crawl -s JUSTONEAPI_STATE_DIR=<its tmp_path>"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record",
        choices=("none", "live", "sandbox"),
        default="none",
        help="contract tests: replay cassettes (none), or record them again from the real API (live) or the sandbox",
    )


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxServer]]:
    servers: list[SandboxServer] = []

    def make(**config: Any) -> SandboxServer:
        faults = [f if isinstance(f, Fault) else Fault.parse(f) for f in config.pop("faults", [])]
        server = SandboxServer(SandboxConfig(faults=faults, **config))
        server.start_in_thread()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop_thread()


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., SandboxServer]) -> SandboxServer:
    return sandbox_factory()


@dataclass
class CrawlResult:
    returncode: int
    log: str
    items: list[dict[str, Any]]
    lines: list[bytes] = field(default_factory=list)
    output: bytes = b""

    def note_ids(self) -> list[str]:
        return [item["note_id"] for item in self.items]


def expected_ids(keywords: Iterable[str], **filters: str) -> frozenset[str]:
    """The note ids a complete crawl of these keywords (and filters) finds on the default sandbox: the
    oracle. Computed at first use, not at collection (where every xdist process would pay for it)."""
    return _expected_ids(tuple(keywords), tuple(sorted(filters.items())))


@functools.cache
def _expected_ids(keywords: tuple[str, ...], filters: tuple[tuple[str, str], ...]) -> frozenset[str]:
    corpus = Corpus()
    return frozenset(i for k in keywords for i in corpus.expected_note_ids(k, **dict(filters)))


def paid_twice(server: SandboxServer) -> dict[tuple[Any, ...], int]:
    """Pages answered with code 0 more than once: must always be empty."""
    return {page: n for page, n in Counter(server.paid_pages()).items() if n > 1}


# Fast defaults for crawl tests: no fixed rate ceiling, short backoff.
FAST = {
    "JUSTONEAPI_MAX_RPS": "0",
    "JUSTONEAPI_BACKOFF_BASE": "0.05",
    "JUSTONEAPI_BACKOFF_MAX": "0.2",
    "LOGSTATS_INTERVAL": "0",
}


@pytest.fixture
def crawl(tmp_path: Path) -> Callable[..., CrawlResult]:
    """Run ``scrapy crawl note_search`` in a subprocess, from the project root, like a user."""
    counter = iter(range(1000))

    def run(
        server: SandboxServer | None,
        *args: str,
        keywords: list[str] | str | None = None,
        settings: dict[str, str] | None = None,
        token: str | None = TOKEN,
        output: bool = True,
        cwd: Path = ROOT,
        env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> CrawlResult:
        n = next(counter)
        cmd = [sys.executable, "-m", "scrapy", "crawl", "note_search"]
        if isinstance(keywords, list):
            seed = tmp_path / f"keywords-{n}.txt"
            seed.write_text("\n".join(keywords) + "\n", encoding="utf-8")
            cmd += ["-a", f"keywords={seed}"]
        elif keywords is not None:
            cmd += ["-a", f"keywords={keywords}"]
        out = tmp_path / f"notes-{n}.jsonl"
        if output:
            cmd += ["-O", str(out)]
        # The token's learned rate limit is the test's own (by default a crawl in the project folder
        # keeps it in .scrapy/, for every later crawl with the token: a test that met 302s at 5
        # calls/s would slow every crawl after it, in later runs too).
        for name, value in {**FAST, "JUSTONEAPI_STATE_DIR": str(tmp_path / "state"), **(settings or {})}.items():
            cmd += ["-s", f"{name}={value}"]
        cmd += list(args)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("JUSTONEAPI_")}
        environ["PYTHONWARNINGS"] = "error::DeprecationWarning"
        if token is not None:
            environ["JUSTONEAPI_TOKEN"] = token
        if server is not None:
            environ["JUSTONEAPI_BASE_URL"] = server.url
        environ.update(env or {})
        proc = subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, timeout=timeout, check=False)
        log = proc.stderr.decode() + proc.stdout.decode()
        assert "DeprecationWarning" not in log, "the crawl uses a deprecated API (ScrapyDeprecationWarning included)"
        data = out.read_bytes() if output and out.exists() else b""
        lines = data.splitlines()
        return CrawlResult(proc.returncode, log, [orjson.loads(x) for x in lines], lines, data)

    return run


@dataclass
class RedisServer:
    """A real redis-server on a free loopback port, persisting to its folder (so it can restart)."""

    folder: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _client: redis.Redis | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if self.port == 0:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = sock.getsockname()[1]
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: `apt-get install redis-server` (.ci/run does it)")
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        cmd += ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--logfile", "redis.log"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis-server flushes its append-only file and exits
            self.proc.wait(10)

    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis(port=self.port, decode_responses=True)
        return self._client

    def close(self) -> None:
        self.stop()
        if self._client is not None:
            self._client.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder).start()
    yield server
    server.close()


def run_command(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run a command as a user would, with none of the project's variables but ``env``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("JUSTONEAPI_", "REDIS_"))}
    return subprocess.run(
        cmd, cwd=cwd, env={**environ, **(env or {})}, capture_output=True, text=True, timeout=120, check=False
    )


def scrapy_in_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``scrapy ARGS...`` as ``run_command`` runs it, with none of the project's variables but ``env``,
    but in this process (``scrapy.cmdline``, its exit status and output): for the commands that start
    no crawl (``probe``, ``report``, ``redis``), without the second of start-up a subprocess costs."""
    from scrapy import cmdline

    environ = {k: v for k, v in os.environ.items() if not k.startswith(("JUSTONEAPI_", "REDIS_"))}
    environ |= {"SCRAPY_SETTINGS_MODULE": "rednote_crawl.settings", **(env or {})}  # the project, from any folder
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, environ, clear=True), redirect_stdout(out), redirect_stderr(err):
        try:
            cmdline.execute(["scrapy", *args])
            status: object = 0
        except SystemExit as exit_:
            status = exit_.code
    code = status if isinstance(status, int) else 0 if status is None else 1  # as the interpreter exits
    return subprocess.CompletedProcess(["scrapy", *args], code, out.getvalue(), err.getvalue())
