"""The job database checked at start, and a damaged one repaired (``jobfolder.JobFolder.take``).

A kill, a failing disk or a bad copy can leave ``job.db`` damaged ("database disk image is
malformed"). Every start reads its header (100 bytes: is the file shorter than it says?); after a
run that did not end cleanly (its write-ahead log ``job.db-wal`` left behind, or a database error
met by the last run, which leaves ``job.db.check``) it also runs ``PRAGMA quick_check``, which reads
the whole file (docs/benchmarks.md: seconds to minutes on a job of ten million notes, so not at
every start). A database found damaged then, or on opening, is renamed ``job.db.damaged-<UTC
time>`` (its log with it) and a new one is made from what still reads (Python's ``sqlite3`` has no
``.recover``): every row of every table that reads back, scanned from both ends of each table;
then the output files, which say which notes were delivered, put back the seen notes lost. A page
is kept only with all its notes, and a query goes on from its first lost page: only what the
damaged file had lost is paid for again.

Plain Python (stdlib ``sqlite3``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from rednote_crawl.state.outputs import repair_jsonl

logger = logging.getLogger(__name__)

HEADER = b"SQLite format 3\x00"
CHECK_MARK = "job.db.check"  # left by a run that met a database error: the next start checks
# SQLite's result codes for a damaged file (sqlite3.Error.sqlite_errorcode, primary code).
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26
# Each table, the columns copied and the key it is scanned in.
TABLES = {
    "meta": ("key, value", "key"),
    "crawls": ("crawl, started, fingerprint, outputs, complete", "crawl"),
    "runs": ("run, crawl, started, ended, reason, calls, exit_status, complete", "run"),
    "queries": ("id, crawl, keyword, sort, note_type, note_time, last_page, next_rank, end_reason, rejected", "id"),
    "pages": ("query, page, run, notes, calls", "query, page"),
    "notes": ("query, page, position, note_id, item", "query, page, position"),
    "seen": ("note_id, crawl, keyword", "note_id"),
    "failed": ("rowid, query, page, run, reason, calls", "rowid"),
}
_CRAWL_FILE = re.compile(r"crawl-(\d{4,})\.jsonl")


def damaged_error(exc: BaseException) -> bool:
    """Whether an SQLite error says the file is damaged (not locked, full or unwritable)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def mark_for_check(folder: Path) -> None:
    """The next start checks the database (a run met an error in it)."""
    with contextlib.suppress(OSError):  # an unwritable folder: the start's own checks say so
        (folder / CHECK_MARK).touch()


def looks_cut(path: Path) -> bool:
    """Whether the file is shorter than its own header says (a cut copy, a disk that lost its end), or
    is no SQLite database at all. Reads 100 bytes: cheap enough for every start."""
    try:
        with path.open("rb") as file:
            header = file.read(100)
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size == 0:
        return False  # a database not written yet
    if len(header) < 100 or not header.startswith(HEADER):
        return True
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages = struct.unpack(">I", header[28:32])[0]
    counter_valid = header[24:28] == header[92:96]  # the page count is only valid when these agree
    return bool(counter_valid and pages and pages * page_size > size)


def quick_check(path: Path) -> list[str]:
    """``PRAGMA quick_check`` of the database at ``path``: [] when it is sound, else what SQLite says."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        return [str(exc)]
    try:
        rows = [row[0] for row in db.execute("PRAGMA quick_check")]
    except sqlite3.Error as exc:
        return [str(exc)]
    finally:
        db.close()
    return [] if rows == ["ok"] else rows


def check_at_start(path: Path) -> list[str]:
    """What is wrong with the job database, found before it is opened ([]: nothing found)."""
    if not path.exists():
        return []
    if looks_cut(path):
        return [f"the file is shorter than its header says ({path.stat().st_size} bytes), or is no database"]
    wal = path.with_name(path.name + "-wal")
    mark = path.parent / CHECK_MARK
    why = "the last run did not end cleanly" if wal.exists() and wal.stat().st_size else None
    why = why or ("the last run met an error in it" if mark.exists() else None)
    if why is None:
        return []
    began = time.monotonic()
    logger.info("Checking the job database %s (%s)", path, why)
    problems = quick_check(path)
    logger.info("Checked the job database in %.1f s: %s", time.monotonic() - began, "damaged" if problems else "sound")
    if not problems:
        mark.unlink(missing_ok=True)
    return problems


def set_aside(path: Path) -> Path:
    """Rename a damaged database (and its log) out of the way; returns its new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    damaged = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, f"{damaged}{suffix}")
    (path.parent / CHECK_MARK).unlink(missing_ok=True)
    return damaged


@dataclass
class Recovered:
    rows: dict[str, int]  # rows read back, per table
    pages_dropped: int = 0  # pages lost, or read back without all their notes or their query: paid again
    seen_from_outputs: int = 0  # seen notes put back from the output files

    def describe(self) -> str:
        counts = ", ".join(
            f"{n} {table}" for table, n in self.rows.items() if table in ("crawls", "pages", "notes", "seen")
        )
        return (
            f"read back {counts}; {self.seen_from_outputs} notes found again in the output files; "
            f"{self.pages_dropped} pages lost, asked for again"
        )


def recover(damaged: Path, db: sqlite3.Connection, folder: Path) -> Recovered:
    """Copy what reads back from the ``damaged`` database into the new, empty ``db`` (one transaction)."""
    rows: dict[str, int] = {}
    try:
        source = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True, isolation_level=None)
        # SQLite refuses a file shorter than its header says, unless told to read what there is.
        source.execute("PRAGMA writable_schema = ON")
    except sqlite3.Error:
        source = None
    db.execute("BEGIN IMMEDIATE")
    try:
        for table, (columns, key) in TABLES.items():
            found = _readable_rows(source, table, columns, key) if source is not None else []
            if table == "meta":
                found = [row for row in found if row[0] != "schema"]
            if table == "notes":  # a note that reads back as something else is lost too
                found = [row for row in found if _an_item(row[4])]
            marks = ",".join("?" * len(columns.split(",")))
            db.executemany(f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({marks})", found)
            rows[table] = len(found)
        result = Recovered(rows)
        result.pages_dropped = make_consistent(db)
        result.seen_from_outputs = _seen_from_outputs(db, folder)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    finally:
        if source is not None:
            source.close()
    return result


def _readable_rows(source: sqlite3.Connection, table: str, columns: str, key: str) -> list[tuple]:
    """Every row of ``table`` that reads back: scanned in key order up to the first damaged part, then
    from the other end back to it."""
    found: dict[tuple, tuple] = {}
    width = len(key.split(","))
    for order in ("ASC", "DESC"):
        by = ", ".join(f"{k.strip()} {order}" for k in key.split(","))
        try:
            for row in source.execute(f"SELECT {columns} FROM {table} ORDER BY {by}"):
                if row[:width] in found:
                    break  # the two scans met: the table reads whole
                found[row[:width]] = row
        except sqlite3.Error:
            continue  # the damaged part: the other scan comes from the other end
    return list(found.values())


def _an_item(blob: object) -> bool:
    try:
        return isinstance(blob, bytes) and isinstance(orjson.loads(blob), dict)
    except orjson.JSONDecodeError:
        return False


def make_consistent(db: sqlite3.Connection) -> int:
    """A page counts only with all its notes and its query; a query goes on from its first missing page.
    Returns the pages dropped (they are paid for again)."""
    dropped = db.execute(
        "SELECT COUNT(*) FROM pages p WHERE NOT EXISTS (SELECT 1 FROM queries q WHERE q.id = p.query)"
    ).fetchone()[0]  # their query is lost: it starts again from page 1
    db.execute(
        "DELETE FROM pages WHERE NOT EXISTS (SELECT 1 FROM queries q WHERE q.id = pages.query) "
        "OR notes != (SELECT COUNT(*) FROM notes n WHERE n.query = pages.query AND n.page = pages.page)"
    )
    for query_id, last_page in db.execute("SELECT id, last_page FROM queries").fetchall():
        pages = [row[0] for row in db.execute("SELECT page FROM pages WHERE query = ? ORDER BY page", (query_id,))]
        whole = 0
        while whole < len(pages) and pages[whole] == whole + 1:
            whole += 1  # pages 1..whole are all there
        if whole < last_page:  # a lost page: the query goes on from it (the ranks after it are approximate)
            dropped += last_page - whole
            db.execute("DELETE FROM pages WHERE query = ? AND page > ?", (query_id, whole))
            db.execute(
                "UPDATE queries SET last_page = ?, end_reason = NULL, "
                "next_rank = (SELECT COALESCE(SUM(notes), 0) FROM pages WHERE query = ?) WHERE id = ?",
                (whole, query_id, query_id),
            )
    db.execute(
        "DELETE FROM notes WHERE NOT EXISTS (SELECT 1 FROM pages p WHERE p.query = notes.query AND p.page = notes.page)"
    )
    # A crawl the database lost but whose runs, queries or seen notes read back.
    db.execute(
        "INSERT OR IGNORE INTO crawls (crawl, started, complete) "
        "SELECT crawl, COALESCE(MIN(started), '1970-01-01T00:00:00Z'), MAX(complete) FROM runs GROUP BY crawl"
    )
    for table in ("queries", "seen"):
        db.execute(
            f"INSERT OR IGNORE INTO crawls (crawl, started) SELECT DISTINCT crawl, '1970-01-01T00:00:00Z' FROM {table} "
            "WHERE crawl > 0"
        )
    db.execute(
        "INSERT OR IGNORE INTO seen (note_id, crawl, keyword) "
        "SELECT n.note_id, q.crawl, q.keyword FROM notes n JOIN queries q ON q.id = n.query ORDER BY q.crawl"
    )
    return dropped


def _seen_from_outputs(db: sqlite3.Connection, folder: Path) -> int:
    """Notes delivered to the job's output files that the seen table lost: they are not delivered again."""
    outputs: dict[Path, int] = {}
    for path in folder.glob("crawl-*.jsonl"):
        if (match := _CRAWL_FILE.fullmatch(path.name)) is not None:
            outputs[path] = int(match.group(1))
            db.execute(
                "INSERT OR IGNORE INTO crawls (crawl, started) VALUES (?, '1970-01-01T00:00:00Z')", (outputs[path],)
            )
    for crawl, files in db.execute("SELECT crawl, outputs FROM crawls").fetchall():
        try:
            named = orjson.loads(files or "{}")
        except orjson.JSONDecodeError:
            continue
        for name in named if isinstance(named, dict) else ():
            outputs.setdefault(Path(name), crawl)
    before = db.total_changes
    for path, crawl in sorted(outputs.items(), key=lambda pair: pair[1]):
        rows = [
            (record["note_id"], crawl, record.get("keyword") if isinstance(record.get("keyword"), str) else None)
            for record in repair_jsonl(path, mend=False)
            if isinstance(record.get("note_id"), str)
        ]
        db.executemany("INSERT OR IGNORE INTO seen (note_id, crawl, keyword) VALUES (?, ?, ?)", rows)
    return db.total_changes - before
