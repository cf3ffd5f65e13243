"""``scrapy report JOB_DIR``: the per-keyword report of a job's current crawl, from its journal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from rednote_crawl.run import report
from rednote_crawl.run.report import plural
from rednote_crawl.state.jobfolder import JobState, crawls

if TYPE_CHECKING:
    import argparse


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, object]] = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return "JOB_DIR"

    def short_desc(self) -> str:
        return "Report pages, notes and failures per keyword from a job state folder (JUSTONEAPI_JOB_DIR)"

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("name the job state folder: scrapy report JOB_DIR")
        if not crawls(Path(args[0])):
            print(
                f"error: {args[0]} is not a job state folder (no crawl-*.journal.jsonl); crawl with -s JUSTONEAPI_JOB_DIR=DIR",
                file=sys.stderr,
            )
            self.exitcode = 2
            return
        state = JobState(args[0]).load(next_run=False)
        runs = state.runs
        ended = [r["end"] for r in runs if "end" in r]
        calls = sum(e.get("calls", 0) for e in ended)
        status = "open: the next run carries it on" if state.resuming else "complete"
        title = f"Report of crawl {state.crawl} of job {state.folder} ({plural(len(runs), 'run')}, {status})"
        # A run cut off by a kill wrote no end record, so its calls are not known.
        print(report.render(title, report.rows_from_journal(state), calls, calls_exact=len(ended) == len(runs)))
