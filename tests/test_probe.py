"""`scrapy probe KEYWORD`: one call, a short table, an exit status; in the test process (conftest.py),
and once in a subprocess, as a user runs it."""

from __future__ import annotations

import http.server
import json
import sys
import threading
from subprocess import CompletedProcess
from typing import ClassVar

import pytest

from rednote_crawl.sandbox.corpus import Corpus
from tests.conftest import TOKEN, run_command, scrapy_in_process


def probe(
    server_url: str | None, *args: str, token: str | None = TOKEN, subprocess: bool = False
) -> CompletedProcess[str]:
    """``scrapy probe ARGS...`` in this process (conftest.py), or in a subprocess as a user runs it."""
    env = {"JUSTONEAPI_TOKEN": token} if token else {}
    if server_url:
        env["JUSTONEAPI_BASE_URL"] = server_url
    if subprocess:
        return run_command([sys.executable, "-m", "scrapy", "probe", *args], env)
    return scrapy_in_process("probe", *args, env=env)


def test_probe_shows_the_first_page(sandbox):
    result = probe(sandbox.url, "海信 洗衣机", subprocess=True)  # once as a user runs it: the whole process
    assert result.returncode == 0, result.stderr
    first = Corpus().layout("海信 洗衣机", "general", "_0", "any")[0]
    first_note = Corpus().note(next(s.key for s in first if s.model_type == "note"))
    assert "Answer: HTTP 200, code_0 (success)" in result.stdout
    assert f"  1  {first_note['id']}  {first_note['type']:<6}" in result.stdout
    assert "The token works (tok-…)." in result.stdout
    assert [e["keyword"] for e in sandbox.log] == ["海信 洗衣机"]
    assert TOKEN not in result.stdout + result.stderr


def test_probe_passes_filters(sandbox):
    result = probe(
        sandbox.url, "Nike", "--sort", "latest", "--note-type", "video", "--note-time", "week", "--page", "2"
    )
    assert result.returncode == 0, result.stderr
    assert [(e["sort"], e["noteType"], e["noteTime"], e["page"]) for e in sandbox.log] == [
        ("time_descending", "_1", "ONE_WEEK", "2")
    ]


@pytest.mark.parametrize(("code", "status"), [(601, 5), (100, 4)])
def test_probe_names_a_fatal_answer(sandbox_factory, code, status):
    server = sandbox_factory(token_codes={TOKEN: code})
    result = probe(server.url, "Nike")
    assert result.returncode == status
    assert f"code_{code}" in result.stdout and "A crawl would stop at once" in result.stderr


def test_probe_without_an_answer_hides_the_token():
    result = probe("http://127.0.0.1:1", "Nike")
    assert result.returncode == 1
    assert "no answer from http://127.0.0.1:1" in result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_probe_without_a_token_or_with_bad_input():
    no_token = scrapy_in_process("probe", "Nike", env={"JUSTONEAPI_BASE_URL": "http://127.0.0.1:1"})
    assert no_token.returncode == 2 and "no API token" in no_token.stderr
    on_the_command_line = scrapy_in_process("probe", "Nike", "-s", "JUSTONEAPI_TOKEN=tok-probe-cmdline-5d1e")
    assert on_the_command_line.returncode == 2 and "must not be passed with -s" in on_the_command_line.stderr
    assert "tok-probe-cmdline-5d1e" not in on_the_command_line.stdout + on_the_command_line.stderr
    # One refusal through the real command line: its exit status and its one error line.
    result = probe("http://127.0.0.1:1", "Nike", "--sort", "bogus")
    assert result.returncode == 2 and "--sort='bogus' is not a valid value" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


class Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in for a gateway in front of the API: it redirects, or quotes the token back."""

    seen: ClassVar[list[str]] = []
    redirect_to = ""

    def do_GET(self):
        Recorder.seen.append(self.path)
        if self.redirect_to:
            self.send_response(301)
            self.send_header("Location", self.redirect_to + self.path)
            self.end_headers()
            return
        token = self.path.rsplit("token=", 1)[-1]
        body = json.dumps({"code": 100, "data": None, "message": f"invalid token {token}", "recordTime": None}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def gateway():
    servers = []

    def start(redirect_to: str = ""):
        handler = type("Handler", (Recorder,), {"redirect_to": redirect_to})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    Recorder.seen.clear()
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_probe_does_not_follow_a_redirect_with_the_token(gateway):
    elsewhere = gateway()
    front = gateway(redirect_to=elsewhere)
    result = probe(front, "Nike")
    assert result.returncode == 1
    assert len(Recorder.seen) == 1, "the other host got nothing"
    assert "The API does not redirect: check JUSTONEAPI_BASE_URL" in result.stderr


def test_probe_masks_the_token_in_the_apis_own_message(gateway):
    result = probe(gateway(), "Nike")
    assert result.returncode == 4
    assert "invalid token tok-…" in result.stdout and TOKEN not in result.stdout + result.stderr


def test_probe_refuses_a_page_0_and_several_values():
    env = {"JUSTONEAPI_TOKEN": TOKEN, "JUSTONEAPI_BASE_URL": "http://127.0.0.1:1"}
    page_0 = scrapy_in_process("probe", "Nike", "--page", "0", env=env)
    assert page_0.returncode == 2 and "is not a page number" in page_0.stderr
    result = scrapy_in_process("probe", "Nike", "--sort", "general,latest", env=env)
    assert result.returncode == 2 and "takes one value here" in result.stderr
