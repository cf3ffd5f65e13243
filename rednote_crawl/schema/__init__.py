"""The JSON Schema of the output item (``note.schema.json``): the one description of a note.

docs/reference.md's field table is generated from it (``field_table``; a test keeps the two equal),
the CSV and Excel columns are derived from it (``formats/flat.py``), and items can be checked
against it. Plain Python: no Scrapy.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

SCHEMA_FILE = "note.schema.json"


@functools.cache
def note_schema() -> dict[str, Any]:
    """The schema of one output note, as shipped in the package."""
    return json.loads(resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


def field_names() -> tuple[str, ...]:
    """The item's fields in output order."""
    return tuple(note_schema()["properties"])


def _types(spec: dict[str, Any]) -> str:
    kinds = spec.get("type", "object")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    names = {"string": "text", "integer": "integer", "boolean": "true/false", "array": "list", "object": "object"}
    return " or ".join("`null`" if k == "null" else names.get(k, k) for k in kinds)


def field_table() -> str:
    """docs/reference.md's table of output fields, in Markdown."""
    lines = ["| field | type | content |", "|---|---|---|"]
    for name, spec in note_schema()["properties"].items():
        lines.append(f"| `{name}` | {_types(spec)} | {spec['description']} |")
        for sub, sub_spec in spec.get("properties", {}).items():
            if "description" in sub_spec:
                lines.append(f"| `{name}.{sub}` | {_types(sub_spec)} | {sub_spec['description']} |")
    return "\n".join(lines)
