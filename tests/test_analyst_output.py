"""Issue 22: notes an analyst can open (CSV with a BOM, Excel), the platform's dates, reports as
real tables, the search names, and one schema of the output item. The crawls (-O notes.csv; a job
folder with a workbook, stopped and resumed) run in the test process (conftest.py); a real browser
(chromium, a subprocess) measures the HTML report's tables."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import jsonschema
import openpyxl
import orjson
import pytest
from scrapy.settings import Settings
from scrapy.utils.test import get_crawler

from rednote_crawl import api, stops
from rednote_crawl.config import ApiConfig
from rednote_crawl.formats.files import whole_file
from rednote_crawl.formats.flat import column_names
from rednote_crawl.formats.writers import FlatCsvItemExporter, XlsxItemExporter, write_notes
from rednote_crawl.items.export import CsvFeedExporter
from rednote_crawl.run import report, trends
from rednote_crawl.schema import field_names, field_table, note_schema
from rednote_crawl.state.jobfolder import JobFolder
from rednote_crawl.state.local import LocalState

from .conftest import ROOT, expected_ids, scrapy_in_process

DATA = Path(__file__).parent / "data"
EXCERPTS = DATA / "real" / "excerpts" / "dates-and-previews.json"


def real_items() -> list[dict]:
    items = []
    for path in sorted((DATA / "real").glob("*.json")):
        page = api.read_page(json.loads(path.read_text(encoding="utf-8")), keep_ads=True)
        for rank, note in enumerate(page.notes, 1):
            items.append(
                api.note_item(note, query=api.Query("海信"), note_time_sent=None, page=1, rank=rank, fetched_at="2026-01-01T00:00:00Z")
            )
    return items


def an_item(**changes) -> dict:
    item = real_items()[0]
    item.update(changes)
    return item


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


# --- 1. CSV that opens in Excel ------------------------------------------------------------------


def test_csv_has_a_bom_one_flat_row_per_note_and_readable_cells():
    hostile = an_item(
        title="=HYPERLINK(\"http://x\")", desc="-1+2 看这里", hashtags=["好吃", "酸辣粉"],
        mentions=[{"user_id": "5a152ef8e8ac2b5c7a805197", "nickname": "吃货薯"}, {"user_id": "9", "nickname": "@品牌"}],
        shared_count=None, brand_partnership=True, images=["https://a/1", "https://a/2"],
    )
    out = io.BytesIO()
    exporter = CsvFeedExporter(out)
    exporter.start_exporting()
    exporter.export_item(hostile)
    exporter.finish_exporting()
    data = out.getvalue()
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 with a BOM: Excel reads Chinese right"
    header, row = csv_rows(data)
    assert tuple(header) == column_names()
    cells = dict(zip(header, row, strict=True))
    assert cells["title"] == "'=HYPERLINK(\"http://x\")" and cells["desc"] == "'-1+2 看这里", "no formula runs"
    assert cells["mentions"] == "吃货薯 (5a152ef8e8ac2b5c7a805197); @品牌 (9)"
    assert cells["hashtags"] == "#好吃 #酸辣粉" and cells["images"] == "https://a/1\nhttps://a/2"
    assert cells["shared_count"] == "" and cells["brand_partnership"] == "true" and cells["sponsored"] == "false"
    assert cells["user_nickname"] == hostile["user"]["nickname"] and cells["search_sort_name"] == "general"
    assert "raw" not in header and "{" not in row[header.index("user_id")]


def test_csv_appended_to_gets_no_second_header_and_fields_pick_columns():
    out = io.BytesIO()
    for _ in range(2):  # a second run appending (-o) to the same file
        exporter = FlatCsvItemExporter(out, fields_to_export=["note_id", "published_date_china", "user_nickname"])
        exporter.start_exporting()
        exporter.export_item(an_item())
        exporter.finish_exporting()
    rows = csv_rows(out.getvalue())
    assert rows[0] == ["note_id", "published_date_china", "user_nickname"] and len(rows) == 3
    assert out.getvalue().count(b"\xef\xbb\xbf") == 1
    with pytest.raises(ValueError, match="unknown column"):
        FlatCsvItemExporter(io.BytesIO(), fields_to_export=["nope"])


def test_a_failed_csv_write_stops_the_crawl():
    class Full(io.BytesIO):
        name = "/full/notes.csv"

        def flush(self):
            raise OSError(28, "No space left on device")

    crawler = get_crawler(settings_dict={"JUSTONEAPI_TOKEN": "t" * 30})
    stopped = []
    crawler.engine = type("E", (), {"close_spider_async": None})()
    import rednote_crawl.items.export as export

    original = export.stop_storage_failed
    export.stop_storage_failed = lambda c, message: stopped.append(message)
    try:
        CsvFeedExporter(Full(), crawler=crawler).export_item(an_item())
    finally:
        export.stop_storage_failed = original
    assert stopped and "/full/notes.csv" in stopped[0] and "No space left" in stopped[0]


@pytest.mark.crawl
def test_a_crawl_writes_csv_that_excel_and_pandas_read(sandbox, crawl, tmp_path):
    out = tmp_path / "notes.csv"
    result = crawl(sandbox, "-O", str(out), keywords=["海信", "小米"], output=False)
    assert result.returncode == 0, result.log[-2000:]
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    header, *rows = csv_rows(data)
    assert tuple(header) == column_names()
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(["海信", "小米"])
    assert {r[header.index("desc_truncated")] for r in rows} <= {"true", "false"}


# --- 2. Excel ------------------------------------------------------------------------------------


def test_a_workbook_has_the_same_columns_typed_cells_and_meets_excels_limits(tmp_path):
    items = [
        an_item(title="=1+1", desc="bell\x07 and \x1b escape", liked_count=12),
        an_item(note_id="b" * 24, desc="长" * 40_000, brand_partnership=True),
        an_item(note_id="c" * 24),
    ]
    path = tmp_path / "notes.xlsx"
    with path.open("wb") as file:
        exporter = XlsxItemExporter(file)
        exporter.max_rows = 3  # a header and two notes a sheet: the third goes on a second sheet
        exporter.start_exporting()
        for item in items:
            exporter.export_item(item)
        exporter.finish_exporting()
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["notes", "notes 2"]
    first, second = (list(sheet.iter_rows(values_only=True)) for sheet in book.worksheets)
    assert first[0] == second[0] == column_names()
    cells = dict(zip(first[0], first[1], strict=True))
    assert cells["title"] == "=1+1" and book["notes"]["E2"].data_type == "s", "text, not a formula"
    assert cells["desc"] == "bell and  escape" and cells["liked_count"] == 12 and cells["sponsored"] is False
    long = dict(zip(first[0], first[2], strict=True))["desc"]
    assert len(long) == 32_767 and long.endswith("…") and long.startswith("长")
    assert second[1][0] == "c" * 24


def test_export_picks_the_format_from_the_extension_and_refuses_others(tmp_path):
    job = JobFolder.take(tmp_path / "job")
    job.begin_run("2026-11-01T00:00:00Z", "f", {})
    items = real_items()
    job.record_page(api.Query("海信"), 1, items[:10], None, 10)
    job.record_page(api.Query("小米"), 1, items[5:15], "empty_page", 10)
    job.end_run("finished", "2026-11-01T01:00:00Z", calls=2, exit_status=0)
    job.close()
    for name in ("all.csv", "all.xlsx", "all.jsonl"):
        done = scrapy_in_process("report", str(tmp_path / "job"), "--export", str(tmp_path / name))
        assert done.returncode == 0 and "wrote 15 notes" in done.stdout, done.stderr
    assert csv_rows((tmp_path / "all.csv").read_bytes())[0] == list(column_names())
    assert len(list(openpyxl.load_workbook(tmp_path / "all.xlsx")["notes"].iter_rows())) == 16
    assert len((tmp_path / "all.jsonl").read_bytes().splitlines()) == 15
    assert orjson.loads((tmp_path / "all.jsonl").read_bytes().splitlines()[0])["note_id"] == items[0]["note_id"]
    refused = scrapy_in_process("report", str(tmp_path / "job"), "--export", str(tmp_path / "all.txt"))
    assert refused.returncode == 2 and ".csv" in refused.stderr and not (tmp_path / "all.txt").exists()


# --- 3. Every format keeps the job folder's promises ----------------------------------------------


@pytest.mark.crawl
def test_a_resumed_job_writes_its_workbook_and_csv_whole_each_note_once(sandbox, crawl, tmp_path):
    job, book, table = tmp_path / "job", tmp_path / "notes.xlsx", tmp_path / "notes.csv"
    args = ("-O", str(book), "-O", str(table), "-s", f"JUSTONEAPI_JOB_DIR={job}")
    keywords = ["华为", "元气森林", "小米"]  # 15 pages, sharing notes
    first = crawl(sandbox, *args, keywords=keywords, output=False, settings={"JUSTONEAPI_MAX_REQUESTS": "6", "CONCURRENT_REQUESTS": "2"})
    assert first.returncode == 6, first.log[-2000:]
    assert openpyxl.load_workbook(book)["notes"].max_row > 1, "a stopped run leaves a readable workbook"
    second = crawl(sandbox, *args, keywords=keywords, output=False)
    assert second.returncode == 0, second.log[-2000:]
    rows = list(openpyxl.load_workbook(book)["notes"].iter_rows(values_only=True))
    assert rows[0] == column_names() and rows.count(rows[0]) == 1
    ids = [r[0] for r in rows[1:]]
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(keywords)
    header, *lines = csv_rows(table.read_bytes())
    assert [r[0] for r in lines] == ids and header == list(column_names())
    assert not list(tmp_path.glob(".notes.xlsx.*")), "no temporary file left"


def test_a_whole_file_that_cannot_be_written_ends_the_run_with_exit_8(tmp_path):
    crawler = get_crawler(settings_dict={"JUSTONEAPI_TOKEN": "t" * 30, "JUSTONEAPI_STATE_DIR": str(tmp_path / "s")})
    state = LocalState(crawler, ApiConfig.from_settings(crawler.settings))
    state.pages.job = job = JobFolder.take(tmp_path / "job")
    job.begin_run("2026-11-01T00:00:00Z", "f", {})
    job.record_page(api.Query("海信"), 1, real_items()[:3], "empty_page", 3)
    (tmp_path / "file").write_text("a file, not a folder")
    state.whole_files = {tmp_path / "file" / "notes.csv": ("csv", {}, False)}
    crawler.stats.set_value("finish_reason", "finished")
    state.end("finished", crawler.stats.get_stats())
    stats = crawler.stats.get_stats()
    assert stops.exit_status(stats["finish_reason"], stats) == 8
    assert not JobFolder.read(tmp_path / "job").crawl_runs(1)[0]["complete"], "the crawl stays open"


def test_atomic_leaves_the_old_file_when_a_write_fails(tmp_path):
    target = tmp_path / "notes.csv"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), whole_file(target) as file:
        file.write(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
    assert write_notes(target, [an_item()]) == 1 and target.read_bytes().startswith(b"\xef\xbb\xbf")


# --- 4. The platform's dates, and previews ---------------------------------------------------------


def item_of(note: dict, query: api.Query | None = None, sent: str | None = None) -> dict:
    return api.note_item(
        {"id": "6a0000000000000000000001", **note}, query=query or api.Query("海信"), note_time_sent=sent,
        page=1, rank=1, fetched_at="2026-01-01T00:00:00Z",
    )


def test_china_dates_beside_utc_and_the_edit_times():
    # 05:54 in Beijing on 2 August is 21:54 UTC on 1 August: the platform's day is the 2nd.
    item = item_of({"timestamp": 1754085240, "last_update_time": 0, "update_time": 1754100000000})
    assert item["published_at"] == "2025-08-01T21:54:00Z"
    assert item["published_at_china"] == "2025-08-02T05:54:00+08:00" and item["published_date_china"] == "2025-08-02"
    assert item["edited_at"] is None, "last_update_time 0: never edited"
    assert item["updated_at"] == "2025-08-02T02:00:00Z"
    assert item_of({})["published_date_china"] is None and item_of({})["updated_at"] is None


def test_the_app_dates_an_edited_note_by_its_edit_in_chinas_time():
    """Real: the note's corner tag shows its edit date, China's calendar day of last_update_time."""
    notes = json.loads(EXCERPTS.read_text(encoding="utf-8"))["notes"]
    edited, plain = (item_of(n) for n in notes)
    shown = notes[0]["corner_tag_info"][0]["text"]
    assert edited["published_date_china"] == "2025-09-11" and shown == "2025-09-17"
    edit_day = api.china_time(notes[0]["last_update_time"])[1]
    assert edit_day == shown and edited["edited_at"] == "2025-09-17T14:26:04Z"
    assert edited["updated_at"] > edited["edited_at"] > edited["published_at"]
    assert plain["published_date_china"].endswith(notes[1]["corner_tag_info"][0]["text"])  # "08-06"
    assert plain["edited_at"] is None and plain["desc_truncated"] is True  # cut inside its last tag


@pytest.mark.parametrize(("units", "cut"), [(56, False), (57, False), (58, True), (59, True), (60, True)])
def test_a_preview_that_lost_the_spaces_at_its_cut_may_be_cut(units, cut):
    # "…#tag  #next" cut at 60 after the two spaces: the API trims them, 58 units are left.
    desc = "一" * (units - 4) + "#酸辣粉"
    assert api.utf16_len(desc) == units
    assert item_of({"desc": desc})["desc_truncated"] is cut


def test_a_real_preview_of_58_units_is_plainly_cut_and_marked_cut():
    # A real note whose preview stops inside an emoji code ("[害羞R"): 58 UTF-16 units, cut.
    source = json.loads((EXCERPTS.parent / "short-cut-preview.json").read_text(encoding="utf-8"))
    note = source["notes"][0]
    assert "34ab79e57930da2e3555231fa562c57f92d326bb" in source["_source"]
    assert api.utf16_len(note["desc"]) == 58 and note["desc"].endswith("[害羞R")
    assert item_of(note)["desc_truncated"] is True


# --- 5. Reports as tables --------------------------------------------------------------------------


def two_keyword_job(folder: Path) -> JobFolder:
    job = JobFolder.take(folder)
    job.begin_run("2026-11-01T00:00:00Z", "f", {})
    shared = {"note_id": "s" * 24, "keyword": "海信电视"}
    job.record_page(api.Query("海信电视"), 1, [{"note_id": f"a{n}", "keyword": "海信电视"} for n in range(5)] + [shared], "empty_page", 6, calls=3)
    job.record_page(api.Query("Nike"), 1, [{"note_id": f"b{n}", "keyword": "Nike"} for n in range(3)] + [shared], "empty_page", 4, calls=1)
    job.end_run("finished", "2026-11-01T01:00:00Z", calls=4, exit_status=0)
    return job


def test_the_notes_column_says_why_it_does_not_add_up(tmp_path):
    job = two_keyword_job(tmp_path / "job")
    table = report.crawl_report(job.crawl_figures(1))
    data = table.as_dict()
    assert sum(r["notes"] for r in data["rows"]) == 10 and data["total"]["notes"] == 9
    assert "1 was found under more than one keyword" in data["footnotes"][0]
    text = report.render_text(table)
    assert text.splitlines()[-1].startswith("  * notes: 10 under the keywords, 9 distinct")
    assert [c["key"] for c in data["columns"]][-2:] == ["calls", "calls_per_new"]
    assert all(c["meaning"] for c in data["columns"]), "every column says what it counts"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MEASURE = """<script>
document.addEventListener('DOMContentLoaded', () => {
  const out = [];
  for (const table of document.querySelectorAll('table')) {
    const rows = [...table.rows].map(r => [...r.cells].map(c => Math.round(c.getBoundingClientRect().right)));
    out.push({caption: table.caption.textContent, rights: rows});
  }
  const pre = document.createElement('pre'); pre.id = 'measured'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def dump_dom(page: Path) -> str:
    assert CHROMIUM, "chromium is not installed: apt-get install chromium (.ci/run does it)"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=60, check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_html_report_has_every_table_aligned_in_a_real_browser(tmp_path):
    two_keyword_job(tmp_path / "job").close()
    done = scrapy_in_process("report", str(tmp_path / "job"), "--html", str(tmp_path / "r.html"))
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    measured = tmp_path / "measured.html"
    measured.write_text(page.replace("</head>", MEASURE + "</head>"), encoding="utf-8")
    dom = dump_dom(measured)
    tables = json.loads(dom.split("<pre id=\"measured\">")[1].split("</pre>")[0])
    captions = [t["caption"] for t in tables]
    assert captions[0].startswith("Report of crawl 1 of job") and captions[1].startswith("New notes per keyword")
    for table in tables:  # each column's cells end at the same x in every row: the columns line up
        columns = list(zip(*table["rights"], strict=True))
        assert all(len(set(column)) == 1 for column in columns), table
    assert "海信电视" in dom and "calls/new" in dom and "under more than one keyword" in dom
    # the HTML shows the data of the text report: one model
    data = report.crawl_report(JobFolder.read(tmp_path / "job").crawl_figures(1)).as_dict()
    for row in data["rows"]:
        assert f"<th scope=\"row\">{row['keyword']}</th><td class=\"num\">{row['pages']}</td>" in dom


def test_the_font_warning_says_how_to_clear_the_cache_or_the_cache_is_rebuilt(monkeypatch):
    from matplotlib import font_manager

    class NoFont:
        def findfont(self, *args, **kwargs):
            raise ValueError("none")

    monkeypatch.setattr(font_manager, "fontManager", NoFont())
    monkeypatch.setattr(font_manager, "FontManager", NoFont)
    warning = trends.ensure_cjk_font()
    assert warning and "fonts-noto-cjk" in warning and "fontlist-" in warning and "rm " in warning

    class Fresh(NoFont):
        __version__ = font_manager.FontManager.__version__ if hasattr(font_manager.FontManager, "__version__") else 0

        def findfont(self, *args, **kwargs):
            return "/usr/share/fonts/NotoSansCJK.ttc"

    dumped = []
    monkeypatch.setattr(font_manager, "fontManager", NoFont())
    monkeypatch.setattr(font_manager, "FontManager", Fresh)
    monkeypatch.setattr(font_manager, "json_dump", lambda data, path: dumped.append(path))
    assert trends.ensure_cjk_font() is None, "a font installed after the cache was written is found"
    assert isinstance(font_manager.fontManager, Fresh) and dumped


# --- 6. Words an analyst knows ---------------------------------------------------------------------


def test_search_carries_the_names_the_user_typed():
    query = api.Query("海信", sort=api.SORTS["latest"], note_type=api.NOTE_TYPES["video"], note_time="week")
    search = item_of({}, query, sent="ONE_WEEK")["search"]
    assert search == {
        "sort": "time_descending", "sort_name": "latest", "note_type": "_1", "note_type_name": "video",
        "note_time": "ONE_WEEK", "note_time_name": "week",
    }
    assert item_of({})["search"]["note_time_name"] == "any" and item_of({})["search"]["note_time"] is None
    for name, wire in api.SORTS.items():  # every name maps back to the value it stands for
        assert api.SORTS[api.SORT_NAMES[wire]] == wire, name


# --- 7. One description of the output --------------------------------------------------------------


def test_items_match_the_schema_and_the_schema_matches_the_item_type():
    assert field_names() == api.NOTE_FIELDS
    validator = jsonschema.Draft202012Validator(note_schema())
    for item in real_items():
        validator.validate(item)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**real_items()[0], "liked_count": "12"})


def test_the_reference_field_table_is_generated_from_the_schema():
    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert field_table() in reference, "docs/reference.md: paste rednote_crawl.schema.field_table() again"


def test_the_analysts_page_names_every_column():
    page = (ROOT / "docs" / "output.md").read_text(encoding="utf-8")
    for column in column_names():
        assert f"`{column}`" in page, column
    assert "encoding=\"utf-8-sig\"" in page and "read_excel" in page


def test_the_schema_ships_in_the_package():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"schema/*.json"' in pyproject
    assert Settings().get("FEED_EXPORTERS") is not None
