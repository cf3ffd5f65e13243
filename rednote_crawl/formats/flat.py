"""One flat row per note, for CSV and Excel: the columns come from the item's schema.

- a field is a column of its own name; an object's fields are columns ``<object>_<field>``
  (``user_nickname``, ``search_sort_name``), ``user_id`` staying ``user_id``;
- lists are joined in one cell (the schema's ``x-join``): ``hashtags`` as ``#tag1 #tag2``
  (a tag holds no space), ``mentions`` as ``nickname (user_id); nickname (user_id)``, ``images`` one
  URL a line;
- ``raw`` (``x-flat: false``) is left out: it is JSON, for JSON Lines.

The values stay typed here (``True``, ``12``, ``None``); each format writes them its own way
(``formats/writers.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rednote_crawl.schema import note_schema


def _join_tags(values: Any) -> str | None:
    return " ".join(f"#{v}" for v in values) if values else None


def _join_mentions(values: Any) -> str | None:
    if not values:
        return None
    return "; ".join(f"{m.get('nickname') or ''} ({m.get('user_id') or ''})".strip() for m in values)


def _join_lines(values: Any) -> str | None:
    return "\n".join(str(v) for v in values) if values else None


def _join_images(values: Any) -> str | None:
    """Images with their size: ``URL (1080x1440)``, one a line."""
    if not values:
        return None
    return "\n".join(f"{i.get('url') or ''} ({i.get('width') or '?'}x{i.get('height') or '?'})" for i in values)


JOINS: dict[str, Callable[[Any], str | None]] = {
    "#tag": _join_tags,
    "mentions": _join_mentions,
    "lines": _join_lines,
    "images": _join_images,
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    field: str
    sub: str | None  # the field of an object (user.nickname), or None
    join: Callable[[Any], str | None] | None  # for a list
    description: str

    def value(self, item: Mapping[str, Any]) -> Any:
        value = item.get(self.field)
        if self.sub is not None:
            value = value.get(self.sub) if isinstance(value, Mapping) else None
        if self.join is not None:
            return self.join(value) if isinstance(value, list | tuple) else value
        return value


@functools.cache
def columns() -> tuple[Column, ...]:
    """Every column, in order (the documented column order of CSV and Excel)."""
    found = []
    for name, spec in note_schema()["properties"].items():
        if spec.get("x-flat") is False:
            continue
        subs = spec.get("properties")
        if subs and spec.get("type") == "object":
            for sub, sub_spec in subs.items():
                column = sub if sub.startswith(f"{name}_") else f"{name}_{sub}"
                found.append(Column(column, name, sub, None, sub_spec.get("description", "")))
        else:
            join = JOINS[spec["x-join"]] if "x-join" in spec else None
            found.append(Column(name, name, None, join, spec["description"]))
    return tuple(found)


@functools.cache
def column_names() -> tuple[str, ...]:
    return tuple(c.name for c in columns())


@functools.cache
def _by_name() -> dict[str, Column]:
    return {c.name: c for c in columns()}


def pick(names: Any) -> tuple[Column, ...]:
    """The columns named (FEED_EXPORT_FIELDS), in that order; all of them when ``names`` is empty."""
    if not names:
        return columns()
    by_name = _by_name()
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown column(s) {', '.join(unknown)}; the columns are: {', '.join(column_names())}")
    return tuple(by_name[n] for n in names)


def flat_row(item: Mapping[str, Any], chosen: tuple[Column, ...] | None = None) -> list[Any]:
    return [c.value(item) for c in (chosen or columns())]
