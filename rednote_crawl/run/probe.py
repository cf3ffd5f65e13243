"""One call to the API with python-requests: what ``scrapy probe`` runs before a big crawl.

It shares the wire contract (``api.py``) with the crawler, and it is the client the
betamax contract tests record and replay (``tests/test_contract.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from rednote_crawl import __version__, api, redaction

USER_AGENT = f"rednote_crawl/{__version__} (probe)"


class ProbeError(RuntimeError):
    """The call got no answer (DNS, connection, timeout); the message holds no token."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    query: api.Query
    page_number: int
    status: int
    answer: api.Answer
    latency: float
    page: api.Page | None  # when the answer is code 0


def fetch(
    session: requests.Session,
    *,
    base_url: str,
    token: str,
    query: api.Query,
    page: int = 1,
    note_time_style: str = "vendor",
    timeout: float = 60,
) -> ProbeResult:
    redaction.install(token)
    url = api.add_token(api.search_url(base_url, query.params(page, note_time_style)), token)
    started = time.perf_counter()
    try:
        # No redirects: the API does not redirect, and following one would carry the token elsewhere.
        response = session.get(
            url,
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise ProbeError(redaction.redact(f"{type(exc).__name__}: {exc}")) from None
    latency = time.perf_counter() - started
    answer = api.judge(response.status_code, response.content)
    page_data = api.read_page(answer.envelope) if answer.envelope is not None else None
    return ProbeResult(query, page, response.status_code, answer, latency, page_data)


def render(result: ProbeResult, rows: int = 20) -> str:
    q = result.query
    answer = result.answer
    lines = [
        f"Note search v2: keyword {q.keyword!r}, page {result.page_number}, sort {q.sort}, "
        f"note_type {q.note_type}, note_time {q.note_time}",
        f"Answer: HTTP {result.status}, {answer.label} ({answer.message}), {result.latency:.2f} s",
    ]
    page = result.page
    if page is not None:
        other = ", ".join(f"{kind} {n}" for kind, n in sorted(page.skipped.items()))
        lines.append(f"Items: {page.size}: {len(page.notes)} notes" + (f", other: {other}" if other else ""))
        if page.notes:
            lines.append(f"{'#':>3}  {'note_id':<24}  {'type':<6}  {'likes':>7}  title")
            for rank, note in enumerate(page.notes[:rows], start=1):
                likes = api.parse_count(note.get("liked_count"))
                title = (note.get("title") or note.get("desc") or "").replace("\n", " ")
                lines.append(
                    f"{rank:>3}  {note['id']:<24}  {note.get('type') or '?'!s:<6}  "
                    f"{'' if likes is None else likes:>7}  {title[:40]}"
                )
            if len(page.notes) > rows:
                lines.append(f"     ... {len(page.notes) - rows} more")
    return redaction.redact("\n".join(lines))  # the API's own message may quote the token
