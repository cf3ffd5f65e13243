"""Ctrl-C is answered at once (issue 24, point 4): the first press prints one line right away, with
the calls in flight, what a second press does, and how to carry on; in both modes. Only a process
shows it: a real ``scrapy crawl`` against a slow sandbox, and a real SIGINT."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import FAST, ROOT, TOKEN

pytestmark = pytest.mark.crawl

LATENCY = 3.0  # seconds per call: far longer than the answer may take


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


def interrupt(proc: subprocess.Popen[str]) -> tuple[str, float]:
    """The first Ctrl-C's line, and how long it took to come; then the crawl ends by itself."""
    (lines, reader), seen = lines_of(proc), []
    try:
        wait_for(lines, "Searching 3 keywords", 30, seen)
        time.sleep(1.0)  # the first calls are on the wire (each takes LATENCY seconds)
        proc.send_signal(signal.SIGINT)
        took = wait_for(lines, "Ctrl-C:", 10, seen)
        answer = seen[-1]
        assert proc.wait(30) == 1, "".join(seen)[-3000:]  # stopped by Ctrl-C: exit status 1 (docs/reference.md)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        assert proc.stderr is not None
        proc.stderr.close()
    return answer, took


def test_the_first_ctrl_c_is_answered_at_once_on_one_machine(tmp_path, sandbox_factory):
    sandbox = sandbox_factory(latency=LATENCY)
    job = tmp_path / "job"
    proc = start_crawl(tmp_path, sandbox.url, "-s", f"JUSTONEAPI_JOB_DIR={job}")
    answer, took = interrupt(proc)
    assert took < 1.5, f"answered {took:.1f} s after the press, not at once"
    assert "stopping after the 3 calls in flight" in answer
    assert "press Ctrl-C again to stop at once and drop them" in answer
    assert f"Run the same command again to carry on (JUSTONEAPI_JOB_DIR={job})" in answer


def test_the_first_ctrl_c_is_answered_at_once_on_a_distributed_worker(tmp_path, sandbox_factory, redis_server):
    sandbox = sandbox_factory(latency=LATENCY)
    proc = start_crawl(tmp_path, sandbox.url, env={"REDIS_URL": redis_server.url})
    answer, took = interrupt(proc)
    assert took < 1.5, f"answered {took:.1f} s after the press, not at once"
    assert "call" in answer and "in flight" in answer and "press Ctrl-C again" in answer
    assert "The requests not sent go back to the shared queue: the same command carries the crawl on" in answer
