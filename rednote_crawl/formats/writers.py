"""The formats an analyst opens: CSV that Excel reads right, and Excel workbooks.

Both are Scrapy item exporters, so the feed exports (``-O notes.csv``, ``FEED_EXPORTERS``,
``FEED_EXPORT_FIELDS``, the feed's ``encoding``) and whole files written from a job's database
(``write_notes``: at the end of a crawl, ``scrapy report --export``) share them.

- CSV: UTF-8 **with a BOM** (encoding ``utf-8-sig``) unless the feed names another encoding, so that
  Excel opened by double-click reads Chinese right; one header line (none when appending to a file
  that has lines); ``true``/``false``; an empty cell for none.
- Excel (``.xlsx``, openpyxl in write-only mode: rows stream to a temporary file, memory stays flat):
  the same columns; numbers and booleans typed; Excel's limits met: at most 1,048,576 rows a sheet
  (the notes go on in a sheet "notes 2", with its header), 32,767 characters a cell (longer text is
  cut, ending in "…"), control characters removed.
- Note text is written by strangers: a text cell that begins with ``=``, ``+``, ``-``, ``@`` (or a
  tab, a carriage return) is written so that Excel shows it as text, never runs it as a formula: in
  CSV with a leading ``'``, in a workbook as a text cell.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import orjson
from scrapy.exporters import BaseItemExporter, CsvItemExporter

from rednote_crawl.api import as_dict, dumps
from rednote_crawl.formats.files import whole_file
from rednote_crawl.formats.flat import Column, flat_row, pick

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_ENCODING = "utf-8-sig"  # UTF-8 with a BOM: how Excel knows the file is UTF-8
EXCEL_MAX_ROWS = 1_048_576  # a sheet's rows, its header included
EXCEL_MAX_CELL = 32_767  # characters a cell
# What Excel's file format cannot hold (openpyxl's ILLEGAL_CHARACTERS_RE): C0 controls but tab, LF, CR.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

# File name endings and the format each one writes (scrapy report --export, FEED_EXPORTERS).
FORMATS: dict[str, str] = {".jsonl": "jsonlines", ".jl": "jsonlines", ".jsonlines": "jsonlines", ".csv": "csv", ".xlsx": "xlsx"}


def format_for(path: str | Path) -> str | None:
    """The format a file name asks for, or None for an ending no exporter writes."""
    return FORMATS.get(Path(str(path)).suffix.lower())


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _chosen(fields: Any) -> tuple[Column, ...]:
    names = list(fields.keys()) if isinstance(fields, Mapping) else list(fields or ())
    return pick(names)


def _headers(fields: Any, chosen: tuple[Column, ...]) -> list[str]:
    if isinstance(fields, Mapping):
        return [str(fields[c.name]) for c in chosen]
    return [c.name for c in chosen]


class FlatCsvItemExporter(CsvItemExporter):
    """Scrapy's CSV exporter, one flat row per note (``formats/flat.py``)."""

    def __init__(self, file: IO[bytes], **kwargs: Any) -> None:
        if not kwargs.get("encoding"):
            kwargs["encoding"] = CSV_ENCODING
        super().__init__(file, **kwargs)
        self.columns = _chosen(self.fields_to_export)
        self.fields_to_export = _headers(self.fields_to_export, self.columns)
        with contextlib.suppress(OSError, AttributeError, ValueError):  # appending (-o): no second header
            self._headers_not_written = file.tell() == 0

    def export_item(self, item: Any) -> None:
        if self._headers_not_written:
            self._headers_not_written = False
            if self.include_headers_line:
                self.csv_writer.writerow(self.fields_to_export)
        self.csv_writer.writerow([csv_cell(v) for v in flat_row(as_dict(item), self.columns)])


def excel_text(value: str) -> str:
    value = _CONTROL.sub("", value)
    if len(value) > EXCEL_MAX_CELL:
        value = value[: EXCEL_MAX_CELL - 1] + "…"
    return value


class XlsxItemExporter(BaseItemExporter):
    """An Excel workbook, one sheet "notes" (more when the notes outgrow a sheet), written when the
    export finishes: openpyxl's write-only workbook keeps the rows in a temporary file until then."""

    max_rows = EXCEL_MAX_ROWS

    def __init__(self, file: IO[bytes], **kwargs: Any) -> None:
        super().__init__(dont_fail=True, **kwargs)
        self.file = file
        self.columns = _chosen(self.fields_to_export)
        self.headers = _headers(self.fields_to_export, self.columns)
        self.workbook: Any = None
        self.sheet: Any = None
        self.sheets = 0
        self.rows = 0  # in the current sheet, its header included

    def start_exporting(self) -> None:
        from openpyxl import Workbook

        self.workbook = Workbook(write_only=True)
        self._new_sheet()

    def _new_sheet(self) -> None:
        self.sheets += 1
        self.sheet = self.workbook.create_sheet("notes" if self.sheets == 1 else f"notes {self.sheets}")
        self.sheet.freeze_panes = "A2"
        self.sheet.append(self.headers)
        self.rows = 1

    def export_item(self, item: Any) -> None:
        if self.workbook is None:
            self.start_exporting()
        if self.rows >= self.max_rows:
            self._new_sheet()
        self.sheet.append([self._cell(v) for v in flat_row(as_dict(item), self.columns)])
        self.rows += 1

    def _cell(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = excel_text(value)
        if value.startswith("="):  # openpyxl would write it as a formula: a text cell instead
            from openpyxl.cell import WriteOnlyCell

            cell = WriteOnlyCell(self.sheet, value)
            cell.data_type = "s"
            return cell
        return value

    def finish_exporting(self) -> None:
        if self.workbook is None:
            self.start_exporting()
        self.workbook.save(self.file)


class JsonLinesWriter(BaseItemExporter):
    """JSON Lines for ``write_notes``: the crawl's own line format (orjson)."""

    def __init__(self, file: IO[bytes], **kwargs: Any) -> None:
        super().__init__(dont_fail=True, **kwargs)
        self.file = file

    def export_item(self, item: Any) -> None:
        self.file.write((item if isinstance(item, bytes) else dumps(as_dict(item))) + b"\n")


WRITERS: dict[str, type[BaseItemExporter]] = {
    "jsonlines": JsonLinesWriter,
    "csv": FlatCsvItemExporter,
    "xlsx": XlsxItemExporter,
}


def write_notes(path: str | Path, items: Iterable[Any], fmt: str | None = None, **options: Any) -> int:
    """Write ``items`` (dicts, or JSON Lines as bytes) to ``path`` as a whole file, atomically, in
    the format its name asks for (or ``fmt``); returns how many were written. Raises ``OSError``
    when it cannot be written (the old file, if any, stays as it was)."""
    fmt = fmt or format_for(path)
    if fmt not in WRITERS:
        raise ValueError(f"{path}: no format for this file name; use .jsonl, .csv or .xlsx")
    count = 0
    with whole_file(path) as file:
        exporter = WRITERS[fmt](file, **options)
        exporter.start_exporting()
        for item in items:
            if fmt != "jsonlines" and isinstance(item, bytes):
                item = orjson.loads(item)
            exporter.export_item(item)
            count += 1
        exporter.finish_exporting()
    return count
