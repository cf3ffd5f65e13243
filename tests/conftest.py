"""The suite's one set of runners and fixtures: the sandbox served over loopback, a real redis-server,
and `scrapy crawl` run as a user runs it: in this process (``scrapy_in_process``: ``scrapy.cmdline``
on this process's asyncio reactor; ``run_worker_here`` for a distributed worker), or in a subprocess
where only a process shows the behaviour (``start_scrapy``; the ``workers`` fixture for distributed
workers)."""

from __future__ import annotations

import asyncio
import compileall
import functools
import io
import logging
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import PIPE
from typing import Any
from unittest import mock

import orjson
import pytest
import redis
from hypothesis import settings as hypothesis_settings
from scrapy.crawler import AsyncCrawlerRunner
from scrapy.settings import Settings
from scrapy.utils.reactor import install_reactor

from rednote_crawl.sandbox import Fault, SandboxConfig, SandboxServer
from rednote_crawl.sandbox.corpus import Corpus

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-9f8e7d6c5b4a-SECRET"  # a fake token that is easy to grep for


# The files of long tests (subprocesses, servers, generated examples), the longest first; the rest
# after them. pytest-xdist hands tests out in collection order as its workers free up: started
# first, the long tests end together and the short ones fill the gaps (at the end, one worker
# would run a long test alone while the others wait).
LONG_FIRST = (
    "test_redis_edges.py",
    "test_distributed.py",
    "test_resume.py",
    "test_scrapyd.py",
    "test_crawl.py",
    "test_rate_and_reach.py",
    "test_details_redis.py",
    "test_crawl_verdict.py",
    "test_details.py",
    "test_architecture.py",
    "test_schedules.py",
    "test_conformance.py",
    "test_redis_tls.py",
    "test_interrupt.py",
    "test_damaged_files.py",
    "test_fuzz.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set (__pycache__ is git-ignored): the
    project's modules, compiled once here for every test process and `scrapy crawl` subprocess, and the
    test modules as pytest rewrites their asserts (about 1.3 s of CPU a test process, every run)."""
    sys.dont_write_bytecode = False
    if not hasattr(config, "workerinput"):  # the process that starts pytest-xdist's test processes
        compileall.compile_dir(ROOT / "rednote_crawl", quiet=1)


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
def seeds(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A keyword file of the test module's ``KEYWORDS``, one a line."""
    path = tmp_path / "seeds.txt"
    path.write_text("\n".join(request.module.KEYWORDS) + "\n", encoding="utf-8")
    return path


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


def wait_until(condition: Callable[[], object], timeout: float = 60) -> None:
    """Wait for ``condition()`` to hold, polling, up to a deadline (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


async def until(condition: Callable[[], object], timeout: float = 5) -> None:
    """Let the loop's other tasks run until ``condition()`` holds, up to a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


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


# --- `scrapy crawl`, in this process or in a subprocess ---------------------------------------------
#
# One Twisted reactor per test process: the asyncio reactor `scrapy crawl` runs on, installed once
# here. A crawl in this process runs the real command line (``scrapy.cmdline.execute``: its options,
# -a/-s/-O/-o, the project's `crawl` command and its exit status) with one change: the crawler
# process it makes (``CrawlerProcessInTests``) runs the crawl on this reactor's asyncio loop until
# the crawl ends, instead of starting a reactor (which cannot start twice). Unit tests that run
# their own loop (``asyncio.run``) are unaffected: Scrapy uses the running loop.

install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
from twisted.internet import reactor as REACTOR  # noqa: E402  (installed just above)
from twisted.python import log as twisted_log  # noqa: E402

REACTOR_LOOP: asyncio.AbstractEventLoop = REACTOR._asyncioEventloop  # type: ignore[attr-defined]
_reactor_started = False


def run_on_reactor(awaitable: Any, timeout: float = 120) -> Any:
    """Run ``awaitable`` on the reactor's asyncio loop until it completes (at most ``timeout`` s)."""
    global _reactor_started
    if not _reactor_started:
        REACTOR.startRunning(installSignalHandlers=False)  # the thread pool starts; the loop runs below
        twisted_log.PythonLoggingObserver("twisted").start()  # as scrapy crawl does (configure_logging)
        logging.getLogger("twisted").setLevel(logging.ERROR)
        _reactor_started = True
    asyncio.set_event_loop(REACTOR_LOOP)
    return REACTOR_LOOP.run_until_complete(asyncio.wait_for(awaitable, timeout))


def run_crawler(crawler: Any, timeout: float = 30, **spider_args: Any) -> None:
    """``crawler.crawl_async(**spider_args)`` on this process's reactor, for a test that builds its own
    crawler; the token masking the crawl installed for the process is taken off afterwards."""
    from rednote_crawl import redaction

    try:
        run_on_reactor(crawler.crawl_async(**spider_args), timeout)
    finally:
        asyncio.set_event_loop(None)
        redaction.reset()


def crawl_here(server: Any, tmp_path: Path, keywords: Iterable[str], **settings: Any) -> tuple[int, Any]:
    """A crawl of ``keywords`` (``-a keyword=...``) against ``server`` on this process's reactor, with the
    project's settings and ``FAST``, ``settings`` over them: (its exit status, its crawler), for a test that
    reads the crawler's stats or components afterwards."""
    from scrapy.crawler import Crawler

    from rednote_crawl import stops
    from rednote_crawl.spiders.note_search import NoteSearchSpider

    crawl_settings = Settings()
    crawl_settings.setmodule("rednote_crawl.settings", priority="project")
    cmdline = {**FAST, "JUSTONEAPI_STATE_DIR": str(tmp_path / "state"), "JUSTONEAPI_BASE_URL": server.url}
    crawl_settings.setdict({**cmdline, **settings}, priority="cmdline")
    crawler = Crawler(NoteSearchSpider, crawl_settings)
    run_crawler(crawler, timeout=60, keyword=",".join(keywords))
    stats = crawler.stats.get_stats()
    return stops.exit_status(stats.get("finish_reason"), stats), crawler


@pytest.fixture
def environment(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's environment for a crawl in this process: the token and the sandbox, no other setting."""
    for name in list(os.environ):
        if name.startswith(("JUSTONEAPI_", "REDIS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("JUSTONEAPI_TOKEN", TOKEN)
    monkeypatch.setenv("JUSTONEAPI_BASE_URL", sandbox.url)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the reactor a crawl started: its thread pool's threads would keep the process alive."""
    if _reactor_started:
        REACTOR.stop()  # "shutdown": the thread pool stops, then the loop
        asyncio.set_event_loop(REACTOR_LOOP)
        REACTOR_LOOP.run_forever()


class CrawlerProcessInTests(AsyncCrawlerRunner):
    """What ``scrapy crawl`` makes (``AsyncCrawlerProcess``), for a crawl in this process: the log goes
    where the command's goes (stderr, formatted by LOG_FORMAT, at LOG_LEVEL), and ``start()`` runs the
    crawls on this process's reactor, without signal handlers, and returns when they end."""

    timeout: float = 120

    def __init__(self, settings: dict[str, Any] | Settings | None = None) -> None:
        from scrapy.utils.log import _get_handler, log_scrapy_info

        super().__init__(settings)
        handler = _get_handler(self.settings)  # a StreamHandler on sys.stderr, redirected by scrapy_in_process
        logging.root.addHandler(handler)  # taken off again by scrapy_in_process
        logging.root.setLevel(handler.level)  # the command's root takes all; nothing below the handler is written
        log_scrapy_info(self.settings)

    def start(self, stop_after_crawl: bool = True, install_signal_handlers: bool = True) -> None:
        from scrapy.utils.misc import build_from_crawler, load_object

        resolver = build_from_crawler(load_object(self.settings["TWISTED_DNS_RESOLVER"]), self, reactor=REACTOR)
        resolver.install_on_reactor()
        REACTOR.getThreadPool().adjustPoolsize(maxthreads=self.settings.getint("REACTOR_THREADPOOL_MAXSIZE"))
        try:
            run_on_reactor(self.join(), self.timeout)
        except TimeoutError:
            run_on_reactor(self.stop(), 30)
            raise


class _NoCrawlerProcess:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a crawl in a test process runs on the asyncio reactor (CrawlerProcessInTests)")


def scrapy_env(env: dict[str, str] | None = None, **project: str | None) -> dict[str, str]:
    """This process's environment without the project's variables (JUSTONEAPI_*, REDIS_*), then
    ``project`` (None: left out) and ``env``: what a user's shell would give a command."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("JUSTONEAPI_", "REDIS_"))}
    environ |= {k: v for k, v in project.items() if v is not None}
    return environ | (env or {})


def scrapy_in_process(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``scrapy ARGS...`` as ``run_command`` runs it, with none of the project's variables but ``env``,
    but in this process (``scrapy.cmdline``, its exit status and output: the log of a crawl is in
    stderr). A crawl runs on this process's reactor (``CrawlerProcessInTests``). What a command
    changes for the whole process is put back: the log's handlers and level, Scrapy's quiet loggers,
    the token masking, the working folder."""
    from scrapy import cmdline

    from rednote_crawl import redaction
    from rednote_crawl.run.quiet import quiet_scrapy

    environ = scrapy_env(env, SCRAPY_SETTINGS_MODULE="rednote_crawl.settings")  # the project, from any folder
    out, err = io.StringIO(), io.StringIO()
    root, handlers, level, folder = logging.root, list(logging.root.handlers), logging.root.level, os.getcwd()
    patches = [
        mock.patch.dict(os.environ, environ, clear=True),
        mock.patch.object(cmdline, "AsyncCrawlerProcess", CrawlerProcessInTests),
        mock.patch.object(cmdline, "CrawlerProcess", _NoCrawlerProcess),
        mock.patch.object(CrawlerProcessInTests, "timeout", timeout),
    ]
    tasks = asyncio.all_tasks(REACTOR_LOOP)
    try:
        for patch in patches:
            patch.start()
        os.chdir(cwd or ROOT)
        asyncio.set_event_loop(REACTOR_LOOP)  # the loop a crawl's tasks are made on, before start()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                cmdline.execute(["scrapy", *args])
                status: object = 0
            except SystemExit as exit_:
                status = exit_.code
    finally:
        end_tasks_left(tasks)
        asyncio.set_event_loop(None)
        os.chdir(folder)
        for patch in reversed(patches):
            patch.stop()
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
        quiet_scrapy(Settings({"LOG_LEVEL": "DEBUG"}))  # takes its filters off Scrapy's loggers
        redaction.reset()
    code = status if isinstance(status, int) else 0 if status is None else 1  # as the interpreter exits
    return subprocess.CompletedProcess(["scrapy", *args], code, out.getvalue(), err.getvalue())


def end_tasks_left(before: set[asyncio.Task[Any]]) -> None:
    """End the tasks a command left on the reactor's loop, as its process's exit would: a Redis worker's
    rate change on its way to Redis, say, would wake in the next crawl here (its warnings in that log)."""
    left = [task for task in asyncio.all_tasks(REACTOR_LOOP) if task not in before and not task.done()]
    for task in left:
        task.cancel()
    if left:
        asyncio.set_event_loop(REACTOR_LOOP)
        REACTOR_LOOP.run_until_complete(asyncio.wait(left, timeout=10))


def start_scrapy(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, **popen: Any
) -> subprocess.Popen[bytes]:
    """``scrapy ARGS...`` in a subprocess, with none of the project's variables but ``env``: for what
    only a process shows (an exit status, kill -9, Ctrl-C, several workers at once)."""
    environ = scrapy_env({"PYTHONWARNINGS": "error::DeprecationWarning", **(env or {})})
    return subprocess.Popen([sys.executable, "-m", "scrapy", *args], cwd=cwd, env=environ, **popen)


def crawl_args(
    *args: str,
    seeds: Path | str | None = None,
    output: Path | str | None = None,
    settings: dict[str, Any] | None = None,
    state: Path | None = None,
) -> list[str]:
    """``crawl note_search -a keywords=SEEDS -O OUTPUT -s NAME=VALUE... ARGS...``, with the fast settings
    (FAST) and the token's learned limit kept in ``state`` (each test's own: by default a crawl in
    the project folder keeps it in .scrapy/, for every later crawl with the token: a test that met
    302s at 5 calls/s would slow every crawl after it, in later runs too)."""
    cmd = ["crawl", "note_search"]
    if seeds is not None:
        cmd += ["-a", f"keywords={seeds}"]
    if output is not None:
        cmd += ["-O", str(output)]
    every = {**FAST, **({"JUSTONEAPI_STATE_DIR": str(state)} if state is not None else {}), **(settings or {})}
    for name, value in every.items():
        cmd += ["-s", f"{name}={value}"]
    return cmd + list(args)


@pytest.fixture
def crawl(tmp_path: Path) -> Callable[..., CrawlResult]:
    """Run ``scrapy crawl note_search`` from the project root, like a user: in this process (the
    default), or with ``subprocess=True`` in a subprocess, for what only a process shows."""
    counter = iter(range(1000))

    def run(
        server: SandboxServer | None,
        *args: str,
        keywords: list[str] | str | None = None,
        settings: dict[str, Any] | None = None,
        token: str | None = TOKEN,
        output: bool = True,
        cwd: Path = ROOT,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        subprocess: bool = False,
        file_size_limit: int | None = None,
    ) -> CrawlResult:
        n = next(counter)
        if isinstance(keywords, list):
            seed = tmp_path / f"keywords-{n}.txt"
            seed.write_text("\n".join(keywords) + "\n", encoding="utf-8")
            keywords = str(seed)
        out = tmp_path / f"notes-{n}.jsonl"
        cmd = crawl_args(
            *args, seeds=keywords, output=out if output else None, settings=settings, state=tmp_path / "state"
        )
        user = {"JUSTONEAPI_TOKEN": token, "JUSTONEAPI_BASE_URL": server.url if server is not None else None}
        user = {k: v for k, v in user.items() if v is not None} | (env or {})
        if subprocess or file_size_limit is not None:

            def limit_files() -> None:
                if file_size_limit is not None:  # no file of the process may grow larger (a full disk)
                    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

            proc = start_scrapy(*cmd, env=user, cwd=cwd, stdout=PIPE, stderr=PIPE, preexec_fn=limit_files)
            stdout, stderr = proc.communicate(timeout=timeout)
            returncode, log = proc.returncode, stderr.decode() + stdout.decode()
        else:
            done = scrapy_in_process(*cmd, env=user, cwd=cwd, timeout=timeout)
            returncode, log = done.returncode, done.stderr + done.stdout
        assert "DeprecationWarning" not in log, "the crawl uses a deprecated API (ScrapyDeprecationWarning included)"
        data = out.read_bytes() if output and out.exists() else b""
        lines = data.splitlines()
        return CrawlResult(returncode, log, [orjson.loads(x) for x in lines], lines, data)

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
    return subprocess.run(cmd, cwd=cwd, env=scrapy_env(env), capture_output=True, text=True, timeout=120, check=False)


# --- distributed workers: `scrapy crawl` subprocesses, and one in this process --------------------

CONCURRENCY = 2
WORKER = {
    **FAST,
    "CONCURRENT_REQUESTS": str(CONCURRENCY),  # 3 workers x 2 < 10 queries: work for all
    "JUSTONEAPI_REDIS_LEASE": "2",
    "JUSTONEAPI_REDIS_HEARTBEAT": "0.25",  # leases renewed, stops and idleness seen, Redis tried again: 4 times a second
    "MAX_IDLE_TIME_BEFORE_CLOSE": "0.3",
}


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def wait(self, timeout: float = 90) -> int:
        return self.proc.wait(timeout)

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def workers(tmp_path: Path, redis_server: RedisServer):
    started: list[Worker] = []

    def start(sandbox, keywords: Path | None = None, *args: str, env: dict | None = None, **settings: str) -> Worker:
        cmd = crawl_args(*args, seeds=keywords, settings={**WORKER, **settings})
        environ = {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BASE_URL": sandbox.url, "REDIS_URL": redis_server.url}
        log_path = tmp_path / f"worker-{len(started)}.log"
        with log_path.open("wb") as log:
            proc = start_scrapy(*cmd, env={**environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
        started.append(Worker(proc, log_path))
        return started[-1]

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


@dataclass
class Here:
    """A worker that ran in this process: its exit status and its log (as ``scrapy crawl`` writes it).
    While it runs (for the thread beside it), ``log`` is the messages it has logged so far."""

    returncode: int | None = None
    output: str = ""
    said: list[str] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)  # set when the crawl has ended

    @property
    def log(self) -> str:
        return self.output if self.returncode is not None else "\n".join(list(self.said))


class _Said(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def run_worker_here(
    redis_server: RedisServer,
    sandbox,
    keywords: Path | None = None,
    *args: str,
    env: dict | None = None,
    meanwhile: Callable[[Here], None] | None = None,
    **settings: str,
) -> Here:
    """A worker as ``workers`` starts one (the same WORKER settings), but in this process (`scrapy crawl`
    on its reactor): it returns when the crawl ends. ``meanwhile(worker)`` runs in a thread beside it (start
    other workers, break Redis, kill one); what it raises is raised here once the crawl has ended."""
    cmd = crawl_args(*args, seeds=keywords, settings={**WORKER, **settings}, state=redis_server.folder.parent / "here")
    environ = {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BASE_URL": sandbox.url, "REDIS_URL": redis_server.url}
    here = Here()
    failed: list[BaseException] = []

    def beside() -> None:
        try:
            assert meanwhile is not None
            meanwhile(here)
        except BaseException as exc:  # raised in the test once the crawl ends
            failed.append(exc)

    thread = threading.Thread(target=beside, daemon=True)
    said = _Said(here.said)
    logging.root.addHandler(said)
    try:
        if meanwhile is not None:
            thread.start()
        done = scrapy_in_process(*cmd, env={**environ, **(env or {})}, timeout=90)
    finally:
        logging.root.removeHandler(said)
        here.ended.set()
    if meanwhile is not None:
        thread.join(60)
    if failed:
        raise failed[0]
    here.returncode, here.output = done.returncode, done.stderr + done.stdout
    assert "DeprecationWarning" not in here.output, "the crawl uses a deprecated API"
    return here
