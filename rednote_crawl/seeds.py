"""Keywords: a seed file (one keyword a line, UTF-8 with or without BOM, LF or CRLF), or a list.

A seed file is read as a stream, never whole: ``check()`` reads it once before the crawl
starts (so a bad byte on line 900,000 stops the crawl before its first call, and the plan knows
how many keywords there are), and iterating reads it again, keyword by keyword, as the crawl
needs them. A million keywords cost the set that says which were already given, not a list.

A relative ``seeds/NAME`` that is not on disk is read from the package: the seed files ship
in it (rednote_crawl/seeds/, linked from seeds/), so they reach scrapyd hosts inside the egg.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import BinaryIO


class SeedFileError(ValueError):
    """A keyword file that cannot be used; the message names the file and the fix."""


class Keywords:
    """Keywords in file order, each once; blank lines and ``#`` comments are ignored.

    Whitespace around a keyword is trimmed; the keyword itself is kept exactly as written
    (spaces, ``&``, ``+``, ``%``, ``?``, quotes and Chinese text).
    """

    def __init__(self, path: str | Path | None = None, inline: list[str] | None = None) -> None:
        assert (path is None) != (inline is None), "a file or a list"
        self.path = Path(path) if path is not None else None
        self.inline = inline
        self._count: int | None = len(inline) if inline is not None else None

    @classmethod
    def from_file(cls, path: str | Path) -> Keywords:
        return cls(path=path)

    @classmethod
    def from_inline(cls, raw: str) -> Keywords:
        """``-a keyword=海信,Nike``: keywords on the command line, comma-separated."""
        keywords = [k.strip() for k in raw.split(",") if k.strip()]
        if not keywords:
            raise SeedFileError("keyword= has no keywords; pass -a keyword=海信,Nike (comma-separated)")
        return cls(inline=list(dict.fromkeys(keywords)))

    def check(self, visit: Callable[[str], None] | None = None) -> int:
        """Read the whole file once: every error now, before any call. Returns how many keywords;
        ``visit`` sees each of them on the way (one pass for whatever else needs them all)."""
        if self._count is None or visit is not None:
            count = 0
            for keyword in self:
                count += 1
                if visit is not None:
                    visit(keyword)
            if not count:
                raise SeedFileError(
                    f"keyword file {str(self.path)!r} has no keywords (only blank lines or # comments); "
                    "add one keyword per line"
                )
            self._count = count
        return self._count

    def __len__(self) -> int:
        return self.check()

    def __iter__(self) -> Iterator[str]:
        if self.inline is not None:
            yield from self.inline
            return
        assert self.path is not None
        given: set[str] = set()
        with self._open() as file:
            for keyword in _read(self.path, file):
                if keyword not in given:
                    given.add(keyword)
                    yield keyword

    def _open(self) -> BinaryIO:
        path = self.path
        assert path is not None
        try:
            return path.open("rb")
        except FileNotFoundError:
            if (bundled := _bundled(path)) is not None:
                return io.BytesIO(bundled)
            raise SeedFileError(
                f"keyword file {str(path)!r} does not exist; pass -a keywords=PATH to a file with one keyword per "
                "line, or the keywords themselves: -a keyword=海信,Nike"
            ) from None
        except IsADirectoryError:
            raise SeedFileError(
                f"keyword file {str(path)!r} is a directory; pass -a keywords=PATH to a file with one keyword per line"
            ) from None
        except OSError as exc:
            raise SeedFileError(
                f"keyword file {str(path)!r} cannot be read ({exc.strerror}); check its permissions"
            ) from None


def _read(path: Path, file: BinaryIO) -> Iterator[str]:
    offset = 0
    for number, raw in enumerate(file):
        try:
            text = raw.decode("utf-8-sig" if number == 0 else "utf-8")
        except UnicodeDecodeError as exc:
            raise SeedFileError(
                f"keyword file {str(path)!r} is not UTF-8 (bad byte at offset {offset + exc.start}); save it as UTF-8"
            ) from None
        offset += len(raw)
        for line in text.splitlines():
            keyword = line.strip()
            if keyword and not keyword.startswith("#"):
                yield keyword


def _bundled(path: Path) -> bytes | None:
    """``seeds/NAME`` as shipped in the package (and in the egg scrapyd runs), when not on disk."""
    if path.is_absolute() or path.parts[:1] != ("seeds",):
        return None
    resource = resources.files("rednote_crawl").joinpath(*path.parts)
    try:
        return resource.read_bytes() if resource.is_file() else None
    except OSError:
        return None


def read_keywords(path: str | Path) -> list[str]:
    """Every keyword of a file, checked (for tests and small files: the crawl streams them)."""
    keywords = Keywords.from_file(path)
    keywords.check()
    return list(keywords)
