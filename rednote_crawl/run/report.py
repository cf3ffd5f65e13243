"""The per-keyword report: at the end of every run, and from a job folder (``scrapy report DIR``)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from rednote_crawl.state.jobfolder import JobFolder, KeywordFigures


@dataclass
class KeywordRow:
    keyword: str
    pages: int = 0  # pages paid
    found: set[str] = field(default_factory=set)  # note ids its queries returned
    new: int = 0  # notes it was the first to bring (written to the output)
    failed: int = 0  # pages that failed

    def figures(self) -> KeywordFigures:
        return KeywordFigures(0, self.keyword, self.pages, len(self.found), self.new, self.failed)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cell(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def render(
    title: str, rows: Iterable[KeywordFigures], calls: int | None, found: int, calls_exact: bool = True
) -> str:
    """``found``: distinct notes over all keywords (a note found under two keywords counts once)."""
    rows = sorted(rows, key=lambda r: (-r.pages, r.keyword))
    name_width = max([_width(r.keyword) for r in rows] + [7]) + 2
    lines = [title, f"  {_cell('keyword', name_width)}{'pages':>6}{'notes':>7}{'new':>7}{'failed':>8}"]
    for row in rows:
        lines.append(f"  {_cell(row.keyword, name_width)}{row.pages:>6}{row.notes:>7}{row.new:>7}{row.failed:>8}")
    pages = sum(r.pages for r in rows)
    new = sum(r.new for r in rows)
    failed = sum(r.failed for r in rows)
    lines.append(f"  {_cell('total', name_width)}{pages:>6}{found:>7}{new:>7}{failed:>8}")
    if calls is not None:
        per_note = f", {calls / new:.3f} per new note" if new else ""
        at_least = "" if calls_exact else "at least "
        lines.append(f"  calls: {at_least}{calls} for {pages} paid pages{per_note}")
    return "\n".join(lines)


def render_rows(title: str, rows: Iterable[KeywordRow], calls: int | None) -> str:
    """The end-of-run report, from what this run saw."""
    rows = list(rows)
    found = len(set().union(*(r.found for r in rows))) if rows else 0
    return render(title, [r.figures() for r in rows], calls, found)


def render_crawl(job: JobFolder, crawl: int) -> str:
    """A crawl of a job, from its database (every run of it together)."""
    runs = job.crawl_runs(crawl)
    ended = [r for r in runs if r["ended"] is not None]
    calls = sum(r["calls"] or 0 for r in ended)
    complete = any(r["complete"] for r in runs)
    status = "complete" if complete else "open: the next run carries it on"
    title = f"Report of crawl {crawl} of job {job.folder} ({plural(len(runs), 'run')}, {status})"
    # A run cut off by a kill recorded no end, so its calls are not known.
    return render(title, job.keyword_figures([crawl]), calls, job.distinct_notes(crawl), calls_exact=len(ended) == len(runs))


def render_history(job: JobFolder, crawls: list[tuple[int, str]]) -> str:
    """New notes per keyword per crawl: the trend of a daily monitoring job."""
    figures = job.keyword_figures([c for c, _ in crawls])
    by_keyword: dict[str, dict[int, int]] = {}
    for f in figures:
        by_keyword.setdefault(f.keyword, {})[f.crawl] = f.new
    name_width = max([_width(k) for k in by_keyword] + [7]) + 2
    heads = [f"#{crawl} {started[5:10]}" for crawl, started in crawls]
    width = max([len(h) for h in heads] + [6]) + 2
    lines = [
        f"New notes per keyword, {plural(len(crawls), 'crawl')} of job {job.folder}",
        f"  {_cell('keyword', name_width)}" + "".join(f"{h:>{width}}" for h in heads),
    ]
    for keyword in sorted(by_keyword, key=lambda k: (-sum(by_keyword[k].values()), k)):
        counts = by_keyword[keyword]
        lines.append(f"  {_cell(keyword, name_width)}" + "".join(f"{counts.get(c, 0):>{width}}" for c, _ in crawls))
    totals = [sum(by_keyword[k].get(c, 0) for k in by_keyword) for c, _ in crawls]
    lines.append(f"  {_cell('total', name_width)}" + "".join(f"{t:>{width}}" for t in totals))
    return "\n".join(lines)


def plural(count: int, noun: str) -> str:
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"
