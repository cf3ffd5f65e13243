"""Project commands (``COMMANDS_MODULE``)."""

from __future__ import annotations

import argparse

from scrapy.commands import ScrapyHelpFormatter


class TableHelpFormatter(argparse.RawDescriptionHelpFormatter, ScrapyHelpFormatter):
    """Scrapy's help layout, with the command's description kept line by line (it is a table of uses)."""


def keep_description_lines(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = TableHelpFormatter
