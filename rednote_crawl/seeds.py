"""Keyword seed files: one keyword a line, UTF-8 with or without BOM, LF or CRLF.

A relative ``seeds/NAME`` that is not on disk is read from the package: the seed files ship
in it (rednote_crawl/seeds/, linked from seeds/), so they reach scrapyd hosts inside the egg.
"""

from __future__ import annotations

from importlib import resources
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
        if (bundled := _bundled(path)) is not None:
            return _parse(path, bundled)
        raise SeedFileError(
            f"keyword file {str(path)!r} does not exist; pass -a keywords=PATH to a file with one keyword per line, "
            "or the keywords themselves: -a keyword=海信,Nike"
        ) from None
    except IsADirectoryError:
        raise SeedFileError(
            f"keyword file {str(path)!r} is a directory; pass -a keywords=PATH to a file with one keyword per line"
        ) from None
    except OSError as exc:
        raise SeedFileError(
            f"keyword file {str(path)!r} cannot be read ({exc.strerror}); check its permissions"
        ) from None
    return _parse(path, raw)


def _bundled(path: Path) -> bytes | None:
    """``seeds/NAME`` as shipped in the package (and in the egg scrapyd runs), when not on disk."""
    if path.is_absolute() or path.parts[:1] != ("seeds",):
        return None
    resource = resources.files("rednote_crawl").joinpath(*path.parts)
    try:
        return resource.read_bytes() if resource.is_file() else None
    except OSError:
        return None


def parse_inline(raw: str) -> list[str]:
    """``-a keyword=海信,Nike``: keywords on the command line, comma-separated."""
    keywords = [k.strip() for k in raw.split(",") if k.strip()]
    if not keywords:
        raise SeedFileError("keyword= has no keywords; pass -a keyword=海信,Nike (comma-separated)")
    return list(dict.fromkeys(keywords))


def _parse(path: Path, raw: bytes) -> list[str]:
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
