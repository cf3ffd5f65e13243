"""What the job database's start-up check costs: ``PRAGMA quick_check`` on a big job.

    python -m bench.quickcheck [--seen 10000000] [--notes 1000000] [--folder DIR]

Builds a job whose complete crawl found ``--seen`` notes (ids of the API's form), and whose
notes table holds ``--notes`` of them with real-size output items (the sandbox's notes through
the real mapping), then times ``PRAGMA quick_check`` (cold: the file's pages dropped from the
OS cache when possible, and warm) and the cheap size check every start makes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import orjson

from bench.jobdb import PAGE_NOTES, fill_seen, page_items, sandbox_notes
from rednote_crawl.state.jobcheck import looks_cut, quick_check
from rednote_crawl.state.jobfolder import DATABASE, JobFolder


def fill_notes(folder: Path, count: int) -> None:
    job = JobFolder.take(folder)
    assert job is not None
    items = page_items(sandbox_notes(PAGE_NOTES), 1)
    blobs = [orjson.dumps(item) for item in items]
    job.db.execute(
        "INSERT INTO queries (id, crawl, keyword, sort, note_type, note_time) VALUES (1, 1, 'old', 'general', '_0', 'any')"
    )
    batch = 5_000  # pages
    for first in range(0, count // PAGE_NOTES, batch):
        job.db.execute("BEGIN")
        for page in range(first + 1, min(count // PAGE_NOTES, first + batch) + 1):
            job.db.execute("INSERT INTO pages (query, page, run, notes) VALUES (1, ?, 1, ?)", (page, PAGE_NOTES))
            job.db.executemany(
                "INSERT INTO notes (query, page, position, note_id, item) VALUES (1, ?, ?, ?, ?)",
                [(page, n, f"{page * PAGE_NOTES + n:024x}", blob) for n, blob in enumerate(blobs)],
            )
        job.db.execute("COMMIT")
    job.close()


def drop_cache(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return True
    except (OSError, AttributeError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seen", type=int, default=10_000_000)
    parser.add_argument("--notes", type=int, default=1_000_000)
    parser.add_argument("--folder", type=Path, default=None, help="keep (and reuse) the job here")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="quickcheck-"))
    path = folder / DATABASE
    if not path.exists():
        began = time.monotonic()
        fill_seen(folder, args.seen)
        fill_notes(folder, args.notes)
        print(f"built {path} in {time.monotonic() - began:.0f} s")
    size = path.stat().st_size
    print(f"{path}: {size / 2**20:.0f} MiB, {args.seen:,} seen notes, {args.notes:,} notes with items")
    began = time.perf_counter()
    cut = looks_cut(path)
    print(f"size check (every start): {(time.perf_counter() - began) * 1e3:.2f} ms, cut: {cut}")
    for kind in ("cold", "warm"):
        if kind == "cold" and not drop_cache(path):
            continue
        began = time.perf_counter()
        problems = quick_check(path)
        print(f"PRAGMA quick_check ({kind} cache): {time.perf_counter() - began:.1f} s, problems: {problems or 'none'}")


if __name__ == "__main__":
    main()
