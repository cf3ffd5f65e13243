"""The job state folder (``JUSTONEAPI_JOB_DIR``): what makes a crawl resumable.

Each crawl of the job has an append-only journal, ``crawl-0001.journal.jsonl``,
holding every paid page *with its items*, written and fsync'ed before the items
go to the pipelines, plus the queries the API rejected, the pages that failed
and the start and end of each run. From it a new run knows, for every query,
the last page paid for and whether the query is finished, so it asks only for
the pages after that; and it can put back into the output any note a hard kill
lost on the way to the file. When a crawl is complete and the next begins, the
ids of its notes go to ``history.ids`` (one per line): that is all later crawls
need of it, so a long-lived job reads one crawl's journal, not all of them.
Plain Python: ``local.LocalState`` uses it, and ``spidermw/pages.py`` feeds it.

A crash can leave the last line of a journal or of the output cut off:
``repair_jsonl`` drops such a line before anything is appended.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rednote_crawl import api
from rednote_crawl.config import local_path

HISTORY = "history.ids"


def journal_path(folder: Path, crawl: int) -> Path:
    return folder / f"crawl-{crawl:04d}.journal.jsonl"


def crawls(folder: Path) -> list[int]:
    """The numbers of the crawls that have a journal in ``folder``."""
    return sorted(int(p.name[6:10]) for p in folder.glob("crawl-[0-9][0-9][0-9][0-9].journal.jsonl"))


def query_key(query: api.Query) -> tuple[str, str, str, str]:
    return (query.keyword, query.sort, query.note_type, query.note_time)


def queries_fingerprint(keys: Iterable[Iterable[str]]) -> str:
    """Which queries a crawl covers, whatever their order, in 32 hex digits (a crawl of a
    million keywords keeps this, not the list)."""
    total = 0
    for key in keys:
        digest = hashlib.blake2b(orjson.dumps(list(key)), digest_size=16).digest()
        total = (total + int.from_bytes(digest, "big")) % 2**128
    return f"{total:032x}"


def crawl_fingerprint(record: dict[str, Any]) -> str | None:
    """The fingerprint a crawl record keeps (older job folders kept the list of queries)."""
    if "queries" in record:
        return queries_fingerprint(record["queries"])
    return record.get("queries_fingerprint")


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


@dataclass
class QueryState:
    pages: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # page -> its items
    end: str | None = None  # why the query stopped: "empty_page", "max_pages" or "since"
    rejected: bool = False
    failed: list[tuple[int, str]] = field(default_factory=list)
    next_rank: int = 0  # the rank offset of the page after the last one

    @property
    def last_page(self) -> int:
        return max(self.pages, default=0)

    def done(self, max_pages: int) -> bool:
        """Nothing left to ask for, with this max_pages (which may differ from the last run's)."""
        if self.rejected or self.end in ("empty_page", "since"):
            return True
        return self.last_page >= max_pages


class JobState:
    """A job is a series of crawls; a crawl is one or more runs of the same command.

    A run that ends complete (finished, no failed page) completes its crawl: the next
    start begins a new crawl. Any other end (a kill, a stop, failed pages) leaves the
    crawl open, and the next start resumes it.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self.queries: dict[tuple[str, str, str, str], QueryState] = {}  # of the current crawl
        self.crawl = 0  # the current crawl's number (0: none yet)
        self.crawl_started: str | None = None
        self.previous_crawl_started: str | None = None  # for -a since=last
        self.history: set[str] = set()  # note ids found by earlier crawls
        self.runs: list[dict[str, Any]] = []
        self.exported: set[str] = set()  # note ids already in the output file(s)
        self.crawl_record: dict[str, Any] = {}
        self._fd: int | None = None

    # --- reading -----------------------------------------------------------------
    def load(self, next_run: bool = True) -> JobState:
        """Read the last crawl's journal; for ``next_run``, set up the crawl the next run works on.

        Without ``next_run`` (a report, a dry run) nothing is written, not even a mended line.
        """
        numbers = crawls(self.folder)
        self.crawl = numbers[-1] if numbers else 0
        if self.crawl:
            for record in repair_jsonl(journal_path(self.folder, self.crawl), mend=next_run):
                self._apply(record)
        if self.crawl > 1:
            first = next(repair_jsonl(journal_path(self.folder, self.crawl - 1), mend=False), {})
            self.previous_crawl_started = first.get("at")
        if (self.folder / HISTORY).exists():
            self.history = set((self.folder / HISTORY).read_text(encoding="utf-8").split())
        if next_run and not self.resuming:  # the next run begins a new crawl: this one becomes history
            self.history |= note_ids(self.items())
            self.queries = {}
            self.previous_crawl_started = self.crawl_started
        return self

    def _apply(self, record: dict[str, Any]) -> None:
        event = record.get("e")
        if event == "crawl":
            self.crawl_started = record["at"]
            self.crawl_record = record
        elif event == "run":
            self.runs.append(record)
        elif event == "end" and self.runs:
            self.runs[-1]["end"] = record
        elif event in ("page", "rejected", "failed"):
            state = self.queries.setdefault(tuple(record["q"]), QueryState())  # type: ignore[arg-type]
            if event == "page":
                state.pages[record["p"]] = record["items"]
                state.end = record.get("end") or state.end
                state.next_rank = record.get("next_rank", state.next_rank)
            elif event == "rejected":
                state.rejected = True
            else:
                state.failed.append((record["p"], record["why"]))

    @property
    def resuming(self) -> bool:
        """The last run left its crawl open: the next run carries it on."""
        return bool(self.runs) and not self.runs[-1].get("end", {}).get("complete", False)

    @property
    def output(self) -> Path:
        """The default output file of the crawl the next run works on."""
        return self.folder / f"crawl-{self.crawl if self.resuming else self.crawl + 1:04d}.jsonl"

    def query(self, query: api.Query) -> QueryState | None:
        return self.queries.get(query_key(query))

    def items(self) -> Iterator[dict[str, Any]]:
        for state in self.queries.values():
            for page in sorted(state.pages):
                yield from state.pages[page]

    # --- writing -------------------------------------------------------------------
    def begin_run(self, at: str, crawl: dict[str, Any] | None = None) -> int:
        """Open the journal for a run: of a new crawl, unless the last one is still open.

        ``crawl`` is what a new crawl's record keeps: its queries, its output offsets.
        Returns the run's number within its crawl.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.resuming:  # load() has put the last crawl's notes in self.history
            if self.crawl:
                temporary = self.folder / f"{HISTORY}.new"
                with temporary.open("w", encoding="utf-8") as file:
                    file.write("".join(f"{note_id}\n" for note_id in sorted(self.history)))
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, self.folder / HISTORY)  # whole or not at all
                _sync_folder(self.folder)
            self.crawl += 1
            self.crawl_started = at
            self.runs = []
        path = journal_path(self.folder, self.crawl)
        list(repair_jsonl(path))  # never append after a cut-off line
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        _sync_folder(self.folder)  # a new journal's name survives a reboot too
        if not self.runs:
            self.crawl_record = {"e": "crawl", "crawl": self.crawl, "at": at, **(crawl or {})}
            self._append(self.crawl_record)
        record = {"e": "run", "run": len(self.runs) + 1, "at": at}
        self.runs.append(record)
        self._append(record)
        return len(self.runs)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def lock(self) -> bool:
        """Hold the folder for this process (released when it ends); False if another holds it."""
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd  # kept open: the lock lasts as long as the process
        return True

    def _append(self, record: dict[str, Any], sync: bool = True) -> None:
        assert self._fd is not None, "JobState.begin_run() first"
        os.write(self._fd, orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        if sync:
            os.fsync(self._fd)  # survives a reboot, not only a kill

    def end_run(self, reason: str, at: str, calls: int, complete: bool) -> None:
        record = {"e": "end", "run": len(self.runs), "reason": reason, "at": at, "calls": calls, "complete": complete}
        if self.runs:
            self.runs[-1]["end"] = record
        self._append(record)

    def record_page(
        self, query: api.Query, page: int, items: list[dict[str, Any]], end: str | None, next_rank: int
    ) -> None:
        state = self.queries.setdefault(query_key(query), QueryState())
        state.pages[page] = items
        state.end = end or state.end
        state.next_rank = next_rank
        record = {"e": "page", "q": query_key(query), "p": page, "end": end, "next_rank": next_rank, "items": items}
        self._append(record)

    def record_rejected(self, query: api.Query, page: int) -> None:
        self.queries.setdefault(query_key(query), QueryState()).rejected = True
        self._append({"e": "rejected", "q": query_key(query), "p": page})

    def record_failed(self, query: api.Query, page: int, why: str) -> None:
        self.queries.setdefault(query_key(query), QueryState()).failed.append((page, why))
        self._append({"e": "failed", "q": query_key(query), "p": page, "why": why}, sync=False)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def sync_files(paths: Iterable[Path]) -> None:
    """fsync each file that exists (the output, before a crawl is recorded complete)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
