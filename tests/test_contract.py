"""Contract tests: recorded API answers (betamax cassettes in tests/cassettes/) replayed through the
probe's client (python-requests) and judged by the wire contract.

Replay is the default and needs no network. To record again:

    pytest tests/test_contract.py --record=live     # from the real API: JUSTONEAPI_TOKEN must be set
    pytest tests/test_contract.py --record=sandbox  # rebuild the synthetic cassettes from the sandbox

The token is stored as the placeholder ``<JUSTONEAPI_TOKEN>`` (betamax's placeholders), never in
clear. Live recording re-records the cases the live API can reproduce on demand (``live=True``); the
others (a balance or quota error, a 5xx) keep their synthetic recording until a real one is caught.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import requests
from betamax import Betamax
from requests.adapters import HTTPAdapter

from rednote_crawl import api
from rednote_crawl.run.probe import fetch
from rednote_crawl.sandbox import Fault, SandboxConfig, SandboxServer
from rednote_crawl.sandbox.corpus import Corpus

CASSETTES = Path(__file__).parent / "cassettes"
SAMPLE = Path(__file__).parent / "data" / "seed-sample-response.json"
REAL_PAGES = sorted((Path(__file__).parent / "data" / "real").glob("*.json"))  # sources: data/real/SOURCES.md
PLACEHOLDER = "<JUSTONEAPI_TOKEN>"
PLACEHOLDER_QUOTED = "<JUSTONEAPI_TOKEN_URL_ENCODED>"  # the token as it stands in a query string
REPLAY_TOKEN = "replay-token"  # what the placeholder stands for when replaying
INVALID_TOKEN = "invalid-token-for-contract-test"
LAST_NIKE_PAGE = len(Corpus().layout("Nike", "general", "_0", "any"))
XIAOMI_PAGES = len(Corpus().layout("小米", "general", "_0", "any"))


NIKE = api.Query("Nike")


@dataclass(frozen=True)
class Case:
    name: str
    query: api.Query = NIKE
    pages: tuple[int, ...] = (1,)
    action: api.Action = api.Action.PARSE
    code: int | None = 0
    live: bool = False  # the live API gives this answer on demand
    token: str | None = None  # a fixed token instead of the real one
    sandbox: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("sample_page", api.Query("海信"), live=True, sandbox={"replay": {("海信", 1): "sample"}}),
    Case("normal_page", live=True),
    Case("video_page", api.Query("Nike", note_type="_1"), live=True),
    Case("time_sorted_week_page", api.Query("Nike", sort="time_descending", note_time="week"), live=True),
    Case("empty_last_page", pages=(LAST_NIKE_PAGE,), live=True),
    Case("full_query", api.Query("小米"), pages=tuple(range(1, XIAOMI_PAGES + 1)), live=True),
    Case("invalid_params_400", api.Query("Nike", sort="bogus_sort"), action=api.Action.DROP_QUERY, code=400, live=True),
    Case("invalid_token_100", action=api.Action.STOP, code=100, live=True, token=INVALID_TOKEN),
    Case("collection_failed_301", action=api.Action.RETRY, code=301, sandbox={"faults": ["301"]}),
    Case("rate_limit_302", action=api.Action.SLOW_DOWN, code=302, sandbox={"faults": ["302"]}),
    Case("quota_exceeded_303", action=api.Action.STOP, code=303, sandbox={"quota": 0}),
    Case("internal_error_500", action=api.Action.RETRY, code=500, sandbox={"faults": ["500"]}),
    Case("unavailable_503", action=api.Action.RETRY, code=503, sandbox={"faults": ["503"]}),
    Case("permission_denied_600", action=api.Action.STOP, code=600, sandbox={"token_codes": {"*": 600}}),
    Case("insufficient_balance_601", action=api.Action.STOP, code=601, sandbox={"token_codes": {"*": 601}}),
    Case("gateway_html_502", action=api.Action.RETRY, code=None, sandbox={"faults": ["html502"]}),
]


class ToSandbox(HTTPAdapter):
    """Sends calls meant for the real API to the sandbox, so betamax records them under the real URL."""

    def __init__(self, sandbox_url: str) -> None:
        super().__init__()
        self.sandbox_url = sandbox_url

    def send(self, request, **kwargs):
        original = request.url
        request.url = original.replace(api.DEFAULT_BASE_URL, self.sandbox_url, 1)
        response = super().send(request, **kwargs)
        response.url = request.url = original
        return response


def sandbox_for(case: Case) -> SandboxServer:
    options = dict(case.sandbox)
    token_codes = options.pop("token_codes", {})
    replay = options.pop("replay", {})
    config = SandboxConfig(
        faults=[Fault.parse(f) for f in options.pop("faults", [])],
        token_codes={(case.token or REPLAY_TOKEN if t == "*" else t): c for t, c in token_codes.items()},
        tokens=None if case.token != INVALID_TOKEN else frozenset({REPLAY_TOKEN}),
        **options,
    )
    server = SandboxServer(config)
    for (keyword, page), what in replay.items():
        assert what == "sample"
        server.add_recording(
            {"keyword": keyword, "page": str(page), "sort": "general", "noteType": "_0", "noteTime": None},
            status=200,
            body=SAMPLE.read_bytes(),
        )
    server.start_in_thread()
    return server


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_recorded_answers_hold_the_contract(case: Case, request: pytest.FixtureRequest):
    mode = request.config.getoption("--record")
    if mode == "live" and not case.live:
        pytest.skip("the live API does not give this answer on demand; the synthetic recording stays")
    real_token = os.environ.get("JUSTONEAPI_TOKEN", "") if mode == "live" else REPLAY_TOKEN
    if mode == "live" and not real_token:
        pytest.fail("--record=live needs the JUSTONEAPI_TOKEN environment variable")
    token = case.token or real_token
    session = requests.Session()
    server = None
    if mode == "sandbox":
        server = sandbox_for(case)
        session.mount(api.DEFAULT_BASE_URL, ToSandbox(server.url))
    recorder = Betamax(session, cassette_library_dir=str(CASSETTES))
    try:
        with recorder.use_cassette(
            case.name,
            record="all" if mode in ("live", "sandbox") else "none",
            match_requests_on=["method", "uri"],
            placeholders=[
                {"placeholder": PLACEHOLDER, "replace": real_token},
                {"placeholder": PLACEHOLDER_QUOTED, "replace": quote(real_token, safe="")},
            ],
        ):
            results = [
                fetch(session, base_url=api.DEFAULT_BASE_URL, token=token, query=case.query, page=p) for p in case.pages
            ]
    finally:
        session.close()
        if server is not None:
            server.stop_thread()

    for result in results:
        assert (result.answer.action, result.answer.code) == (case.action, case.code), result.answer
    pages = [r.page for r in results if r.page is not None]
    if case.action is api.Action.PARSE:
        assert pages[-1] is not None
        if case.name == "empty_last_page":
            assert pages[-1].is_last
        elif case.name == "full_query":
            assert [p.is_last for p in pages] == [False] * (len(pages) - 1) + [True]
            assert sum(len(p.notes) for p in pages) > 20
        else:
            assert pages[0].notes, "a first page holds notes"
        for page in pages:
            for note in page.notes:
                item = api.note_item(note, query=case.query, note_time_sent=None, page=1, rank=1, fetched_at="t")
                assert len(item["note_id"]) == 24 and item["url"] and item["published_at"]
        if case.query.note_type == "_1":
            assert {n["type"] for n in pages[0].notes} == {"video"}
    assert_cassette_is_clean(case.name, token)


def assert_cassette_is_clean(name: str, token: str) -> None:
    text = (CASSETTES / f"{name}.json").read_text(encoding="utf-8")
    data = orjson.loads(text)
    for interaction in data["http_interactions"]:
        uri = interaction["request"]["uri"]
        assert uri.startswith(api.DEFAULT_BASE_URL + api.SEARCH_PATH), "recorded against the real API's URL"
        assert "token=" in uri
    if token not in (REPLAY_TOKEN, INVALID_TOKEN):
        assert token not in text and quote(token, safe="") not in text, "the token is stored only as a placeholder"
    assert REPLAY_TOKEN not in text or PLACEHOLDER in text
    lowered = text.lower()
    for secret_header in ("authorization", "cookie", "set-cookie", "x-api-key"):
        assert f'"{secret_header}"' not in lowered


def test_every_cassette_belongs_to_a_case():
    assert sorted(p.stem for p in CASSETTES.glob("*.json")) == sorted(c.name for c in CASES)


@pytest.mark.parametrize("path", REAL_PAGES, ids=lambda path: path.stem)
def test_real_published_pages_hold_the_contract(path: Path, sandbox_factory):
    """The vendor's published answers, served as they are and read through the probe's client."""
    server = sandbox_factory()
    body = path.read_bytes()
    server.add_recording({"keyword": "美食", "page": "1", "sort": "general", "noteType": "_0"}, 200, body)
    with requests.Session() as session:
        result = fetch(session, base_url=server.url, token=REPLAY_TOKEN, query=api.Query("美食"))
    assert (result.answer.action, result.answer.code) == (api.Action.PARSE, 0)
    items = orjson.loads(body)["data"]["items"]
    assert result.page is not None and result.page.size == len(items) in (10, 20)
    assert len(result.page.notes) == sum(item["model_type"] == "note" for item in items)
    for rank, note in enumerate(result.page.notes, start=1):
        item = api.note_item(note, query=result.query, note_time_sent=None, page=1, rank=rank, fetched_at="t")
        assert len(item["note_id"]) == 24 and item["url"] and item["published_at"] and item["images"]
