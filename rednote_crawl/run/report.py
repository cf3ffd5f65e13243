"""The per-keyword report: at the end of every run, and from a job folder (``scrapy report DIR``)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from rednote_crawl import stops
from rednote_crawl.state import jobcheck
from rednote_crawl.state.figures import CrawlFigures, KeywordFigures
from rednote_crawl.state.jobfolder import JobFolder


@dataclass
class KeywordRow:
    keyword: str
    pages: int = 0  # pages paid
    found: set[str] = field(default_factory=set)  # note ids its queries returned
    new: int = 0  # notes it was the first to bring (written to the output)
    failed: int = 0  # pages that failed
    calls: int = 0  # calls its pages took, paid or failed (retries included)

    def figures(self) -> KeywordFigures:
        return KeywordFigures(0, self.keyword, self.pages, len(self.found), self.new, self.failed, self.calls)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cell(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def render(
    title: str, rows: Iterable[KeywordFigures], calls: int | None, found: int, calls_exact: bool = True
) -> str:
    """``found``: distinct notes over all keywords (a note found under two keywords counts once)."""
    rows = sorted(rows, key=lambda r: (-r.pages, r.keyword))
    per_keyword = all(r.calls is not None for r in rows) and bool(rows)
    name_width = max([_width(r.keyword) for r in rows] + [7]) + 2
    head = f"  {_cell('keyword', name_width)}{'pages':>6}{'notes':>7}{'new':>7}{'failed':>8}"
    lines = [title, head + (f"{'calls':>7}{'calls/new':>11}" if per_keyword else "")]

    def cells(pages: int, notes: int, new: int, failed: int, calls: int | None) -> str:
        text = f"{pages:>6}{notes:>7}{new:>7}{failed:>8}"
        if per_keyword:
            text += f"{calls or 0:>7}" + (f"{(calls or 0) / new:>11.2f}" if new else f"{'-':>11}")
        return text

    for row in rows:
        lines.append(f"  {_cell(row.keyword, name_width)}" + cells(row.pages, row.notes, row.new, row.failed, row.calls))
    pages = sum(r.pages for r in rows)
    new = sum(r.new for r in rows)
    failed = sum(r.failed for r in rows)
    keyword_calls = sum(r.calls or 0 for r in rows)
    lines.append(f"  {_cell('total', name_width)}" + cells(pages, found, new, failed, keyword_calls))
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


def render_crawl(figures: CrawlFigures, this_run: bool = False) -> str:
    """A crawl of a job, from its database (every run of it together): the end of a run and
    ``scrapy report`` print the same."""
    runs = figures.runs
    ended = [r for r in runs if r["ended"] is not None]
    # The calls the runs counted (a run cut off by a kill recorded none): at least those of the pages.
    calls = max(sum(r["calls"] or 0 for r in ended), figures.calls)
    complete = any(r["complete"] for r in runs)
    status = "complete" if complete else "open: the next run carries it on"
    if this_run:
        status = f"{plural(len(runs), 'run')} so far"
    title = f"Report of crawl {figures.crawl} of job {figures.folder} ({plural(len(runs), 'run')}, {status})"
    if this_run:
        title = f"Report of crawl {figures.crawl} of job {figures.folder} ({status}), per keyword:"
    exact = len(ended) == len(runs)  # this run has ended by now: a run that was killed makes it "at least"
    return render(title, figures.keywords, calls, figures.notes, calls_exact=exact)


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


DAMAGED = (
    "it is damaged: run the job's crawl command once, whose start sets the damaged file aside and rebuilds the "
    "database from what still reads (docs/jobs.md), then try again"
)


def database_advice(exc: BaseException) -> str:
    """What to do about a job database that cannot be read: damaged, locked, not permitted, full."""
    return DAMAGED if jobcheck.damaged_error(exc) else stops.storage_fix(str(exc))
