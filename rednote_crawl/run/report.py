"""The per-keyword report: at the end of every run, and from a job folder (``scrapy report DIR``)."""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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


# --- the report's data: one model, written as text (the log, scrapy report), HTML (--html) and
# JSON (--json: ``crawl_document``, ``trend_document``) -----------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    header: str
    meaning: str  # what it counts: the HTML's header tooltip and legend


@dataclass
class Table:
    """A table of the report: a first column of names (keywords), numbers after it, a total row,
    lines under it (the calls) and footnotes that say why a total is not the sum of its column."""

    title: str
    columns: list[Column]
    rows: list[list[Any]]
    total: list[Any] | None = None
    after: list[str] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        heads = [c.key for c in self.columns]
        return {
            "title": self.title,
            "columns": [{"key": c.key, "header": c.header, "meaning": c.meaning} for c in self.columns],
            "rows": [dict(zip(heads, row, strict=True)) for row in self.rows],
            "total": dict(zip(heads, self.total, strict=True)) if self.total else None,
            "after": self.after,
            "footnotes": self.footnotes,
        }


KEYWORD = Column("keyword", "keyword", "the seed keyword")
CRAWL_COLUMNS = [
    KEYWORD,
    Column("pages", "pages", "pages paid for"),
    Column("notes", "notes", "distinct notes its queries returned (a note found under two keywords counts under both)"),
    Column("new", "new", "notes it was the first to find in the job: the notes written to the output"),
    Column("failed", "failed", "pages that failed after every retry and were not paid for later"),
]
CALL_COLUMNS = [
    Column("calls", "calls", "calls its pages took, retries and rate-limited tries included"),
    Column("calls_per_new", "calls/new", "calls per new note"),
]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def crawl_table(
    title: str, rows: Iterable[KeywordFigures], calls: int | None, found: int, calls_exact: bool = True
) -> Table:
    """Pages, notes, new notes, failed pages (and calls) per keyword. ``found``: distinct notes over
    all keywords (a note found under two keywords counts once)."""
    rows = sorted(rows, key=lambda r: (-r.pages, r.keyword))
    per_keyword = all(r.calls is not None for r in rows) and bool(rows)
    columns = CRAWL_COLUMNS + (CALL_COLUMNS if per_keyword else [])

    def cells(pages: int, notes: int, new: int, failed: int, keyword_calls: int | None) -> list[Any]:
        values: list[Any] = [pages, notes, new, failed]
        if per_keyword:
            values += [keyword_calls or 0, (keyword_calls or 0) / new if new else None]
        return values

    body = [[r.keyword, *cells(r.pages, r.notes, r.new, r.failed, r.calls)] for r in rows]
    pages, new = sum(r.pages for r in rows), sum(r.new for r in rows)
    total = ["total", *cells(pages, found, new, sum(r.failed for r in rows), sum(r.calls or 0 for r in rows))]
    after = []
    if calls is not None:
        per_note = f", {calls / new:.3f} per new note" if new else ""
        after.append(f"calls: {'' if calls_exact else 'at least '}{calls} for {pages} paid pages{per_note}")
    footnotes = []
    summed = sum(r.notes for r in rows)
    if summed != found:
        footnotes.append(
            f"notes: {summed} under the keywords, {found} distinct in the total: {summed - found} "
            f"{'was' if summed - found == 1 else 'were'} found under more than one keyword and count once there. "
            "The end-of-run summary's notes \"from the API\" count every copy the API sent (a note repeated on "
            "consecutive pages, or under two keywords, each time)"
        )
    return Table(title, columns, body, total, after, footnotes)


def render_text(table: Table) -> str:
    """The table as the terminal and the log show it (columns aligned for wide characters)."""
    name_width = max([_width(str(r[0])) for r in table.rows] + [7]) + 2
    widths = [max(len(c.header) + 1, 6) for c in table.columns[1:]]
    widths = [max(w, *(len(_fmt(r[i + 1])) + 1 for r in [*table.rows, *([table.total] if table.total else [])])) for i, w in enumerate(widths)]
    widths = [max(w, d) for w, d in zip(widths, _DEFAULT_WIDTHS.get(len(widths), widths), strict=True)]

    def line(name: str, values: list[Any]) -> str:
        return f"  {_cell(name, name_width)}" + "".join(f"{_fmt(v):>{w}}" for v, w in zip(values, widths, strict=True))

    lines = [table.title, line(table.columns[0].header, [c.header for c in table.columns[1:]])]
    lines += [line(str(r[0]), r[1:]) for r in table.rows]
    if table.total is not None:
        lines.append(line(str(table.total[0]), table.total[1:]))
    lines += [f"  {text}" for text in table.after]
    lines += [f"  * {text}" for text in table.footnotes]
    return "\n".join(lines)


_DEFAULT_WIDTHS = {4: [6, 7, 7, 8], 6: [6, 7, 7, 8, 7, 11]}  # the report's columns, as they always were


def render(
    title: str, rows: Iterable[KeywordFigures], calls: int | None, found: int, calls_exact: bool = True
) -> str:
    """``found``: distinct notes over all keywords (a note found under two keywords counts once)."""
    return render_text(crawl_table(title, rows, calls, found, calls_exact))


def render_rows(title: str, rows: Iterable[KeywordRow], calls: int | None) -> str:
    """The end-of-run report, from what this run saw."""
    rows = list(rows)
    found = len(set().union(*(r.found for r in rows))) if rows else 0
    return render(title, [r.figures() for r in rows], calls, found)


def crawl_report(figures: CrawlFigures, this_run: bool = False) -> Table:
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
    table = crawl_table(title, figures.keywords, calls, figures.notes, calls_exact=exact)
    if figures.details:  # -a details=: the note detail calls, apart from the search pages
        ended_calls = sum(figures.details.values())
        parts = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(figures.details.items()))
        table.after.append(
            f"detail calls: {ended_calls} notes' detail calls ended ({parts}), {figures.calls} calls for search "
            f"pages; the calls per new note above count both kinds"
        )
    return table


def render_crawl(figures: CrawlFigures, this_run: bool = False) -> str:
    return render_text(crawl_report(figures, this_run))


def history_table(job: JobFolder, crawls: list[tuple[int, str]]) -> Table:
    """New notes per keyword per crawl: the trend of a daily monitoring job."""
    figures = job.keyword_figures([c for c, _ in crawls])
    by_keyword: dict[str, dict[int, int]] = {}
    for f in figures:
        by_keyword.setdefault(f.keyword, {})[f.crawl] = f.new
    columns = [KEYWORD] + [
        Column(f"crawl_{crawl}", f"#{crawl} {started[5:10]}", f"new notes of crawl {crawl}, begun {started}")
        for crawl, started in crawls
    ]
    order = sorted(by_keyword, key=lambda k: (-sum(by_keyword[k].values()), k))
    rows = [[keyword, *(by_keyword[keyword].get(c, 0) for c, _ in crawls)] for keyword in order]
    total = ["total", *(sum(by_keyword[k].get(c, 0) for k in by_keyword) for c, _ in crawls)]
    return Table(f"New notes per keyword, {plural(len(crawls), 'crawl')} of job {job.folder}", columns, rows, total)


def render_history(job: JobFolder, crawls: list[tuple[int, str]]) -> str:
    table = history_table(job, crawls)
    width = max([len(c.header) for c in table.columns[1:]] + [6]) + 2
    name_width = max([_width(str(r[0])) for r in table.rows] + [7]) + 2

    def line(name: str, values: list[Any]) -> str:
        return f"  {_cell(name, name_width)}" + "".join(f"{_fmt(v):>{width}}" for v in values)

    lines = [table.title, line("keyword", [c.header for c in table.columns[1:]])]
    lines += [line(str(r[0]), r[1:]) for r in table.rows]
    assert table.total is not None
    lines.append(line("total", table.total[1:]))
    return "\n".join(lines)


def render_html(table: Table) -> str:
    """One table as HTML: a caption, headers that say what they count, numbers right-aligned in
    tabular figures, the total in the footer, the lines and footnotes under it."""
    esc = html.escape
    head = "".join(
        f"<th scope='col' title='{esc(c.meaning)}'{'' if n == 0 else ' class=num'}>{esc(c.header)}</th>"
        for n, c in enumerate(table.columns)
    )

    def row(values: list[Any], tag: str = "td") -> str:
        first = f"<th scope='row'>{esc(str(values[0]))}</th>"
        return "<tr>" + first + "".join(f"<{tag} class=num>{esc(_fmt(v))}</{tag}>" for v in values[1:]) + "</tr>"

    body = "".join(row(r) for r in table.rows)
    foot = f"<tfoot>{row(table.total)}</tfoot>" if table.total is not None else ""
    legend = "".join(f"<dt>{esc(c.header)}</dt><dd>{esc(c.meaning)}</dd>" for c in table.columns[1:])
    notes = "".join(f"<p class=after>{esc(t)}</p>" for t in table.after)
    notes += "".join(f"<p class=footnote>* {esc(t)}</p>" for t in table.footnotes)
    return (
        f"<section><table><caption>{esc(table.title)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody>{foot}</table>{notes}<dl class=legend>{legend}</dl></section>"
    )


HTML_STYLE = (
    "body{font-family:system-ui,'Noto Sans CJK SC','Noto Sans SC','PingFang SC','Microsoft YaHei',sans-serif;"
    "margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}caption{text-align:left;font-weight:600;padding:.4em 0}"
    "th,td{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left;white-space:nowrap}"
    ".num{text-align:right;font-variant-numeric:tabular-nums}"
    "tfoot th,tfoot td{font-weight:600;border-top:2px solid #888}"
    ".footnote{color:#555;max-width:60em}.legend{color:#555;font-size:.9em}"
    ".legend dt{font-weight:600;float:left;clear:left;margin-right:.5em}.legend dd{margin:0 0 .2em 6em}"
)


# --- JSON (``scrapy report DIR --json``): the same tables, for dashboards ------------------------

REPORT_FORMAT = "rednote_crawl/report"
REPORT_VERSION = 1  # raised only when a key changes meaning or goes; new keys may appear within a version


def _document(job: JobFolder, view: str, tables: list[Table]) -> dict[str, Any]:
    """The shape every ``--json`` report has (docs/jobs.md, "The report as JSON"): every key always
    present, ``null`` where it does not apply to the view."""
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "generated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "job": str(job.folder),
        "crawls": job.crawl,  # the crawls the job has begun (the last one may be open)
        "view": view,  # "crawl": one crawl per keyword; "trend": new notes per keyword per crawl (--days)
        "crawl": None,
        "days": None,
        "trend": None,
        "tables": [table.as_dict() for table in tables],
        "monitors": [],
    }


def crawl_document(job: JobFolder, crawl: int, monitors: list[dict[str, Any]]) -> dict[str, Any]:
    """Crawl ``crawl`` of the job (``scrapy report DIR [--crawl N] --json``): the table ``scrapy report``
    prints, the crawl's runs, and the job's history monitors judged on it (``Check.to_dict``)."""
    figures = job.crawl_figures(crawl)
    table = crawl_report(figures)
    started = dict(job.crawls_since(""))
    ended = [r for r in figures.runs if r["ended"] is not None]
    doc = _document(job, "crawl", [table])
    doc["crawl"] = {
        "number": crawl,
        "started": started.get(crawl),
        "complete": any(r["complete"] for r in figures.runs),
        "calls": max(sum(r["calls"] or 0 for r in ended), figures.calls),
        "calls_exact": len(ended) == len(figures.runs),  # false: a run was killed, the calls are "at least"
        "notes": figures.notes,  # distinct notes over every keyword
        "runs": [{**run, "complete": bool(run["complete"])} for run in figures.runs],
    }
    doc["monitors"] = monitors
    return doc


def trend_document(job: JobFolder, crawls: list[tuple[int, str]], days: int) -> dict[str, Any]:
    """New notes per keyword for each crawl of the last ``days`` days (``scrapy report DIR --days N --json``)."""
    table = history_table(job, crawls)
    doc = _document(job, "trend", [table] if crawls else [])
    doc["days"] = days
    # The same table in long form, one point per keyword and crawl: what a time-series panel plots.
    points = [
        {"crawl": crawl, "started": started, "keyword": row[0], "new": row[1 + n]}
        for row in table.rows
        for n, (crawl, started) in enumerate(crawls)
    ]
    doc["trend"] = {"crawls": [{"number": crawl, "started": started} for crawl, started in crawls], "points": points}
    return doc


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
