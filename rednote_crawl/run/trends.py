"""Trends as a picture: ``scrapy report DIR --plot report.png`` and ``--html report.html``.

Across the job's crawls: new notes per keyword per crawl, and calls per new note. matplotlib is
an optional extra (``pip install -e ".[report]"``); without it ``--plot`` says how to get it and
``--html`` writes the tables alone.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
import unicodedata
import warnings
from pathlib import Path
from typing import Any

from rednote_crawl.formats.files import whole_file
from rednote_crawl.run.report import HTML_STYLE, Table, render_html
from rednote_crawl.state.figures import KeywordFigures
from rednote_crawl.state.jobfolder import JobFolder

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
    """What to do when keywords in Chinese (or Japanese, Korean) would be drawn as boxes.

    matplotlib keeps the list of the system's fonts in a cache (``~/.cache/matplotlib``): a font
    installed after it was written (``apt-get install fonts-noto-cjk``) is not in it. When the
    cached list has no CJK font, the fonts are listed again; when a fresh list has one, it
    replaces the cache and is used, so the labels are right without anything to clear."""
    keywords = {row.keyword for rows in figures(job, crawls).values() for row in rows}
    if not any(unicodedata.east_asian_width(c) in "WF" for k in keywords for c in k):
        return None
    return ensure_cjk_font()


def ensure_cjk_font() -> str | None:
    import matplotlib
    from matplotlib import font_manager

    wanted = font_manager.FontProperties(family=CJK_FONTS)
    try:
        font_manager.fontManager.findfont(wanted, fallback_to_default=False)
        return None
    except ValueError:
        pass
    fresh = font_manager.FontManager()  # the fonts installed now (the cache may be older than a font)
    try:
        fresh.findfont(wanted, fallback_to_default=False)
    except ValueError:
        return (
            "no CJK font found: Chinese keywords are drawn as boxes in the picture (the tables are right); "
            "install one, e.g. apt-get install fonts-noto-cjk, and draw again. If one is installed, clear "
            f"matplotlib's font cache: rm {Path(matplotlib.get_cachedir()) / 'fontlist-*.json'}"
        )
    font_manager.fontManager = fresh
    cache = Path(matplotlib.get_cachedir()) / f"fontlist-v{font_manager.FontManager.__version__}.json"
    with contextlib.suppress(OSError):
        font_manager.json_dump(fresh, cache)  # the next draw reads the fresh list
    return None


def calls_per_new_note(rows: list[KeywordFigures]) -> float:
    """NaN for a crawl that found no new note: no point in the picture (a gap), not a cost of 0."""
    calls = sum(r.calls or 0 for r in rows)
    new = sum(r.new for r in rows)
    return calls / new if new else math.nan


def page(job: JobFolder, crawls: list[tuple[int, str]], tables: list[Table]) -> str:
    """One HTML page: every table of the report as an HTML table (headers that say what they
    count, the totals, the footnotes), with the picture (or, without matplotlib, a line that says
    how to get it)."""
    try:
        picture = base64.b64encode(draw(job, crawls)).decode()
        missing = missing_font(job, crawls)
        figure = f"<img alt='new notes per keyword per crawl' src='data:image/png;base64,{picture}'>"
        if missing:
            figure += f"<p class=footnote>{html.escape(missing)}</p>"
    except PlotUnavailable as exc:
        figure = f"<p>No picture: {html.escape(str(exc))}</p>"
    folder = html.escape(str(job.folder))
    return (
        "<!doctype html><html lang='zh-Hans'><head><meta charset='utf-8'>"
        f"<title>rednote_crawl report: {folder}</title><style>{HTML_STYLE}</style></head><body>"
        f"<h1>Job {folder}</h1>"
        + "".join(render_html(t) for t in tables)
        + f"{figure}</body></html>"
    )


def write(path: str, data: bytes | str) -> Path:
    target = Path(path).expanduser()
    with whole_file(target) as file:  # a kill leaves the old file or the new one
        file.write(data.encode("utf-8") if isinstance(data, str) else data)
    return target
