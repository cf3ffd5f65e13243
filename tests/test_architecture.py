"""The layout of docs/architecture.md holds: imports point downward, components never ask which
home the crawl's state has, and the stops are described in one table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from scrapy.settings import Settings

from rednote_crawl import api, stops
from rednote_crawl.addon import COMPONENTS, REDIS_COMPONENTS, JustOneApiAddon

PACKAGE = Path(__file__).resolve().parent.parent / "rednote_crawl"
ROOT = PACKAGE.parent

# Each part of the package and its layer: a module may import only from lower layers (or its own part).
LAYERS: dict[str, int] = {
    "names": -1,
    "stops": 0,
    "signals": 0,
    "redaction": 0,
    "api": 1,
    "seeds": 1,
    "config": 2,
    "search": 3,
    "sandbox": 3,
    "state": 4,
    "downloader": 5,
    "spiders": 5,
    "spidermw": 5,
    "items": 5,
    "distributed": 5,
    "run": 6,
    "addon": 7,
    "commands": 7,
    "settings": 7,
    "__init__": 0,
}
# The components every crawl has: they get the state from crawl_state() and never ask its home.
COMPONENT_PARTS = ("downloader", "spiders", "spidermw", "items")
COMPONENT_MODULES = ("run/summary.py", "run/startup.py")


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set[tuple[str, str]]:
    """(part, full module name) of every rednote_crawl import in the file, type-only ones included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rednote_crawl":
            if node.module == "rednote_crawl":
                names = [f"rednote_crawl.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.split(".")[0] == "rednote_crawl"]
        for name in names:
            parts = name.split(".")
            if len(parts) > 1:
                found.add(("__init__" if parts[1].startswith("__") else parts[1], name))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_has_a_layer():
    assert {part_of(p) for p in SOURCES} <= set(LAYERS)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_downward(path):
    here = part_of(path)
    upward = [
        name
        for part, name in imported_parts(path)
        if part != here and LAYERS[part] >= LAYERS[here] and here != "__init__"
    ]
    assert not upward, f"{path.relative_to(ROOT)} imports from its own layer or above: {upward}"


def test_components_never_ask_which_home_the_state_has():
    paths = [p for p in SOURCES if part_of(p) in COMPONENT_PARTS]
    paths += [PACKAGE / m for m in COMPONENT_MODULES]
    for path in paths:
        source = path.read_text(encoding="utf-8")
        for part, name in imported_parts(path):
            if part == "state":
                assert name == "rednote_crawl.state", f"{path.name} reaches into a home of the state: {name}"
        tree = ast.parse(source)
        attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not attributes & {"redis_url", "job_dir", "shared", "job"}, path.name
        assert "REDIS_URL" not in re.sub(r'""".*?"""', "", source, flags=re.S), path.name


def test_the_add_on_registers_the_components_of_the_home_it_picks():
    local, distributed = Settings(), Settings({"REDIS_URL": "redis://127.0.0.1:6379/0"})
    for settings in (local, distributed):
        settings.setmodule("rednote_crawl.settings", priority="project")
        JustOneApiAddon(crawler=None).update_settings(settings)  # type: ignore[arg-type]
    assert local["JUSTONEAPI_STATE_CLASS"].endswith("LocalState")
    assert distributed["JUSTONEAPI_STATE_CLASS"].endswith("RedisState")
    assert distributed["SCHEDULER"].endswith("LeasedScheduler") and "Leased" not in str(local["SCHEDULER"])
    for name, entries in COMPONENTS.items():
        for path in entries:
            assert path in names(local, name) and path in names(distributed, name), path
    for name, entries in REDIS_COMPONENTS.items():
        for path in entries:
            assert path in names(distributed, name) and path not in names(local, name), path


def names(settings: Settings, name: str) -> list[str]:
    return [k if isinstance(k, str) else f"{k.__module__}.{k.__qualname__}" for k in settings.getdict(name)]


def test_a_component_turned_off_in_the_settings_stays_off():
    settings = Settings()
    settings.setmodule("rednote_crawl.settings", priority="project")
    settings.set("ITEM_PIPELINES", {"rednote_crawl.items.dedupe.NoteDedupePipeline": None}, priority="cmdline")
    JustOneApiAddon(crawler=None).update_settings(settings)  # type: ignore[arg-type]
    assert list(settings.getdict("ITEM_PIPELINES").values()) == [None]


def test_one_table_of_stops():
    assert len({s.reason for s in stops.STOPS}) == len(stops.STOPS)
    readme = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    for stop in stops.STOPS:
        assert re.search(rf"\|\s*{stop.exit_status}\s*\|", readme), f"exit status {stop.exit_status} of {stop.reason}"
        for code in stop.codes:
            assert api.judge(200, b'{"code": %d}' % code).stop is stop
    # every fatal code of the API's own table stops the crawl, and nothing else does
    assert {c for c in api.CODE_NAMES if api.judge(200, b'{"code": %d}' % c).action is api.Action.STOP} == set(
        stops.BY_CODE
    )
    assert stops.exit_status("justoneapi_something_new", {}) == stops.EXIT_ERROR
