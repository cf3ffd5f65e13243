"""JSON Lines with orjson: one complete object per line, UTF-8, written in one call.

Each line is flushed as it is written: Scrapy's feed exporter only logs a failed write, and the
crawl would go on paying for pages it cannot store. A write that fails (a full disk, an I/O
error) stops the crawl at once, naming the file; with a job folder, the next run writes the
notes the output is missing from the job database.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from scrapy.exporters import BaseItemExporter

from rednote_crawl.api import as_dict, dumps
from rednote_crawl.search import stop_storage_failed

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


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
            if self.crawler is None:
                raise
            name = getattr(self.file, "name", None) or "the output"
            stop_storage_failed(self.crawler, f"cannot write the output file {name}: {exc.strerror or exc}")
