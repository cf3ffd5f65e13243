"""JSON Lines with orjson: one complete object per line, UTF-8, written in one call."""

from __future__ import annotations

from typing import IO, Any

from scrapy.exporters import BaseItemExporter

from rednote_crawl.api import as_dict, dumps


class OrjsonLinesItemExporter(BaseItemExporter):
    def __init__(self, file: IO[bytes], **kwargs: Any) -> None:
        super().__init__(dont_fail=True, **kwargs)
        self.file = file

    def export_item(self, item: Any) -> None:
        # -s FEED_EXPORT_FIELDS=... picks and orders fields; otherwise the item goes out whole.
        data = dict(self.get_serialized_fields(item)) if self.fields_to_export else as_dict(item)
        self.file.write(dumps(data) + b"\n")
