"""Whole files: the one way the project writes a file whole (an export, a workbook, a plot, a
report, the token's limits). A reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def whole_file(path: str | Path) -> Iterator[IO[bytes]]:
    """``with whole_file(path) as file: file.write(...)``: written into a temporary file in the same
    folder (created if missing), synced, then renamed over ``path`` (``os.replace``, the old file's
    permissions kept), so that a kill or an error leaves the old file or the new one. Standard
    output, a pipe or a device (anything but a regular file) is written to as a stream."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_file():
        with target.open("wb") as stream:
            yield stream
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask()
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
