"""The output files of a local crawl: which of them a job can read back, where a crawl's lines
begin in each, mending a line a kill cut off, and syncing them to disk."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from rednote_crawl.config import local_path


def repair_jsonl(path: Path, start: int = 0, mend: bool = True) -> Iterator[dict[str, Any]]:
    """The JSON objects on the lines of ``path`` from byte ``start`` on.

    Each line is written whole, newline last, so a kill or a reboot can only leave the
    *last* line without its newline: with ``mend``, that tail is cut from the file before
    anything is appended. Nothing else is ever removed: a bad line in the middle is
    someone else's, and is only skipped.
    """
    try:
        with path.open("rb") as file:
            file.seek(start)
            data = file.read()
    except FileNotFoundError:
        return
    end = data.rfind(b"\n") + 1  # the bytes after the last newline are a cut-off line
    for line in data[:end].splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield record
    if mend and end < len(data):
        with path.open("r+b") as file:
            file.truncate(start + end)


def note_ids(records: Iterable[dict[str, Any]]) -> set[str]:
    return {record["note_id"] for record in records if isinstance(record.get("note_id"), str)}


JSONL_FORMATS = ("jsonlines", "jsonl", "jl")


def local_feeds(feeds: dict[str, dict[str, Any]]) -> list[Path]:
    """The fixed local JSON Lines files among FEEDS: the outputs a job can read back."""
    paths = []
    for uri, options in feeds.items():
        path = local_path(str(uri))
        if path is not None and "%(" not in str(path) and options.get("format") in JSONL_FORMATS:
            paths.append(path)
    return paths


def feed_offsets(feeds: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Where this crawl's lines begin in each output: 0 when it is overwritten, else its size now."""
    offsets = {}
    readable = local_feeds(feeds)
    for uri, options in feeds.items():
        path = local_path(str(uri))
        if path is not None and path in readable:
            offsets[str(path)] = 0 if options.get("overwrite") or not path.exists() else path.stat().st_size
    return offsets


def sync_files(paths: Iterable[Path]) -> list[str]:
    """fsync each regular file that exists (the output, before a crawl is recorded complete);
    returns the failures, each naming its file."""
    failures = []
    for path in paths:
        if not path.is_file():
            continue  # gone, or a device such as /dev/null
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            failures.append(f"cannot sync the output file {path} to disk: {exc.strerror}")
    return failures
