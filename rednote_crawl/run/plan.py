"""``scrapy crawl note_search ... --dry-run``: what a crawl could cost, with nothing sent.

A dry run checks everything a real run checks before its first call (``preflight``), without
side effects: the token, the arguments and the keyword file, Redis answering, the job folder's
lock being free (seen, not taken), the outputs being writable; it creates no file or folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rednote_crawl.config import (
    ApiConfig,
    ConfigError,
    SearchArgs,
    fixed_output_file,
    flag,
    refuse_token_on_the_command_line,
)
from rednote_crawl.run.report import plural
from rednote_crawl.state.jobfolder import JobFolder

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings


def preflight(settings: BaseSettings) -> ApiConfig:
    """The checks of a real run's start, without its side effects (``ConfigError`` names what fails)."""
    refuse_token_on_the_command_line(settings)
    config = ApiConfig.from_settings(settings, require_token=not flag(settings, "JUSTONEAPI_SANDBOX"))
    if config.redis_url:
        from rednote_crawl.state.redis.client import check_reachable, connect

        server = connect(config.redis_url, settings)
        try:
            check_reachable(server, config.redis_url)
        finally:
            server.close()
    if config.job_dir and not JobFolder.lock_is_free(config.job_dir):
        raise ConfigError(
            f"JUSTONEAPI_JOB_DIR={config.job_dir!r} is in use by another crawl; wait for it, or name another folder"
        )
    for uri in settings.getdict("FEEDS"):
        _check_writable(str(uri))
    return config


def _check_writable(uri: str) -> None:
    """Whether a local output could be written, creating nothing (the real start creates its folder)."""
    path = fixed_output_file(uri)
    if path is None:
        return
    problem = f"cannot write the output file {uri!r}"
    if path.is_dir():
        raise ConfigError(f"{problem}: it is a folder; choose a file with -O FILE")
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK) or (existing != path and not existing.is_dir()):
        raise ConfigError(f"{problem}: {existing or path} cannot be written; choose another path with -O FILE")


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
        if Path(folder).expanduser().exists() and not Path(folder).expanduser().is_dir():
            raise ConfigError(f"JUSTONEAPI_JOB_DIR={folder!r} is not a folder; name a folder")
        job = JobFolder.read(folder)  # reads, writes nothing
        if job.resuming:
            done = paid = 0
            most = 0
            for query in args.queries():
                known = job.progress(query)
                finished = known is not None and known.done(max_pages)
                done += finished
                paid += job.pages_paid(known) if known else 0
                if not finished:
                    most += max(0, max_pages - (known.last_page if known else 0))
            lines.append(
                f"  job {job.folder}: crawl {job.crawl} is open: {done} queries done, {paid} pages paid; "
                "the next run carries on"
            )
        else:
            lines.append(f"  job {job.folder}: the next run begins crawl {job.crawl + 1}")
        job.close()
    lines.append(
        f"  at most {most} paid pages (calls), plus retries of failed answers; "
        "most queries end sooner, at their first empty page"
    )
    if config.max_requests:
        lines.append(f"  JUSTONEAPI_MAX_REQUESTS={config.max_requests} stops the run after that many calls")
    for uri in settings.getdict("FEEDS"):
        path = fixed_output_file(str(uri))
        if path is not None and not path.parent.exists():
            lines.append(f"  the output {path.name} goes into {path.parent}, a folder the real run creates")
    return "\n".join(lines)
