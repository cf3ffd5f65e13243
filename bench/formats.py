"""The output formats side by side (issue 22): CPU per note to map an API note and write it as JSON
Lines, CSV and Excel; memory and time of a workbook against CSV for 100,000 notes; JSON Lines
against the mapping of main before issue 22 (commit 8e883f8), to keep it within 5%.

    python -m bench.formats                 # 100,000 notes, every format, 3 rounds each, in turns
    python -m bench.formats --notes 20000   # quicker

Each format runs in a process of its own (its peak memory is that process's ru_maxrss), in turns
(jsonl, csv, xlsx, jsonl-before, jsonl, ...), so that the machine's other load falls on all alike;
the figure kept per format is its best round. The notes are the real ones of tests/data/real/,
repeated with new ids.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "8e883f8"  # main before issue 22


def api_notes() -> list[dict]:
    from rednote_crawl import api

    notes = []
    for path in sorted((ROOT / "tests" / "data" / "real").glob("*.json")):
        notes += api.read_page(json.loads(path.read_text(encoding="utf-8"))).notes
    return notes


def old_api():
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:rednote_crawl/api.py"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "api_before.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("api_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["api_before"] = module
    spec.loader.exec_module(module)
    return module


def one(fmt: str, count: int) -> dict:
    """Map ``count`` notes and write them in ``fmt``, in this process: CPU seconds, peak memory."""
    from rednote_crawl import api

    mapper = old_api() if fmt == "jsonl-before" else api
    from rednote_crawl.items.export import CsvFeedExporter, OrjsonLinesItemExporter, XlsxFeedExporter

    exporters = {"jsonl": OrjsonLinesItemExporter, "jsonl-before": OrjsonLinesItemExporter, "csv": CsvFeedExporter, "xlsx": XlsxFeedExporter}
    notes = api_notes()
    query = mapper.Query("海信")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"notes.{fmt.split('-')[0]}"
        with path.open("wb") as file:
            start, wall = time.process_time(), time.perf_counter()
            exporter = exporters[fmt](file)
            exporter.start_exporting()
            for n in range(count):
                note = {**notes[n % len(notes)], "id": f"{n:024x}"}
                item = mapper.note_item(note, query=query, note_time_sent=None, page=1, rank=n + 1, fetched_at="2026-01-01T00:00:00Z")
                exporter.export_item(item)
            exporter.finish_exporting()
            cpu, elapsed = time.process_time() - start, time.perf_counter() - wall
        size = path.stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"format": fmt, "notes": count, "cpu_s": cpu, "wall_s": elapsed, "us_per_note": cpu / count * 1e6,
            "peak_rss_mib": peak / 1024, "rss_growth_mib": (peak - base) / 1024, "file_mib": size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notes", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.notes)))
        return
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for fmt in ("jsonl", "csv", "xlsx", "jsonl-before"):
            out = subprocess.run(
                [sys.executable, "-m", "bench.formats", "--one", fmt, "--notes", str(args.notes)],
                cwd=ROOT, capture_output=True, text=True, check=True,
            ).stdout
            result = json.loads(out)
            if fmt not in best or result["cpu_s"] < best[fmt]["cpu_s"]:
                best[fmt] = result
    print(f"{'format':<14}{'µs/note':>9}{'CPU s':>8}{'wall s':>8}{'peak MiB':>10}{'growth MiB':>12}{'file MiB':>10}")
    for fmt, r in best.items():
        print(f"{fmt:<14}{r['us_per_note']:>9.1f}{r['cpu_s']:>8.2f}{r['wall_s']:>8.2f}{r['peak_rss_mib']:>10.1f}{r['rss_growth_mib']:>12.1f}{r['file_mib']:>10.1f}")
    ratio = best["jsonl"]["us_per_note"] / best["jsonl-before"]["us_per_note"]
    print(f"JSON Lines now / before issue 22: {ratio:.3f}")


if __name__ == "__main__":
    main()
