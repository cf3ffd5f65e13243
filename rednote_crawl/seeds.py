"""Keyword seed files: one keyword a line, UTF-8 with or without BOM, LF or CRLF."""

from __future__ import annotations

from pathlib import Path


class SeedFileError(ValueError):
    """A keyword file that cannot be used; the message names the file and the fix."""


def read_keywords(path: str | Path) -> list[str]:
    """Keywords in file order, each once; blank lines and ``#`` comments are ignored.

    Whitespace around a keyword is trimmed; the keyword itself is kept exactly
    as written (spaces, ``&``, ``+``, ``%``, ``?``, quotes and Chinese text).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SeedFileError(
            f"keyword file {str(path)!r} does not exist; pass -a keywords=PATH to a file with one keyword per line"
        ) from None
    except IsADirectoryError:
        raise SeedFileError(
            f"keyword file {str(path)!r} is a directory; pass -a keywords=PATH to a file with one keyword per line"
        ) from None
    except OSError as exc:
        raise SeedFileError(
            f"keyword file {str(path)!r} cannot be read ({exc.strerror}); check its permissions"
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeedFileError(
            f"keyword file {str(path)!r} is not UTF-8 (bad byte at offset {exc.start}); save it as UTF-8"
        ) from None
    keywords: dict[str, None] = {}
    for line in text.splitlines():
        keyword = line.strip()
        if keyword and not keyword.startswith("#"):
            keywords.setdefault(keyword, None)
    if not keywords:
        raise SeedFileError(
            f"keyword file {str(path)!r} has no keywords (only blank lines or # comments); add one keyword per line"
        )
    return list(keywords)
