"""What the benchmarks share: a sandbox and a redis-server in their own processes, crawls as users run them."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        model = cpu
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB, Python {platform.python_version()}, {platform.system()}"
    )


@dataclass
class Sandbox:
    url: str
    proc: subprocess.Popen[bytes]

    def log(self) -> list[dict[str, Any]]:
        """Every call: time, keyword, page, code (the sandbox keeps a hash of the token, never the token)."""
        with urllib.request.urlopen(f"{self.url}/__sandbox__/log", timeout=60) as answer:
            return json.loads(answer.read())


@contextmanager
def sandbox(*args: str) -> Iterator[Sandbox]:
    """The sandbox in its own process (its CPU is not the crawler's), pinned to the last core."""
    port = free_port()
    cmd = [sys.executable, "-m", "rednote_crawl.sandbox", "--port", str(port), *args]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", str((os.cpu_count() or 1) - 1), *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/__sandbox__/health", proc)
    try:
        yield Sandbox(url, proc)
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def redis_server() -> Iterator[str]:
    port = free_port()
    folder = tempfile.mkdtemp(prefix="bench-redis-")
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([*cmd, "--dir", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
        assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, f"{url} did not come up"
            time.sleep(0.05)


def keywords_file(count: int, folder: Path) -> Path:
    """``count`` keywords the sandbox answers with several pages each."""
    path = folder / f"keywords-{count}.txt"
    path.write_text("".join(f"品牌{i:04d}\n" for i in range(count)), encoding="utf-8")
    return path


@dataclass
class Crawl:
    cmd: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    rusage_before: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def crawl_command(*args: str, settings: dict[str, Any] | None = None, output: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "scrapy", "crawl", "note_search", *args]
    if output is not None:
        cmd += ["-O", str(output)]
    for name, value in (settings or {}).items():
        cmd += ["-s", f"{name}={value}"]
    return cmd


def environ(sandbox_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUSTONEAPI_", "REDIS_"))}
    return {**env, "JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BASE_URL": sandbox_url, **extra}


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """Ctrl-C, as a user would; kill what does not stop."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
