"""``scrapy crawl note_search ... --dry-run``: what a crawl could cost, with nothing sent.

A dry run runs the checks of a real run's start (``run/startup.py``'s ``check``: the token, the
arguments and the keyword file, Redis answering, the job folder's lock being free, seen and not
taken, the outputs being writable) and nothing else: it creates no file or folder.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from rednote_crawl.config import ApiConfig, ConfigError, SearchArgs, fixed_output_file, refuse_token_on_the_command_line
from rednote_crawl.run.report import database_advice, plural
from rednote_crawl.run.startup import check
from rednote_crawl.state.jobfolder import JobFolder

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings


NOTES_PER_PAGE = 20  # the most notes a page has held (real pages: 10 or 20 items)


def preflight(settings: BaseSettings) -> ApiConfig:
    """The checks of a real run's start (``startup.check``), without its side effects."""
    refuse_token_on_the_command_line(settings)
    config = ApiConfig.from_settings(settings)
    check(config, settings)
    return config


def render_plan(name: str, args: SearchArgs, settings: BaseSettings) -> str:
    """The plan of a crawl, after the same checks as a real run's start."""
    config = preflight(settings)
    queries = args.check(config)
    max_pages = args.max_pages or config.max_pages
    keywords = queries // args.combinations
    lines = [
        f"Dry run of {name}: nothing is sent.",
        f"  {plural(keywords, 'keyword')} x {plural(args.combinations, 'filter combination')} = "
        f"{plural(queries, 'query')}, at most {max_pages} pages each",
    ]
    most = queries * max_pages
    folder = config.job_dir
    if folder:
        try:
            most, line = _job_plan(JobFolder.read(folder), args, max_pages, most)  # reads, writes nothing
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot read the job database in {folder}: {exc}; {database_advice(exc)}") from None
        lines.append(line)
    lines.append(
        f"  at most {most} paid pages (calls), plus retries of failed answers; "
        "most queries end sooner, at their first empty page"
    )
    if args.details != "none":  # the worst case: every note of every page new, and asked for
        notes = most * NOTES_PER_PAGE
        which = {"new": "every new note", "cut": "new notes whose preview was cut", "brand": "new brand partnerships"}
        lines.append(
            f"  -a details={args.details}: at most {notes} detail calls more (one per new note at most, "
            f"{NOTES_PER_PAGE} notes a page; asked for {which[args.details]}"
            + ("" if args.details_update else ", not for notes earlier crawls of the job found")
            + f"): at most {most + notes} calls in all"
        )
    if config.max_requests:
        lines.append(
            f"  JUSTONEAPI_MAX_REQUESTS={config.max_requests} stops the run after that many calls"
            + (" (search pages and detail calls together)" if args.details != "none" else "")
        )
    for uri in settings.getdict("FEEDS"):
        path = fixed_output_file(str(uri))
        if path is not None and not path.parent.exists():
            lines.append(f"  the output {path.name} goes into {path.parent}, a folder the real run creates")
    return "\n".join(lines)


def _job_plan(job: JobFolder, args: SearchArgs, max_pages: int, most: int) -> tuple[int, str]:
    """The most pages left to pay for, and the plan's line on the job folder."""
    try:
        if not job.resuming:
            return most, f"  job {job.folder}: the next run begins crawl {job.crawl + 1}"
        done = paid = most = 0
        for query in args.queries():
            known = job.progress(query)
            finished = known is not None and known.done(max_pages)
            done += finished
            paid += job.pages_paid(known) if known else 0
            if not finished:
                most += max(0, max_pages - (known.last_page if known else 0))
        return most, (
            f"  job {job.folder}: crawl {job.crawl} is open: {done} queries done, {paid} pages paid; "
            "the next run carries on"
        )
    finally:
        job.close()
