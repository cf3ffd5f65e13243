"""Daily schedules (issue 24, point 3) and notifications from a real run (point 2): the systemd units
in deploy/systemd/ pass `systemd-analyze verify`, and their command runs a crawl; the cron line
runs one too; a run that finds its job folder held by the last one is refused (exit status 2) and
says so to JUSTONEAPI_NOTIFY; a crawl that stops keeps its exit status, and the message never holds
the token. Notifications go to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rednote_crawl.state.jobfolder import JobFolder
from tests import test_monitors
from tests.conftest import ROOT, TOKEN, scrapy_in_process
from tests.test_monitors import closed_port

receiver = test_monitors.receiver  # the fixture: a webhook receiver on 127.0.0.1

pytestmark = pytest.mark.crawl

DEPLOY = ROOT / "deploy"
QUICK = ["-s", "JUSTONEAPI_SANDBOX=1", "-s", "JUSTONEAPI_MAX_PAGES=1", "-s", "JUSTONEAPI_MAX_RPS=0"]


def installed(tmp_path: Path) -> tuple[Path, Path]:
    """The units as an administrator installs them here: this checkout for /opt/rednote_crawl, this
    Python's scrapy, a job folder and an environment file of the test's own."""
    scrapy = Path(sys.executable).parent / "scrapy"
    assert scrapy.exists(), "scrapy's script beside the interpreter"
    units = tmp_path / "units"
    units.mkdir()
    for unit in ("rednote-crawl.service", "rednote-crawl.timer"):
        text = (DEPLOY / "systemd" / unit).read_text(encoding="utf-8")
        text = text.replace("/opt/rednote_crawl/.venv/bin/scrapy", str(scrapy)).replace("/opt/rednote_crawl", str(ROOT))
        text = text.replace("/etc/rednote-crawl.env", str(tmp_path / "rednote-crawl.env"))
        text = text.replace("/var/lib/rednote-crawl/brands", str(tmp_path / "brands"))
        (units / unit).write_text(text, encoding="utf-8")
    (tmp_path / "rednote-crawl.env").write_text("", encoding="utf-8")
    return units / "rednote-crawl.service", units / "rednote-crawl.timer"


def unit_value(unit: Path, key: str) -> str:
    return re.search(rf"^{key}=(.*)$", unit.read_text(encoding="utf-8"), re.M).group(1)


def run_as_the_unit(service: Path, env: dict[str, str], here: bool = False) -> subprocess.CompletedProcess[str]:
    """ExecStart, in WorkingDirectory, with EnvironmentFile's variables and no others of the project's;
    ``here``: its `scrapy ...` in this process (scrapy.cmdline), for a run whose process shows nothing more."""
    cmd = shlex.split(unit_value(service, "ExecStart")) + QUICK
    folder = Path(unit_value(service, "WorkingDirectory"))
    if here:
        assert Path(cmd[0]).name == "scrapy"
        return scrapy_in_process(*cmd[1:], env=env, cwd=folder)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("JUSTONEAPI_", "REDIS_", "SCRAPY_"))}
    return subprocess.run(
        cmd, cwd=folder, env={**environ, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_systemd_units_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed: `apt-get install systemd` (.ci/run does it)")
    service, timer = installed(tmp_path)
    check = subprocess.run(
        ["systemd-analyze", "verify", str(timer), str(service)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0 and not check.stderr.strip() and not check.stdout.strip(), check.stderr
    assert unit_value(timer, "OnCalendar") and unit_value(timer, "Persistent") == "true"
    assert unit_value(service, "KillSignal") == "SIGINT", "systemctl stop is a Ctrl-C: the calls in flight are kept"
    assert "JUSTONEAPI_TOKEN" not in unit_value(service, "ExecStart"), "secrets in the environment file"


def test_the_services_command_runs_the_daily_crawl_and_refuses_a_second_one(tmp_path, receiver):
    service, _ = installed(tmp_path)
    env = {"JUSTONEAPI_NOTIFY": receiver.url}  # as /etc/rednote-crawl.env holds it
    first = run_as_the_unit(service, env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "brands" / "crawl-0001.jsonl").stat().st_size > 0
    assert receiver.posts == [], "a run that went well tells no one (JUSTONEAPI_NOTIFY_ON=failure)"
    # The next run starts while this one still holds the job folder: refused, and someone is told.
    # (It runs in this process: the lock is flock(2)'s, on the open file, so the test's own holds it off.)
    held = JobFolder.take(tmp_path / "brands")
    assert held is not None
    try:
        second = run_as_the_unit(service, env, here=True)
    finally:
        held.close()
    assert second.returncode == 2, second.stderr[-3000:]
    assert "is in use by another crawl" in second.stderr
    assert len(receiver.posts) == 1
    message = receiver.posts[0][1]
    assert "exit status 2" in message["title"] and "is in use by another crawl" in message["message"]
    assert "key-9f8e7d6c5b4a3b2c1d0e" not in second.stderr, "the webhook's key is masked in the log"


def test_the_cron_line_runs_the_daily_crawl(tmp_path):
    line = next(x for x in (DEPLOY / "cron" / "rednote-crawl.cron").read_text().splitlines() if " crawl " in x and not x.startswith("#"))
    fields = line.split(None, 5)
    assert fields[:5] == ["0", "6", "*", "*", "*"]
    command = fields[5].replace("/opt/rednote_crawl", str(ROOT)).replace(".venv/bin/scrapy", f"{sys.executable} -m scrapy")
    command = command.replace("/etc/rednote-crawl.env", str(tmp_path / "env")).replace("/var/lib/rednote-crawl", str(tmp_path))
    command = command.replace("/var/log/rednote-crawl", str(tmp_path)) + " " + shlex.join(QUICK)
    (tmp_path / "env").write_text("JUSTONEAPI_NOTIFY_ON=failure\n", encoding="utf-8")  # the secrets' file
    cron = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "SHELL": "/bin/sh"}
    cron |= {k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(["/bin/sh", "-c", command], env=cron, capture_output=True, text=True, timeout=120, check=False)
    log = (tmp_path / "brands.log").read_text(encoding="utf-8")
    assert done.returncode == 0, done.stderr[-2000:] + log[-2000:]
    assert "Summary of note_search: finished, exit status 0" in log
    assert (tmp_path / "brands" / "crawl-0001.jsonl").exists()


def test_a_stopped_crawl_notifies_and_keeps_its_exit_status(crawl, sandbox_factory, receiver):
    sandbox = sandbox_factory(token_codes={TOKEN: 601})
    dead = f"json://127.0.0.1:{closed_port()}/hook/key-0a1b2c3d4e5f6a7b8c9d"
    result = crawl(sandbox, keywords=["海信", "Nike"], settings={"JUSTONEAPI_NOTIFY": f"{receiver.url} {dead}"})
    assert result.returncode == 5, result.log[-3000:]
    assert len(receiver.posts) == 1
    message = receiver.posts[0][1]
    assert "exit status 5" in message["title"] and message["type"] == "failure"
    body = message["message"]
    assert "the account balance is used up" in body and "top up the balance" in body
    assert TOKEN not in body and TOKEN[:8] not in body, "never the token"
    assert "Notification not sent to json://127.0.0.1:" in result.log and "exit status is unchanged" in result.log
    assert "key-9f8e7d6c5b4a3b2c1d0e" not in result.log and "key-0a1b2c3d4e5f6a7b8c9d" not in result.log
    assert "Monitors: " in result.log and "failed: exit_status" in result.log
