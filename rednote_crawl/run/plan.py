"""``scrapy crawl note_search ... --dry-run``: what a crawl could cost, with nothing sent."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rednote_crawl.config import ApiConfig, ConfigError, SearchArgs
from rednote_crawl.run.report import plural
from rednote_crawl.state.jobfolder import JobFolder

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings


def render_plan(name: str, args: SearchArgs, settings: BaseSettings) -> str:
    """The plan of a crawl; the same checks of the arguments and settings as a real run's start."""
    config = ApiConfig.from_settings(settings, require_token=False)
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
    return "\n".join(lines)
