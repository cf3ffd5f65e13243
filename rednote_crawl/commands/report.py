"""``scrapy report JOB_DIR``: what a job folder (JUSTONEAPI_JOB_DIR) holds, from its database.

scrapy report DIR                     the last crawl, per keyword: pages, notes, new notes, failed pages, calls
                                      (--crawl N: crawl N)
scrapy report DIR --days 30           new notes per keyword for each crawl of the last 30 days
scrapy report DIR --json              either of the two above as JSON, for a dashboard (docs/jobs.md: its shape)
scrapy report DIR --plot report.png   new notes per keyword per crawl and calls per new note, as a picture
                                      (--html report.html: every table with the picture; --days N: of N days)
scrapy report DIR --export FILE       the notes of the last crawl (--crawl N: of crawl N; --crawl all: of every
                                      crawl), each once: FILE.jsonl (JSON Lines), FILE.csv (CSV for Excel),
                                      FILE.xlsx (an Excel workbook); - for JSON Lines on standard output
"""

from __future__ import annotations

import os
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, Literal

import orjson
from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from rednote_crawl.commands import keep_description_lines
from rednote_crawl.formats.writers import FORMATS, format_for, write_notes
from rednote_crawl.run import report, trends
from rednote_crawl.run.report import plural
from rednote_crawl.state.jobfolder import JobFolder

if TYPE_CHECKING:
    import argparse

    from scrapy.settings import BaseSettings


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, object]] = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return (
            "JOB_DIR [--crawl N | --days N] [--json] | [--days N] [--plot FILE.png] [--html FILE.html] | "
            "--export FILE.jsonl|.csv|.xlsx [--crawl N|all]"
        )

    def short_desc(self) -> str:
        return "Report pages, notes and failures per keyword from a job folder (JUSTONEAPI_JOB_DIR)"

    def long_desc(self) -> str:
        return __doc__ or ""

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        keep_description_lines(parser)
        parser.add_argument("--days", type=_positive, help="new notes per keyword per crawl, for the last N days")
        parser.add_argument("--export", metavar="FILE", help="write a crawl's notes to FILE: .jsonl, .csv or .xlsx")
        parser.add_argument(
            "--crawl", default="last", help="the crawl to report: its number or last; with --export also all"
        )
        parser.add_argument("--plot", metavar="FILE.png", help="draw the trend of new notes and calls per new note")
        parser.add_argument("--html", metavar="FILE.html", help="the trend's table and picture in one page")
        parser.add_argument(
            "--json", action="store_true", help="the report (or with --days, the trend) as JSON on standard output"
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        try:
            self._run(args, opts)
            sys.stdout.flush()
        except BrokenPipeError:  # `scrapy report DIR | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except sqlite3.DatabaseError as exc:  # a damaged or locked job database: say so, no traceback
            print(
                f"error: cannot read the job database in {args[0]}: {exc}; {report.database_advice(exc)}",
                file=sys.stderr,
            )
            self.exitcode = 1

    def _run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("name the job folder: scrapy report JOB_DIR")
        job = JobFolder.read(args[0])
        if not job.crawl:
            print(
                f"error: {args[0]} is not a job state folder (no crawl in it); crawl with -s JUSTONEAPI_JOB_DIR=DIR",
                file=sys.stderr,
            )
            self.exitcode = 2
            return
        if opts.json and (opts.export or opts.plot or opts.html):
            print(
                "error: --json is the report itself: it goes with --crawl or --days, not --export, --plot or --html",
                file=sys.stderr,
            )
            self.exitcode = 2
        elif opts.export:
            self.exitcode = _export(job, opts.export, opts.crawl)
        elif opts.plot or opts.html:
            self.exitcode = _trends(job, opts)
        elif opts.days and opts.crawl != "last":
            print(
                "error: --days reports the crawls of those days; --crawl N reports one crawl: name one of them",
                file=sys.stderr,
            )
            self.exitcode = 2
        elif (crawl := _crawl_number(job, opts.crawl, allow_all=False)) is None:
            self.exitcode = 2
        elif opts.json:
            self.exitcode = _json(job, opts, crawl, self.settings)
        elif opts.days:
            since = (datetime.now(UTC) - timedelta(days=opts.days)).strftime("%Y-%m-%dT%H:%M:%SZ")
            crawls = job.crawls_since(since)
            if not crawls:
                print(f"no crawl of {job.folder} began in the last {plural(opts.days, 'day')}")
            else:
                print(report.render_history(job, crawls))
        else:
            print(report.render_crawl(job.crawl_figures(crawl)))
        job.close()


def _crawl_number(job: JobFolder, which: str, allow_all: bool) -> int | Literal["all"] | None:
    """``--crawl``: a crawl's number, ``last`` or (with --export) ``all``; None, said on stderr: none of these."""
    if which == "all" and allow_all:
        return "all"
    if which == "last":
        return job.crawl
    if which.isdigit() and 1 <= int(which) <= job.crawl:
        return int(which)
    also = ", last or all" if allow_all else " or last (all goes with --export)"
    print(f"error: --crawl={which!r}: give a crawl's number (1 to {job.crawl}){also}", file=sys.stderr)
    return None


def _json(job: JobFolder, opts: argparse.Namespace, crawl: int, settings: BaseSettings | None) -> int:
    """The report as JSON (docs/jobs.md, "The report as JSON"): the same tables as the text, from the
    same model (``report.Table.as_dict``), and the job's history monitors on the crawl (``Check.to_dict``)."""
    from rednote_crawl.config import ConfigError, Thresholds
    from rednote_crawl.run import monitors

    if opts.days:
        since = (datetime.now(UTC) - timedelta(days=opts.days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        doc = report.trend_document(job, job.crawls_since(since), opts.days)
    else:
        try:
            limits = Thresholds.from_settings(settings) if settings is not None else Thresholds()
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        history = [job.keyword_figures([c]) for c in range(max(1, crawl - limits.history), crawl + 1)]
        complete = any(run["complete"] for run in job.crawl_runs(crawl))
        checks = [check.to_dict() for check in monitors.history_checks(history, complete, limits)]
        doc = report.crawl_document(job, crawl, checks)
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    return 0


def _trends(job: JobFolder, opts: argparse.Namespace) -> int:
    since = (datetime.now(UTC) - timedelta(days=opts.days)).strftime("%Y-%m-%dT%H:%M:%SZ") if opts.days else ""
    crawls = job.crawls_since(since)
    if opts.html:  # first: without matplotlib it still has the tables
        tables = [report.crawl_report(job.crawl_figures(job.crawl)), report.history_table(job, crawls)]
        page = trends.page(job, crawls, tables)
        print(f"wrote the report of {plural(len(crawls), 'crawl')} to {trends.write(opts.html, page)}")
    try:
        if opts.plot:
            print(f"drew {plural(len(crawls), 'crawl')} into {trends.write(opts.plot, trends.draw(job, crawls))}")
        if font := trends.missing_font(job, crawls):
            print(f"warning: {font}", file=sys.stderr)
    except trends.PlotUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _export(job: JobFolder, path: str, which: str) -> int:
    chosen = _crawl_number(job, which, allow_all=True)
    if chosen is None:
        return 2
    crawl = None if chosen == "all" else chosen
    if (fmt := format_for(path)) is None and path != "-":
        print(f"error: --export {path}: name a file ending in {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    what = "every crawl" if crawl is None else f"crawl {crawl}"
    if path == "-":  # standard output: JSON Lines, for a pipe
        count = 0
        try:
            for line in job.export(crawl):
                sys.stdout.buffer.write(line + b"\n")
                count += 1
            sys.stdout.flush()
        except BrokenPipeError:
            return 1
        print(f"wrote {plural(count, 'note')} of {what} of job {job.folder}", file=sys.stderr)
        return 0
    try:
        count = write_notes(path, job.export(crawl), fmt)
    except BrokenPipeError:
        print(f"error: {path} was closed by its reader before every note was written", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 8
    print(f"wrote {plural(count, 'note')} of {what} of job {job.folder} to {path} ({FORMAT_NAMES[fmt]})")
    return 0


FORMAT_NAMES = {"jsonlines": "JSON Lines", "csv": "CSV, UTF-8 with a BOM", "xlsx": "Excel workbook"}


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        import argparse

        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (1, 2, ...)")
    return int(text)
