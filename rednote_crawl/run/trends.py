"""Trends as a picture: ``scrapy report DIR --plot report.png`` and ``--html report.html``.

Across the job's crawls: new notes per keyword per crawl, and calls per new note. matplotlib is
an optional extra (``pip install -e ".[report]"``); without it ``--plot`` says how to get it and
``--html`` writes the tables alone.
"""

from __future__ import annotations

import base64
import html
import io
import math
import unicodedata
import warnings
from pathlib import Path
from typing import Any

from rednote_crawl.state.figures import KeywordFigures
from rednote_crawl.state.jobfolder import JobFolder
from rednote_crawl.state.outputs import whole_file

TOP = 12  # keywords drawn: the ones with the most new notes; the rest are summed as "others"
CJK_FONTS = ["Noto Sans CJK SC", "Noto Sans SC", "WenQuanYi Zen Hei", "Source Han Sans SC", "PingFang SC", "SimHei"]


class PlotUnavailable(RuntimeError):
    pass


def figures(job: JobFolder, crawls: list[tuple[int, str]]) -> dict[int, list[KeywordFigures]]:
    by_crawl: dict[int, list[KeywordFigures]] = {crawl: [] for crawl, _ in crawls}
    for row in job.keyword_figures([crawl for crawl, _ in crawls]):
        by_crawl[row.crawl].append(row)
    return by_crawl


def draw(job: JobFolder, crawls: list[tuple[int, str]]) -> bytes:
    """A PNG: new notes per keyword per crawl (stacked), and calls per new note per crawl."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable('the picture needs matplotlib: pip install -e ".[report]"') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        # Chinese keywords need a CJK font (Debian: fonts-noto-cjk); without one their labels are boxes.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        plt.rcParams["font.sans-serif"] = [*CJK_FONTS, *plt.rcParams["font.sans-serif"]]
        return _draw(plt, job, crawls)


def _draw(plt: Any, job: JobFolder, crawls: list[tuple[int, str]]) -> bytes:
    rows = figures(job, crawls)
    labels = [f"#{crawl}\n{started[:10]}" for crawl, started in crawls]
    totals: dict[str, int] = {}
    for crawl_rows in rows.values():
        for row in crawl_rows:
            totals[row.keyword] = totals.get(row.keyword, 0) + row.new
    top = sorted(totals, key=lambda k: (-totals[k], k))[:TOP]
    fig, (new_axis, cost_axis) = plt.subplots(2, 1, figsize=(max(6, len(crawls) * 0.9 + 3), 7), sharex=True)
    bottom = [0] * len(crawls)
    colors = plt.get_cmap("tab20")  # 13 series: tab10 would give two of them one colour
    for n, keyword in enumerate([*top, "others"]):
        values = [
            sum(r.new for r in rows[c] if (r.keyword == keyword if keyword != "others" else r.keyword not in top))
            for c, _ in crawls
        ]
        new_axis.bar(range(len(crawls)), values, bottom=bottom, label=keyword, color=colors(n % 20))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    new_axis.set_ylabel("new notes")
    new_axis.set_title(f"Job {job.folder}: new notes per keyword per crawl")
    new_axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the bars, never on them
    per_note = [calls_per_new_note(rows[crawl]) for crawl, _ in crawls]
    cost_axis.plot(range(len(crawls)), per_note, marker="o")
    cost_axis.set_ylabel("calls per new note")
    cost_axis.set_ylim(bottom=0)
    cost_axis.set_xticks(range(len(crawls)), labels, fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def missing_font(job: JobFolder, crawls: list[tuple[int, str]]) -> str | None:
    """What to install when keywords in Chinese (or Japanese, Korean) would be drawn as boxes."""
    keywords = {row.keyword for rows in figures(job, crawls).values() for row in rows}
    if not any(unicodedata.east_asian_width(c) in "WF" for k in keywords for c in k):
        return None
    from matplotlib import font_manager

    try:
        font_manager.findfont(font_manager.FontProperties(family=CJK_FONTS), fallback_to_default=False)
    except ValueError:
        return (
            "no CJK font found: Chinese keywords are drawn as boxes in the picture (the tables are right); "
            "install one, e.g. apt-get install fonts-noto-cjk, and draw again"
        )
    return None


def calls_per_new_note(rows: list[KeywordFigures]) -> float:
    """NaN for a crawl that found no new note: no point in the picture (a gap), not a cost of 0."""
    calls = sum(r.calls or 0 for r in rows)
    new = sum(r.new for r in rows)
    return calls / new if new else math.nan


def page(job: JobFolder, crawls: list[tuple[int, str]], table: str) -> str:
    """One HTML page: the table of new notes per keyword per crawl, with the picture (or, without
    matplotlib, a line that says how to get it)."""
    try:
        picture = base64.b64encode(draw(job, crawls)).decode()
        figure = f"<img alt='new notes per keyword per crawl' src='data:image/png;base64,{picture}'>"
    except PlotUnavailable as exc:
        figure = f"<p>No picture: {html.escape(str(exc))}</p>"
    return (
        "<!doctype html><meta charset='utf-8'>"
        f"<title>rednote_crawl report: {html.escape(str(job.folder))}</title>"
        f"<h1>Job {html.escape(str(job.folder))}</h1>"
        f"{figure}"
        f"<pre>{html.escape(table)}</pre>"
    )


def write(path: str, data: bytes | str) -> Path:
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    with whole_file(target) as file:  # a kill leaves the old file or the new one
        file.write(data.encode("utf-8") if isinstance(data, str) else data)
    return target
