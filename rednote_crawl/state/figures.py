"""What the job folder hands back as data: a query's progress in the open crawl, and a crawl's
figures per keyword (the reports print them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class QueryProgress:
    """What the open crawl has done of one query."""

    id: int
    last_page: int
    next_rank: int
    end: str | None
    rejected: bool

    def done(self, max_pages: int) -> bool:
        """Nothing left to ask for, with this max_pages (which may differ from the last run's)."""
        if self.rejected or self.end in ("empty_page", "since"):
            return True
        return self.last_page >= max_pages


@dataclass(frozen=True, slots=True)
class KeywordFigures:
    """One keyword in one crawl."""

    crawl: int
    keyword: str
    pages: int
    notes: int  # distinct notes its queries returned
    new: int  # notes it was the first to find, in the whole job
    failed: int  # pages that failed and were not paid for later
    calls: int | None = None  # the calls its pages took (None: not known)


@dataclass(frozen=True, slots=True)
class CrawlFigures:
    """A crawl per keyword, every run together: what the reports print."""

    crawl: int
    runs: list[dict[str, Any]]
    keywords: list[KeywordFigures]
    notes: int  # distinct notes over all keywords
    folder: Path
    details: dict[str, int] = field(default_factory=dict)  # note detail calls that ended, per status (api.Details)

    @property
    def calls(self) -> int:
        return sum(k.calls or 0 for k in self.keywords)
