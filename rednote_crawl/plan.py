"""``scrapy crawl note_search ... --dry-run``: what a crawl could cost, with nothing sent."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rednote_crawl.config import ApiConfig, ConfigError
from rednote_crawl.jobstate import JobState
from rednote_crawl.summary import plural

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

    from rednote_crawl.spiders.note_search import NoteSearchSpider


def render_plan(spider: NoteSearchSpider, settings: BaseSettings) -> str:
    config = ApiConfig.from_settings(settings, require_token=False)
    max_pages = spider._max_pages or config.max_pages
    queries = list(spider.queries())
    per_keyword = len(queries) // len(spider.keywords)
    lines = [
        f"Dry run of {spider.name}: nothing is sent.",
        f"  {plural(len(spider.keywords), 'keyword')} x {plural(per_keyword, 'filter combination')} = "
        f"{plural(len(queries), 'query')}, "
        f"at most {max_pages} pages each",
    ]
    most = len(queries) * max_pages
    folder = settings.get("JUSTONEAPI_JOB_DIR")
    if spider._since == "last" and not folder:
        raise ConfigError(
            "-a since=last needs -s JUSTONEAPI_JOB_DIR=DIR: the job folder remembers when its last crawl began"
        )
    if folder:
        if Path(folder).expanduser().exists() and not Path(folder).expanduser().is_dir():
            raise ConfigError(f"JUSTONEAPI_JOB_DIR={folder!r} is not a folder; name a folder")
        state = JobState(folder).load(next_run=False)  # reads, writes nothing
        if state.resuming:
            known = [state.query(q) for q in queries]
            done = sum(1 for k in known if k and k.done(max_pages))
            paid = sum(len(k.pages) for k in known if k)
            most = sum(max(0, max_pages - (k.last_page if k else 0)) for k in known if not (k and k.done(max_pages)))
            lines.append(
                f"  job {state.folder}: crawl {state.crawl} is open: {done} queries done, {paid} pages paid; "
                "the next run carries on"
            )
        else:
            lines.append(f"  job {state.folder}: the next run begins crawl {state.crawl + 1}")
    lines.append(
        f"  at most {most} paid pages (calls), plus retries of failed answers; "
        "most queries end sooner, at their first empty page"
    )
    if config.max_requests:
        lines.append(f"  JUSTONEAPI_MAX_REQUESTS={config.max_requests} stops the run after that many calls")
    return "\n".join(lines)
