"""The job folder (``JUSTONEAPI_JOB_DIR``): one SQLite database, ``job.db``, that makes a crawl
resumable and keeps the job's history.

A job is a series of crawls; a crawl is one or more runs of the same command. A run that ends
with exit status 0 completes its crawl, and the next start begins a new one (a daily run); any
other end (a kill, a stop, failed pages) leaves the crawl open, and the next start carries it on.

Every page the API answered is committed with its notes in one transaction before the notes go on
to the output (WAL, ``synchronous=FULL``: the commit survives a kill and a reboot). From it a run
knows, for every query of the open crawl, the last page paid for and whether the query is done,
and puts back into the output any note a kill lost on its way there. ``seen`` holds every note id
the job ever found, with the crawl and keyword that found it first: earlier crawls' notes are
looked up there, one query a page, never loaded into memory, and the per-keyword history of
every crawl (``scrapy report DIR --days N``) comes from it.

Plain Python (stdlib ``sqlite3``): ``local.LocalState`` uses it. Job folders of the earlier
format (JSON Lines journals) are converted on first use (``journals.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from rednote_crawl import api
from rednote_crawl.state import StorageError, jobcheck
from rednote_crawl.state.figures import CrawlFigures, KeywordFigures, QueryProgress
from rednote_crawl.state.journals import convert

logger = logging.getLogger(__name__)

DATABASE = "job.db"
SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS crawls (
    crawl INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    fingerprint TEXT,                    -- which queries it covers (queries_fingerprint)
    outputs TEXT NOT NULL DEFAULT '{}',  -- JSON: output file -> where this crawl's lines begin
    complete INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY AUTOINCREMENT,
    crawl INTEGER NOT NULL,
    started TEXT NOT NULL,
    ended TEXT,
    reason TEXT,
    calls INTEGER,
    exit_status INTEGER,
    complete INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY,
    crawl INTEGER NOT NULL,
    keyword TEXT NOT NULL, sort TEXT NOT NULL, note_type TEXT NOT NULL, note_time TEXT NOT NULL,
    last_page INTEGER NOT NULL DEFAULT 0,  -- the last page paid for
    next_rank INTEGER NOT NULL DEFAULT 0,  -- the rank offset of the page after it
    end_reason TEXT,                       -- why the query ended: empty_page, max_pages, since
    rejected INTEGER NOT NULL DEFAULT 0,
    UNIQUE (crawl, keyword, sort, note_type, note_time)
);
CREATE TABLE IF NOT EXISTS pages (
    query INTEGER NOT NULL, page INTEGER NOT NULL, run INTEGER NOT NULL, notes INTEGER NOT NULL,
    calls INTEGER NOT NULL DEFAULT 1,      -- the calls it took: retries and rate-limited tries included
    PRIMARY KEY (query, page)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notes (
    query INTEGER NOT NULL, page INTEGER NOT NULL, position INTEGER NOT NULL,
    note_id TEXT NOT NULL, item BLOB NOT NULL,
    PRIMARY KEY (query, page, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (
    note_id TEXT PRIMARY KEY, crawl INTEGER NOT NULL, keyword TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_by_crawl ON seen (crawl, keyword);
CREATE TABLE IF NOT EXISTS details (        -- note detail answers (-a details=), stored before the note goes on
    crawl INTEGER NOT NULL, note_id TEXT NOT NULL, run INTEGER NOT NULL,
    status TEXT NOT NULL,                  -- api.Details: fetched, failed, note_gone
    detail BLOB,                           -- the API's note (fetched only)
    PRIMARY KEY (crawl, note_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failed (
    query INTEGER NOT NULL, page INTEGER NOT NULL, run INTEGER NOT NULL, reason TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 1
);
"""
# SQLite's page cache (KiB). A crawl's connection keeps SQLite's default: a lookup of earlier notes
# reads one leaf page at random among the job's, which no cache a crawl can afford holds, and a larger
# cache costs CPU on every page read and memory (docs/benchmarks.md, "Lookup of earlier notes").
# Reports (read()) keep 32 MiB.
CRAWL_CACHE_KIB = 2_000
READ_CACHE_KIB = 32_768


def query_key(query: api.Query) -> tuple[str, str, str, str]:
    return (query.keyword, query.sort, query.note_type, query.note_time)


class JobFolder:
    def __init__(self, folder: Path, db: sqlite3.Connection, writable: bool) -> None:
        self.folder = folder
        self.path = folder / DATABASE
        self.db = db
        self.writable = writable
        self.run: int | None = None
        self._queries: dict[tuple[str, str, str, str], int] = {}
        self._lock_fd: int | None = None
        self._load()

    # --- opening --------------------------------------------------------------------------

    @classmethod
    def take(cls, folder: str | Path) -> JobFolder | None:
        """Lock the folder for this process (released when it ends) and open its database;
        None when another process holds it. Converts a job folder of the earlier format."""
        path = Path(folder).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            job = cls._open(path)
        except BaseException:
            os.close(fd)
            raise
        job._lock_fd = fd  # kept open: the lock lasts as long as the process
        return job

    @classmethod
    def _open(cls, path: Path) -> JobFolder:
        """Open the database for writing; a damaged one (checked at start: jobcheck.py, or failing to
        open) is set aside and a new one made from what still reads."""
        database = path / DATABASE
        problems = jobcheck.check_at_start(database)
        for attempt in (1, 2):
            damaged = None
            if problems:
                damaged = jobcheck.set_aside(database)
                logger.error(
                    "The job database %s is damaged (%s); set aside as %s, a new one is made from what still reads",
                    database,
                    "; ".join(problems[:3]),
                    damaged.name,
                )
            db = None
            try:
                db = _connect(database)
                if damaged is not None:
                    recovered = jobcheck.recover(damaged, db, path)
                    logger.warning(
                        "Job %s repaired: %s; the same command carries the crawl on", path, recovered.describe()
                    )
                # Not "the database is new": a conversion cut short by a kill leaves an empty database
                # behind (the conversion is one transaction), and the next start must convert again.
                if _unconverted(db):
                    convert(path, db)
                return cls(path, db, writable=True)
            except sqlite3.DatabaseError as exc:
                if db is not None:
                    db.close()
                if attempt == 2 or not jobcheck.damaged_error(exc):
                    raise
                problems = [str(exc)]
        raise AssertionError("not reached")

    @staticmethod
    def lock_is_free(folder: str | Path) -> bool:
        """Whether no crawl holds the folder, found without taking it for longer than a moment
        and without creating anything (a folder or lock file that does not exist is free)."""
        lock = Path(folder).expanduser() / ".lock"
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # closing the descriptor releases a lock it took
        return True

    @classmethod
    def read(cls, folder: str | Path) -> JobFolder:
        """Read without writing anything (a report, a dry run): a folder of the earlier format is
        converted in memory, and a folder without a database reads as empty."""
        path = Path(folder).expanduser()
        db = None
        if (path / DATABASE).exists():
            db = sqlite3.connect(f"file:{path / DATABASE}?mode=ro", uri=True, isolation_level=None)
            db.execute(f"PRAGMA cache_size = -{READ_CACHE_KIB}")
            if _unconverted(db):  # a conversion cut short: read it as the next start will convert it
                db.close()
                db = None
        if db is None:
            db = sqlite3.connect(":memory:", isolation_level=None)
            db.executescript(SCHEMA)
            if path.is_dir():
                convert(path, db)
        return cls(path, db, writable=False)

    def close(self) -> None:
        """A writer leaves the database in rollback-journal mode: readers (a report, a dry run) then
        open it without creating the WAL's side files. The next writer turns WAL on again."""
        if self.writable:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("PRAGMA journal_mode = DELETE")
        self.db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the folder is free for the next crawl
            self._lock_fd = None

    def _load(self) -> None:
        row = self.db.execute("SELECT crawl, started, fingerprint, outputs, complete FROM crawls ORDER BY crawl DESC")
        last = row.fetchone()
        self.crawl = last[0] if last else 0  # the last crawl's number (0: none yet)
        self.resuming = bool(last) and not last[4]  # the last crawl is open: the next run carries it on
        self.crawl_started: str | None = last[1] if last else None
        self.fingerprint: str | None = last[2] if self.resuming else None
        self.outputs: dict[str, int] = orjson.loads(last[3]) if self.resuming else {}
        before = row.fetchone()
        # -a since=last: when the crawl before the one the next run works on began
        self.previous_crawl_started: str | None = (before[1] if before else None) if self.resuming else self.crawl_started
        self.exported: set[str] = set()  # notes already in the open crawl's output (read back from it)

    @property
    def output(self) -> Path:
        """The default output file of the crawl the next run works on."""
        return self.folder / f"crawl-{self.crawl if self.resuming else self.crawl + 1:04d}.jsonl"

    @property
    def current(self) -> int:
        """The number of the crawl the next run (or this one) works on."""
        return self.crawl if self.resuming else self.crawl + 1

    # --- the open crawl -------------------------------------------------------------------

    def progress(self, query: api.Query) -> QueryProgress | None:
        if not self.resuming:
            return None
        row = self.db.execute(
            "SELECT id, last_page, next_rank, end_reason, rejected FROM queries "
            "WHERE crawl = ? AND keyword = ? AND sort = ? AND note_type = ? AND note_time = ?",
            (self.crawl, *query_key(query)),
        ).fetchone()
        return QueryProgress(row[0], row[1], row[2], row[3], bool(row[4])) if row else None

    def items(self, progress: QueryProgress) -> Iterator[dict[str, Any]]:
        """The notes of a query's paid pages, in page order."""
        for (item,) in self.db.execute(
            "SELECT item FROM notes WHERE query = ? ORDER BY page, position", (progress.id,)
        ):
            yield orjson.loads(item)

    def pages_paid(self, progress: QueryProgress) -> int:
        return self.db.execute("SELECT COUNT(*) FROM pages WHERE query = ?", (progress.id,)).fetchone()[0]

    def earlier(self, note_ids: list[str]) -> set[str]:
        """The ids among ``note_ids`` that an earlier crawl of the job found (one query)."""
        if not note_ids:
            return set()
        marks = ",".join("?" * len(note_ids))
        rows = self.db.execute(
            f"SELECT note_id FROM seen WHERE note_id IN ({marks}) AND crawl < ?", (*note_ids, self.current)
        )
        return {row[0] for row in rows}

    def detail(self, note_id: str) -> tuple[str, dict[str, Any] | None] | None:
        """The detail call of a note this crawl already paid for: (status, the API's note), or None."""
        row = self.db.execute(
            "SELECT status, detail FROM details WHERE crawl = ? AND note_id = ?", (self.current, note_id)
        ).fetchone()
        if row is None:
            return None
        return row[0], orjson.loads(row[1]) if row[1] is not None else None

    def _details_of(self, crawl: int | None) -> dict[str, tuple[str, bytes | None]]:
        sql = "SELECT note_id, status, detail FROM details" + (" WHERE crawl = ?" if crawl is not None else "")
        return {n: (status, d) for n, status, d in self.db.execute(sql, (crawl,) if crawl is not None else ())}

    # --- writing ------------------------------------------------------------------------------

    def record_detail(self, note_id: str, status: str, detail: dict[str, Any] | None) -> None:
        """A detail call's end (its answer, when it came), before the note goes on."""
        with self._write():
            self.db.execute(
                "INSERT OR REPLACE INTO details (crawl, note_id, run, status, detail) VALUES (?, ?, ?, ?, ?)",
                (self.crawl, note_id, self.run, status, orjson.dumps(detail) if detail is not None else None),
            )

    def begin_run(self, at: str, fingerprint: str, outputs: dict[str, int]) -> int:
        """Begin a run: of a new crawl, unless the last one is open. Returns the run's number in its crawl."""
        with self._write():
            if not self.resuming:
                self.crawl += 1
                self.db.execute(
                    "INSERT INTO crawls (crawl, started, fingerprint, outputs) VALUES (?, ?, ?, ?)",
                    (self.crawl, at, fingerprint, orjson.dumps(outputs).decode()),
                )
                self.previous_crawl_started, self.crawl_started = self.crawl_started, at
                self.resuming, self.fingerprint, self.outputs = True, fingerprint, outputs
            cursor = self.db.execute("INSERT INTO runs (crawl, started) VALUES (?, ?)", (self.crawl, at))
            self.run = cursor.lastrowid
        return self.db.execute("SELECT COUNT(*) FROM runs WHERE crawl = ?", (self.crawl,)).fetchone()[0]

    def end_run(self, reason: str, at: str, calls: int, exit_status: int) -> None:
        complete = exit_status == 0
        with self._write():
            self.db.execute(
                "UPDATE runs SET ended = ?, reason = ?, calls = ?, exit_status = ?, complete = ? WHERE run = ?",
                (at, reason, calls, exit_status, complete, self.run),
            )
            if complete:
                self.db.execute("UPDATE crawls SET complete = 1 WHERE crawl = ?", (self.crawl,))
        if complete:  # the next run begins a new crawl
            self.resuming, self.fingerprint, self.outputs = False, None, {}
            self.previous_crawl_started = self.crawl_started
            self._queries.clear()

    def record_page(
        self, query: api.Query, page: int, items: list[dict[str, Any]], end: str | None, next_rank: int, calls: int = 1
    ) -> None:
        """A paid page and its notes, in one transaction (a page paid again replaces itself)."""
        with self._write():
            query_id = self._query_id(query)
            self.db.execute(
                "UPDATE queries SET last_page = max(last_page, ?), end_reason = coalesce(?, end_reason), "
                "next_rank = CASE WHEN ? >= last_page THEN ? ELSE next_rank END WHERE id = ?",
                (page, end, page, next_rank, query_id),
            )
            self.db.execute(
                "INSERT OR REPLACE INTO pages (query, page, run, notes, calls) VALUES (?, ?, ?, ?, ?)",
                (query_id, page, self.run, len(items), calls),
            )
            self.db.execute("DELETE FROM notes WHERE query = ? AND page = ?", (query_id, page))
            self.db.executemany(
                "INSERT INTO notes (query, page, position, note_id, item) VALUES (?, ?, ?, ?, ?)",
                [(query_id, page, n, item["note_id"], orjson.dumps(item)) for n, item in enumerate(items)],
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO seen (note_id, crawl, keyword) VALUES (?, ?, ?)",
                [(item["note_id"], self.crawl, query.keyword) for item in items],
            )

    def record_rejected(self, query: api.Query, page: int) -> None:
        with self._write():
            self.db.execute("UPDATE queries SET rejected = 1 WHERE id = ?", (self._query_id(query),))

    def record_failed(self, query: api.Query, page: int, why: str, calls: int = 1) -> None:
        with self._write():
            self.db.execute(
                "INSERT INTO failed (query, page, run, reason, calls) VALUES (?, ?, ?, ?, ?)",
                (self._query_id(query), page, self.run, why, calls),
            )

    def _query_id(self, query: api.Query) -> int:
        key = query_key(query)
        query_id = self._queries.get(key)
        if query_id is None:
            self.db.execute(
                "INSERT OR IGNORE INTO queries (crawl, keyword, sort, note_type, note_time) VALUES (?, ?, ?, ?, ?)",
                (self.crawl, *key),
            )
            query_id = self.db.execute(
                "SELECT id FROM queries WHERE crawl = ? AND keyword = ? AND sort = ? AND note_type = ? AND note_time = ?",
                (self.crawl, *key),
            ).fetchone()[0]
            self._queries[key] = query_id
        return query_id

    def _write(self) -> _Transaction:
        assert self.writable, "a job folder opened with read() is not written"
        return _Transaction(self)

    # --- reports ----------------------------------------------------------------------------

    def keyword_figures(self, crawls: Iterable[int]) -> list[KeywordFigures]:
        """Pages, notes, new notes and failed pages per keyword, for each of ``crawls``."""
        figures = []
        for crawl in crawls:
            rows: dict[str, list[int]] = {}
            for keyword, pages, calls in self.db.execute(
                "SELECT q.keyword, COUNT(*), SUM(p.calls) FROM pages p JOIN queries q ON q.id = p.query WHERE q.crawl = ? "
                "GROUP BY q.keyword",
                (crawl,),
            ):
                row = rows.setdefault(keyword, [0, 0, 0, 0, 0])
                row[0], row[4] = pages, row[4] + calls
            for keyword, calls in self.db.execute(
                "SELECT q.keyword, SUM(f.calls) FROM failed f JOIN queries q ON q.id = f.query WHERE q.crawl = ? "
                "GROUP BY q.keyword",
                (crawl,),
            ):
                rows.setdefault(keyword, [0, 0, 0, 0, 0])[4] += calls
            for keyword, notes in self.db.execute(
                "SELECT q.keyword, COUNT(DISTINCT n.note_id) FROM notes n JOIN queries q ON q.id = n.query "
                "WHERE q.crawl = ? GROUP BY q.keyword",
                (crawl,),
            ):
                rows.setdefault(keyword, [0, 0, 0, 0, 0])[1] = notes
            for keyword, new in self.db.execute(
                "SELECT keyword, COUNT(*) FROM seen WHERE crawl = ? GROUP BY keyword", (crawl,)
            ):
                rows.setdefault(keyword, [0, 0, 0, 0, 0])[2] = new
            for keyword, failed in self.db.execute(
                "SELECT q.keyword, COUNT(DISTINCT f.page) FROM failed f JOIN queries q ON q.id = f.query "
                "WHERE q.crawl = ? AND NOT EXISTS (SELECT 1 FROM pages p WHERE p.query = f.query AND p.page = f.page) "
                "GROUP BY q.keyword",
                (crawl,),
            ):
                rows.setdefault(keyword, [0, 0, 0, 0, 0])[3] = failed
            figures += [KeywordFigures(crawl, k, *v) for k, v in rows.items() if k is not None]
        return figures

    def history(self, crawls: int) -> list[list[KeywordFigures]]:
        """The per-keyword figures of the job's last ``crawls`` crawls (the open one included), oldest first."""
        last = self.crawl
        return [self.keyword_figures([crawl]) for crawl in range(max(1, last - crawls + 1), last + 1)]

    def query_counts(self, max_pages: int) -> tuple[int, int]:
        """(done, started) queries of the open crawl."""
        done, started = self.db.execute(
            "SELECT COALESCE(SUM(rejected OR end_reason IN ('empty_page', 'since') OR last_page >= ?), 0), COUNT(*) "
            "FROM queries WHERE crawl = ?",
            (max_pages, self.crawl),
        ).fetchone()
        return done, started

    def crawl_figures(self, crawl: int) -> CrawlFigures:
        details = dict(self.db.execute("SELECT status, COUNT(*) FROM details WHERE crawl = ? GROUP BY status", (crawl,)))
        return CrawlFigures(
            crawl, self.crawl_runs(crawl), self.keyword_figures([crawl]), self.distinct_notes(crawl), self.folder, details
        )

    def distinct_notes(self, crawl: int) -> int:
        return self.db.execute(
            "SELECT COUNT(DISTINCT n.note_id) FROM notes n JOIN queries q ON q.id = n.query WHERE q.crawl = ?", (crawl,)
        ).fetchone()[0]

    def crawl_runs(self, crawl: int) -> list[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT started, ended, reason, calls, exit_status, complete FROM runs WHERE crawl = ? ORDER BY run",
            (crawl,),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def crawls_since(self, started: str) -> list[tuple[int, str]]:
        """(crawl, start time) of the crawls that began at ``started`` or later, oldest first."""
        return list(self.db.execute("SELECT crawl, started FROM crawls WHERE started >= ? ORDER BY crawl", (started,)))

    def export(self, crawl: int | None, first_found: bool = False) -> Iterator[bytes]:
        """Each note of a crawl (or of every crawl) once, as an output line, in the order found.

        ``first_found``: only the notes no earlier crawl found (what a crawl's output holds with
        ``JUSTONEAPI_SEEN_NOTES=skip``)."""
        sql = (
            "SELECT n.note_id, n.item FROM notes n JOIN queries q ON q.id = n.query"
            + (" JOIN seen s ON s.note_id = n.note_id AND s.crawl = q.crawl" if first_found else "")
            + (" WHERE q.crawl = ?" if crawl is not None else "")
            + " ORDER BY q.crawl, q.id, n.page, n.position"
        )
        given: set[str] = set()
        details = self._details_of(crawl)
        for note_id, item in self.db.execute(sql, (crawl,) if crawl is not None else ()):
            if note_id not in given:
                given.add(note_id)
                if note_id in details:  # the note as it went out: with its details, or why not
                    status, detail = details[note_id]
                    merged = api.merge_details(orjson.loads(item), orjson.loads(detail) if detail else None, status)
                    yield orjson.dumps(merged)
                else:
                    yield bytes(item)


class _Transaction:
    """``with``: one immediate transaction; any SQLite failure becomes a ``StorageError`` naming the file."""

    def __init__(self, job: JobFolder) -> None:
        self.job = job

    def __enter__(self) -> None:
        try:
            self.job.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if jobcheck.damaged_error(exc):
                jobcheck.mark_for_check(self.job.folder)
            raise StorageError(f"cannot write the job database {self.job.path}: {exc}") from exc

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        db = self.job.db
        if kind is None:
            try:
                db.execute("COMMIT")
                return
            except sqlite3.Error as error:
                exc = error
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error) and jobcheck.damaged_error(exc):
            jobcheck.mark_for_check(self.job.folder)
        if isinstance(exc, sqlite3.Error | OSError):
            raise StorageError(f"cannot write the job database {self.job.path}: {exc}") from exc


def _unconverted(db: sqlite3.Connection) -> bool:
    """No crawl in the database and no conversion done: old journals, if any, are still to convert (a
    kill during the conversion, which is one transaction, leaves such a database behind)."""
    row = db.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM crawls) AND NOT EXISTS (SELECT 1 FROM meta WHERE key = 'converted_from')"
    ).fetchone()
    return bool(row[0])


def _connect(path: Path) -> sqlite3.Connection:
    """A connection for writing: WAL, and every commit synced to disk (it survives a reboot)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute(f"PRAGMA cache_size = -{CRAWL_CACHE_KIB}")
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
    return db
