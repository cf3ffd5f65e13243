"""Ctrl-C is answered at once (issue 24, point 4): the first press prints one line right away, with
the calls in flight, what a second press does, and how to carry on; in both modes. Only a process
shows it: a real ``scrapy crawl`` against a sandbox that holds its calls, and a real SIGINT."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from rednote_crawl.sandbox import SandboxConfig, SandboxServer
from tests.conftest import FAST, ROOT, TOKEN, wait_until

pytestmark = pytest.mark.crawl

HOLD = 30.0  # seconds a call is held at most, if a test never lets it go: far longer than the answer may take


class HoldingSandbox(SandboxServer):
    """The sandbox, its search calls held (in flight) until the test lets them go: the calls are on
    the wire at the press, and stay there until the answer to it has come, however long that takes."""

    def __init__(self) -> None:
        super().__init__(SandboxConfig())
        self.arrived = 0  # search calls received, answered or not
        self.release = threading.Event()

    async def search(self, request: web.Request) -> web.StreamResponse:
        self.arrived += 1
        deadline = time.monotonic() + HOLD
        while not self.release.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return await super().search(request)


@pytest.fixture
def sandbox() -> Iterator[HoldingSandbox]:
    server = HoldingSandbox()
    server.start_in_thread()
    yield server
    server.release.set()
    server.stop_thread()


def start_crawl(tmp_path: Path, url: str, *settings: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "scrapy", "crawl", "note_search", "-a", "keyword=海信,小米,Nike"]
    for name, value in {**FAST, "JUSTONEAPI_STATE_DIR": str(tmp_path / "state"), "CONCURRENT_REQUESTS": "3"}.items():
        cmd += ["-s", f"{name}={value}"]
    cmd += [*settings, "-O", str(tmp_path / "notes.jsonl")]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("JUSTONEAPI_", "REDIS_"))}
    environ |= {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BASE_URL": url, "PYTHONWARNINGS": "error::DeprecationWarning"}
    environ |= env or {}
    return subprocess.Popen(cmd, cwd=ROOT, env=environ, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def lines_of(proc: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put("")  # the end

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader


def wait_for(lines: queue.Queue[str], text: str, timeout: float, seen: list[str]) -> float:
    """Seconds until a line holding ``text`` came (it fails after ``timeout``)."""
    start = time.monotonic()
    while (left := timeout - (time.monotonic() - start)) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        seen.append(line)
        if text in line:
            return time.monotonic() - start
        assert line, f"the crawl ended before {text!r}:\n{''.join(seen)[-3000:]}"
    raise AssertionError(f"no {text!r} within {timeout} s:\n{''.join(seen)[-3000:]}")


def interrupt(proc: subprocess.Popen[str], sandbox: HoldingSandbox) -> tuple[str, float]:
    """The first Ctrl-C's line, and how long it took to come, while the 3 calls in flight are held;
    then they are answered and the crawl ends by itself."""
    (lines, reader), seen = lines_of(proc), []
    try:
        wait_for(lines, "Searching 3 keywords", 30, seen)
        wait_until(lambda: sandbox.arrived >= 3, timeout=30)  # the first calls are on the wire, held there
        proc.send_signal(signal.SIGINT)
        took = wait_for(lines, "Ctrl-C:", 10, seen)
        answer = seen[-1]
        assert len(sandbox.log) == 0, "answered while every call was still in flight"
        sandbox.release.set()
        assert proc.wait(30) == 1, "".join(seen)[-3000:]  # stopped by Ctrl-C: exit status 1 (docs/reference.md)
    finally:
        sandbox.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        assert proc.stderr is not None
        proc.stderr.close()
    return answer, took


def test_the_first_ctrl_c_is_answered_at_once_on_one_machine(tmp_path, sandbox):
    job = tmp_path / "job"
    proc = start_crawl(tmp_path, sandbox.url, "-s", f"JUSTONEAPI_JOB_DIR={job}")
    answer, took = interrupt(proc, sandbox)
    assert took < 1.5, f"answered {took:.1f} s after the press, not at once"
    assert "stopping after the 3 calls in flight" in answer
    assert "press Ctrl-C again to stop at once and drop them" in answer
    assert f"Run the same command again to carry on (JUSTONEAPI_JOB_DIR={job})" in answer


def test_the_first_ctrl_c_is_answered_at_once_on_a_distributed_worker(tmp_path, sandbox, redis_server):
    proc = start_crawl(tmp_path, sandbox.url, env={"REDIS_URL": redis_server.url})
    answer, took = interrupt(proc, sandbox)
    assert took < 1.5, f"answered {took:.1f} s after the press, not at once"
    assert "call" in answer and "in flight" in answer and "press Ctrl-C again" in answer
    assert "The requests not sent go back to the shared queue: the same command carries the crawl on" in answer
