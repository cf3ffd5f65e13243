"""The feed exporters: JSON Lines with orjson (the default), CSV and Excel for analysts.

JSON Lines: one complete object per line, UTF-8, written in one call. Each line is flushed as it
is written: Scrapy's feed exporter only logs a failed write, and the crawl would go on paying for
pages it cannot store. A write that fails (a full disk, an I/O error) stops the crawl at once,
naming the file; with a job folder, the next run writes the notes the output is missing from the
job database.

CSV and Excel (``formats/writers.py``): the same flat rows. A CSV line is flushed as it is written,
and a failed write stops the crawl as for JSON Lines. A workbook is written when the crawl ends;
one that cannot be written stops it with the same exit status. With a job folder, neither is a
feed: the local home writes them whole from the job's database at the end of every run
(``state/local.py``), so a resumed crawl never gives them a second header or a note twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from scrapy.exporters import BaseItemExporter

from rednote_crawl.api import as_dict, dumps
from rednote_crawl.formats.writers import FlatCsvItemExporter, XlsxItemExporter
from rednote_crawl.search import stop_storage_failed

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class _StopsOnFailure:
    """A feed exporter built with its crawler: a write that fails stops the crawl (exit 8)."""

    crawler: Crawler | None
    file: Any

    @classmethod
    def from_crawler(cls, crawler: Crawler, file: IO[bytes], **kwargs: Any) -> Any:
        return cls(file, crawler=crawler, **kwargs)  # type: ignore[call-arg]

    @contextlib.contextmanager
    def _flushed_or_stop(self) -> Iterator[None]:
        """Write, then flush; an ``OSError`` stops the crawl, naming the file (without a crawler: raised)."""
        try:
            yield
            self.file.flush()
        except OSError as exc:
            if self.crawler is None:
                raise
            name = getattr(self.file, "name", None) or "the output"
            stop_storage_failed(self.crawler, f"cannot write the output file {name}: {exc.strerror or exc}")


class OrjsonLinesItemExporter(_StopsOnFailure, BaseItemExporter):
    def __init__(self, file: IO[bytes], crawler: Crawler | None = None, **kwargs: Any) -> None:
        super().__init__(dont_fail=True, **kwargs)
        self.file = file
        self.crawler = crawler

    def export_item(self, item: Any) -> None:
        # -s FEED_EXPORT_FIELDS=... picks and orders fields; otherwise the item goes out whole.
        data = dict(self.get_serialized_fields(item)) if self.fields_to_export else as_dict(item)
        with self._flushed_or_stop():
            self.file.write(dumps(data) + b"\n")


class CsvFeedExporter(_StopsOnFailure, FlatCsvItemExporter):
    """``-O notes.csv``: flat rows, UTF-8 with a BOM; a failed write stops the crawl (exit 8)."""

    def __init__(self, file: IO[bytes], crawler: Crawler | None = None, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.file = file
        self.crawler = crawler

    def export_item(self, item: Any) -> None:
        with self._flushed_or_stop():
            super().export_item(item)


class XlsxFeedExporter(_StopsOnFailure, XlsxItemExporter):
    """``-O notes.xlsx``: the workbook is written when the crawl ends; a failed write stops it (exit 8)."""

    def __init__(self, file: IO[bytes], crawler: Crawler | None = None, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.crawler = crawler

    def finish_exporting(self) -> None:
        with self._flushed_or_stop():
            super().finish_exporting()
