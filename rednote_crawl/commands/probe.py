"""``scrapy probe KEYWORD``: one live call that checks the token and shows the first page."""

from __future__ import annotations

import argparse
import sys
from typing import ClassVar

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from rednote_crawl import api, redaction
from rednote_crawl.config import ConfigError
from rednote_crawl.run.startup import settle
from rednote_crawl.state.limits import LimitFile
from rednote_crawl.stops import EXIT_BAD_INPUT, EXIT_ERROR


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, object]] = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return '[options] "KEYWORD"'

    def short_desc(self) -> str:
        return "Make one API call for KEYWORD: check the token, show the first page, the code and the latency"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--page", type=_page, default=1, help="page number (default 1)")
        parser.add_argument("--sort", help="a sort value, as for the spider's -a sort=")
        parser.add_argument("--note-type", help="a note type, as for -a note_type=")
        parser.add_argument("--note-time", help="a time filter, as for -a note_time=")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1 or not args[0].strip():
            raise UsageError('give one keyword: scrapy probe "海信"')
        assert self.settings is not None
        try:
            config = settle(self.settings)
            query = api.Query(
                args[0].strip(),
                _one("--sort", opts.sort, api.SORTS, api.DEFAULT_SORT),
                _one("--note-type", opts.note_type, api.NOTE_TYPES, api.DEFAULT_NOTE_TYPE),
                _one("--note-time", opts.note_time, api.NOTE_TIMES, api.DEFAULT_NOTE_TIME),
            )
        except (ConfigError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exitcode = EXIT_BAD_INPUT
            return
        # Imported here, not at the top: Scrapy imports every command's module for each `scrapy crawl`.
        import requests

        from rednote_crawl.run.probe import ProbeError, fetch, render

        redaction.install(config.token)
        print(f"Calling {config.base_url} with token {redaction.mask(config.token)}")
        try:
            with requests.Session() as session:
                result = fetch(
                    session,
                    base_url=config.base_url,
                    token=config.token,
                    query=query,
                    page=opts.page,
                    note_time_style=config.note_time_style,
                    timeout=config.timeout,
                )
        except ProbeError as exc:
            print(f"error: no answer from {config.base_url}: {exc}", file=sys.stderr)
            self.exitcode = EXIT_ERROR
            return
        print(render(result))
        learned = LimitFile(config.state_dir).get(config.token)
        if learned:
            print(f"The token's rate limit, as an earlier crawl measured it: about {learned:.2f} calls/s")
        if 300 <= result.status < 400:
            print(f"The API does not redirect: check JUSTONEAPI_BASE_URL (now {config.base_url})", file=sys.stderr)
        if result.answer.action is api.Action.PARSE:
            print(f"The token works ({redaction.mask(config.token)}).")
            return
        stop = result.answer.stop
        self.exitcode = stop.exit_status if stop else EXIT_ERROR
        if stop:
            print(f"A crawl would stop at once: {stop.what}", file=sys.stderr)


def _page(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a page number (1, 2, ...)")
    return int(text)


def _one(option: str, raw: str | None, choices: dict[str, str], default: str) -> str:
    values = api.parse_choices(option, raw, choices, default)
    if len(values) > 1:
        raise ValueError(f"{option} takes one value here (one call), not {raw!r}")
    return values[0]
