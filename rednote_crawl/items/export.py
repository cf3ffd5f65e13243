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

from typing import IO, TYPE_CHECKING, Any

from scrapy.exporters import BaseItemExporter

from rednote_crawl.api import as_dict, dumps
from rednote_crawl.formats.writers import FlatCsvItemExporter, XlsxItemExporter
from rednote_crawl.search import stop_storage_failed

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


def _failed(crawler: Crawler | None, file: Any, exc: OSError) -> None:
    if crawler is None:
        raise exc
    name = getattr(file, "name", None) or "the output"
    stop_storage_failed(crawler, f"cannot write the output file {name}: {exc.strerror or exc}")


class OrjsonLinesItemExporter(BaseItemExporter):
    def __init__(self, file: IO[bytes], crawler: Crawler | None = None, **kwargs: Any) -> None:
        super().__init__(dont_fail=True, **kwargs)
        self.file = file
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler, file: IO[bytes], **kwargs: Any) -> OrjsonLinesItemExporter:
        return cls(file, crawler=crawler, **kwargs)

    def export_item(self, item: Any) -> None:
        # -s FEED_EXPORT_FIELDS=... picks and orders fields; otherwise the item goes out whole.
        data = dict(self.get_serialized_fields(item)) if self.fields_to_export else as_dict(item)
        try:
            self.file.write(dumps(data) + b"\n")
            self.file.flush()
        except OSError as exc:
            _failed(self.crawler, self.file, exc)


class CsvFeedExporter(FlatCsvItemExporter):
    """``-O notes.csv``: flat rows, UTF-8 with a BOM; a failed write stops the crawl (exit 8)."""

    def __init__(self, file: IO[bytes], crawler: Crawler | None = None, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.file = file
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler, file: IO[bytes], **kwargs: Any) -> CsvFeedExporter:
        return cls(file, crawler=crawler, **kwargs)

    def export_item(self, item: Any) -> None:
        try:
            super().export_item(item)
            self.file.flush()
        except OSError as exc:
            _failed(self.crawler, self.file, exc)


class XlsxFeedExporter(XlsxItemExporter):
    """``-O notes.xlsx``: the workbook is written when the crawl ends; a failed write stops it (exit 8)."""

    def __init__(self, file: IO[bytes], crawler: Crawler | None = None, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler, file: IO[bytes], **kwargs: Any) -> XlsxFeedExporter:
        return cls(file, crawler=crawler, **kwargs)

    def finish_exporting(self) -> None:
        try:
            super().finish_exporting()
            self.file.flush()
        except OSError as exc:
            _failed(self.crawler, self.file, exc)
