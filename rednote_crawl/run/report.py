"""The per-keyword report: at the end of every run, and on demand from a job folder
(``scrapy report JOB_DIR``)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from rednote_crawl.state.jobfolder import JobState


@dataclass
class KeywordRow:
    keyword: str
    pages: int = 0  # pages paid
    found: set[str] = field(default_factory=set)  # note ids its queries returned
    new: int = 0  # notes it was the first to bring (written to the output)
    failed: int = 0  # pages that failed


def rows_from_journal(state: JobState) -> list[KeywordRow]:
    """The current crawl of a job, from its journal (every run of it together)."""
    rows: dict[str, KeywordRow] = {}
    first_seen: set[str] = set()
    for key, query in state.queries.items():
        row = rows.setdefault(key[0], KeywordRow(key[0]))
        row.pages += len(query.pages)
        row.failed += len({page for page, _ in query.failed} - set(query.pages))
        for page in sorted(query.pages):
            for item in query.pages[page]:
                note_id = item["note_id"]
                row.found.add(note_id)
                if note_id not in first_seen and note_id not in state.history:
                    first_seen.add(note_id)
                    row.new += 1
    return list(rows.values())


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cell(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def render(title: str, rows: Iterable[KeywordRow], calls: int | None, calls_exact: bool = True) -> str:
    rows = sorted(rows, key=lambda r: (-r.pages, r.keyword))
    name_width = max([_width(r.keyword) for r in rows] + [7]) + 2
    lines = [title, f"  {_cell('keyword', name_width)}{'pages':>6}{'notes':>7}{'new':>7}{'failed':>8}"]
    for row in rows:
        lines.append(f"  {_cell(row.keyword, name_width)}{row.pages:>6}{len(row.found):>7}{row.new:>7}{row.failed:>8}")
    pages = sum(r.pages for r in rows)
    new = sum(r.new for r in rows)
    found = len(set().union(*(r.found for r in rows))) if rows else 0
    failed = sum(r.failed for r in rows)
    lines.append(f"  {_cell('total', name_width)}{pages:>6}{found:>7}{new:>7}{failed:>8}")
    if calls is not None:
        per_note = f", {calls / new:.3f} per new note" if new else ""
        at_least = "" if calls_exact else "at least "
        lines.append(f"  calls: {at_least}{calls} for {pages} paid pages{per_note}")
    return "\n".join(lines)


def plural(count: int, noun: str) -> str:
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"
