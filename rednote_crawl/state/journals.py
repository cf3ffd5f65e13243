"""Job folders of the earlier format, converted into the job database on first use.

That format kept one append-only journal per crawl, ``crawl-0001.journal.jsonl`` (a crawl
record, runs and their ends, every paid page with its items, rejected queries, failed pages),
and ``history.ids``: the note ids of complete crawls whose journals a user may have deleted.
Their note history must survive the conversion, or the next daily run would deliver every old
note again. The old files are left where they are (and may be deleted once converted).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from rednote_crawl.state.outputs import repair_jsonl

logger = logging.getLogger(__name__)

HISTORY = "history.ids"
# Notes older than the crawls of the history file have no keyword: crawl 0.
HISTORY_CRAWL = 0


def journal_path(folder: Path, crawl: int) -> Path:
    return folder / f"crawl-{crawl:04d}.journal.jsonl"


def journal_crawls(folder: Path) -> list[int]:
    """The numbers of the crawls that have a journal in ``folder``."""
    return sorted(int(p.name[6:10]) for p in folder.glob("crawl-[0-9][0-9][0-9][0-9].journal.jsonl"))


def convert(folder: Path, db: sqlite3.Connection) -> bool:
    """Copy the journals and the history file into ``db`` (one transaction); False if there are none."""
    from rednote_crawl.config import queries_fingerprint

    numbers = journal_crawls(folder)
    history = folder / HISTORY
    if not numbers and not history.exists():
        return False
    db.execute("BEGIN IMMEDIATE")
    try:
        for crawl in numbers:
            _convert_crawl(db, crawl, journal_path(folder, crawl), queries_fingerprint)
        if history.exists():
            ids = history.read_text(encoding="utf-8").split()
            db.executemany(
                "INSERT OR IGNORE INTO seen (note_id, crawl, keyword) VALUES (?, ?, NULL)",
                [(note_id, HISTORY_CRAWL) for note_id in ids],
            )
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('converted_from', 'journals')")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    logger.info(
        "Job folder %s converted from journals (%d crawls) into the job database; the old files are kept",
        folder,
        len(numbers),
    )
    return True


def _convert_crawl(db: sqlite3.Connection, crawl: int, path: Path, fingerprint: Any) -> None:
    queries: dict[tuple[str, ...], int] = {}
    state: dict[str, Any] = {"run": None, "started": None}

    def query_id(key: list[str]) -> int:
        if not (isinstance(key, list) and len(key) == 4 and all(isinstance(k, str) for k in key)):
            raise ValueError(f"not a query: {key!r}")
        if tuple(key) not in queries:
            cursor = db.execute(
                "INSERT INTO queries (crawl, keyword, sort, note_type, note_time) VALUES (?, ?, ?, ?, ?)",
                (crawl, *key),
            )
            queries[tuple(key)] = cursor.lastrowid  # type: ignore[assignment]
        return queries[tuple(key)]

    damaged = 0
    for record in repair_jsonl(path, mend=False):
        db.execute("SAVEPOINT record")
        known = dict(queries)
        try:
            _convert_record(db, crawl, record, query_id, fingerprint, state)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, sqlite3.IntegrityError):
            db.execute("ROLLBACK TO record")  # a record that reads as something else: skipped, counted
            queries.clear()
            queries.update(known)
            damaged += 1
        db.execute("RELEASE record")
    damaged += _unreadable_lines(path)
    if state["started"] is None:  # a journal cut off before its first record: nothing of it counts
        db.execute("DELETE FROM queries WHERE crawl = ?", (crawl,))
    if damaged:
        logger.error(
            "The journal %s is damaged: %d records could not be read and were skipped; what they held is asked "
            "for again (the output files say which notes were delivered)",
            path,
            damaged,
        )
        from rednote_crawl.state.jobcheck import make_consistent

        make_consistent(db)


def _unreadable_lines(path: Path) -> int:
    """Whole lines of a journal (newline last) that are not JSON objects: damage, not a cut-off end."""
    try:
        data = path.read_bytes()
    except OSError:
        return 0
    bad = 0
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        try:
            if not isinstance(orjson.loads(line), dict):
                bad += 1
        except orjson.JSONDecodeError:
            bad += 1
    return bad


def _convert_record(
    db: sqlite3.Connection,
    crawl: int,
    record: dict[str, Any],
    query_id: Callable[[Any], int],
    fingerprint: Callable[[Any], str],
    state: dict[str, Any],
) -> None:
    """One journal record into the database; raises (KeyError, TypeError ...) on one that reads as something else."""
    event = record.get("e")
    run = state["run"]
    if event == "crawl":
        state["started"] = started = record["at"]
        covers = record.get("queries_fingerprint") or (fingerprint(record["queries"]) if "queries" in record else None)
        db.execute(
            "INSERT INTO crawls (crawl, started, fingerprint, outputs) VALUES (?, ?, ?, ?)",
            (crawl, started, covers, orjson.dumps(record.get("outputs", {})).decode()),
        )
    elif event == "run":
        state["run"] = db.execute("INSERT INTO runs (crawl, started) VALUES (?, ?)", (crawl, record["at"])).lastrowid
    elif event == "end" and run is not None:
        complete = bool(record.get("complete"))
        db.execute(
            "UPDATE runs SET ended = ?, reason = ?, calls = ?, exit_status = ?, complete = ? WHERE run = ?",
            (record.get("at"), record.get("reason"), record.get("calls"), 0 if complete else None, complete, run),
        )
        if complete:
            db.execute("UPDATE crawls SET complete = 1 WHERE crawl = ?", (crawl,))
    elif event == "page":
        key, page, items = record["q"], record["p"], record.get("items", [])
        if not isinstance(page, int) or not isinstance(items, list):
            raise ValueError("not a page")
        if not all(isinstance(item, dict) and isinstance(item.get("note_id"), str) for item in items):
            raise ValueError("not a page's notes")
        qid = query_id(key)
        db.execute(
            "UPDATE queries SET last_page = max(last_page, ?), end_reason = coalesce(?, end_reason), "
            "next_rank = CASE WHEN ? >= last_page THEN ? ELSE next_rank END WHERE id = ?",
            (page, record.get("end"), page, record.get("next_rank", 0), qid),
        )
        db.execute(
            "INSERT OR REPLACE INTO pages (query, page, run, notes) VALUES (?, ?, ?, ?)",
            (qid, page, run or 0, len(items)),
        )
        db.execute("DELETE FROM notes WHERE query = ? AND page = ?", (qid, page))
        db.executemany(
            "INSERT INTO notes (query, page, position, note_id, item) VALUES (?, ?, ?, ?, ?)",
            [(qid, page, n, item["note_id"], orjson.dumps(item)) for n, item in enumerate(items)],
        )
        db.executemany(
            "INSERT OR IGNORE INTO seen (note_id, crawl, keyword) VALUES (?, ?, ?)",
            [(item["note_id"], crawl, key[0]) for item in items],
        )
    elif event == "rejected":
        db.execute("UPDATE queries SET rejected = 1 WHERE id = ?", (query_id(record["q"]),))
    elif event == "failed":
        db.execute(
            "INSERT INTO failed (query, page, run, reason) VALUES (?, ?, ?, ?)",
            (query_id(record["q"]), record["p"], run or 0, record.get("why", "")),
        )
