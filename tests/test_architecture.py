"""The layout of docs/architecture.md holds: imports point downward, components never ask which
home the crawl's state has, and the stops are described in one table."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest
import scrapy.exceptions
from scrapy.settings import Settings, default_settings

from rednote_crawl import api, stops
from rednote_crawl.addon import COMPONENTS, REDIS_COMPONENTS, JustOneApiAddon

PACKAGE = Path(__file__).resolve().parent.parent / "rednote_crawl"
ROOT = PACKAGE.parent

@functools.cache
def syntax(path: Path) -> ast.Module:
    """A module's syntax tree, parsed once for every check (read only)."""
    return ast.parse(path.read_text(encoding="utf-8"))


# Each part of the package and its layer: a module may import only from lower layers (or its own part).
LAYERS: dict[str, int] = {
    "names": -1,
    "stops": 0,
    "signals": 0,
    "redaction": 0,
    "api": 1,
    "seeds": 1,
    "schema": 1,
    "config": 2,
    "search": 3,
    "sandbox": 3,
    "formats": 3,
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
# The components every crawl has: they get the state from crawl_state() and use only its interface.
COMPONENT_PARTS = ("downloader", "spiders", "spidermw", "items")
COMPONENT_MODULES = ("run/summary.py", "run/startup.py", "run/monitors.py")
STATE = PACKAGE / "state" / "__init__.py"
# What a name bound from crawl_state() is: the home's interface, or one of its two parts.
INTERFACES = {"": "CrawlState", "pages": "PageStore", "account": "CallAccount"}


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set[tuple[str, str]]:
    """(part, full module name) of every rednote_crawl import in the file, type-only ones included."""
    found = set()
    for node in ast.walk(syntax(path)):
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


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SOURCES}


def test_no_module_imports_one_that_imports_it_back():
    """Circles through imports inside functions and type-only imports count too."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = set()
        for _, imported in imported_parts(path):
            while imported and imported not in MODULES:  # a name imported from a module: the module
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        graph[name] = targets
    circles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    circles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert not circles, circles


def interface_members() -> dict[str, set[str]]:
    """Each interface class of state/__init__.py: its methods, annotated names and what its __init__ sets."""
    members: dict[str, set[str]] = {}
    for node in syntax(STATE).body:
        if not isinstance(node, ast.ClassDef):
            continue
        found = set()
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.add(item.name)
                if item.name == "__init__":
                    found |= {
                        t.attr
                        for n in ast.walk(item)
                        if isinstance(n, ast.Assign)
                        for t in n.targets
                        if isinstance(t, ast.Attribute)
                    }
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                found.add(item.target.id)
        members[node.name] = found
    return members


def bound_to_the_state(tree: ast.AST) -> dict[str, str]:
    """Expressions (as source) that hold crawl_state(...) or one of its parts -> the interface they are."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        value, targets = None, []
        if isinstance(node, ast.Assign):
            value, targets = node.value, node.targets
        elif isinstance(node, ast.FunctionDef) and node.body and isinstance(node.body[-1], ast.Return):
            value, targets = node.body[-1].value, [ast.Attribute(ast.Name("self"), node.name)]  # a property
        part = ""
        if isinstance(value, ast.Attribute) and value.attr in INTERFACES:
            part, value = value.attr, value.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "crawl_state":
            for target in targets:
                bound[ast.unparse(target)] = INTERFACES[part]
    return bound


COMPONENTS_PATHS = [p for p in SOURCES if part_of(p) in COMPONENT_PARTS] + [PACKAGE / m for m in COMPONENT_MODULES]


@pytest.mark.parametrize("path", COMPONENTS_PATHS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_components_use_only_the_interface_of_the_state(path):
    """No component imports a home, names one, or reaches for a member the interface does not have."""
    for part, name in imported_parts(path):
        if part == "state":
            assert name == "rednote_crawl.state", f"{path.name} reaches into a home of the state: {name}"
    tree = syntax(path)
    members = interface_members()
    bound = bound_to_the_state(tree)
    for expression in list(bound):  # a part read from a bound state: bound too
        for part, other in INTERFACES.items():
            if part:
                bound.setdefault(f"{expression}.{part}", other)
    reached = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            interface = bound.get(ast.unparse(node.value))
            if interface is not None and node.attr not in members[interface]:
                reached.append(f"{ast.unparse(node)} ({interface} has no {node.attr})")
    assert not reached, reached


def home_classes() -> set[str]:
    """Every class the homes define (state/local.py, state/redis/)."""
    paths = [PACKAGE / "state" / "local.py", *(PACKAGE / "state" / "redis").glob("*.py")]
    return {n.name for p in paths for n in ast.walk(syntax(p)) if isinstance(n, ast.ClassDef)}


@pytest.mark.parametrize("path", [p for p in SOURCES if part_of(p) not in ("state", "distributed")], ids=str)
def test_only_the_state_and_the_distributed_components_name_a_home(path):
    tree = syntax(path)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names
    }
    homes = {"LocalState", "RedisState", "LocalPages", "RedisPages", "LocalAccount", "RedisAccount"} & home_classes()
    assert not names & homes, f"{path.name} names {names & homes}"


def test_the_distributed_components_get_a_typed_handle_not_a_cast():
    for path in (PACKAGE / "distributed").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert "crawl_state" not in calls and "cast" not in calls, path.name
        assert "type: ignore" not in source, path.name


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
    pipelines = dict(zip(names(settings, "ITEM_PIPELINES"), settings.getdict("ITEM_PIPELINES").values(), strict=True))
    assert pipelines["rednote_crawl.items.dedupe.NoteDedupePipeline"] is None
    assert pipelines["rednote_crawl.items.validate.NoteSchemaPipeline"] == 150, "the others are registered"


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


def defined_names() -> set[str]:
    """Every class, function, method, constant and attribute the package defines."""
    found: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(syntax(path)):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                found.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Name):
                        found.add(target.id)
                    elif isinstance(target, ast.Attribute):
                        found.add(target.attr)
    return found


def test_the_architecture_page_cites_only_what_exists():
    """Every module, folder, class, function and setting docs/architecture.md names is in the code."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    page = page[: page.index("## The API as it behaves")]  # the API's own field names follow
    files = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")}
    names = defined_names()
    source = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)
    missing, cited = [], 0
    for token in re.findall(r"`([^`\s]+)`", page):
        token = token.removesuffix("()")
        if token.endswith((".py", "/")):
            in_package = any(f == token.rstrip("/") or f.endswith("/" + token.rstrip("/")) for f in files)
            if not in_package and not (ROOT / token).exists() and f'"{token}"' not in source:
                missing.append(token)
        elif re.fullmatch(r"[A-Z][A-Z0-9_]+", token):  # a setting or a constant
            if token not in source and not hasattr(default_settings, token):
                missing.append(token)
        elif re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*", token):
            if token.split(".")[-1] not in names and not hasattr(scrapy.exceptions, token):  # or Scrapy's own
                missing.append(token)
        else:
            continue
        cited += 1
    assert cited > 80, "the page cites the code by name"
    assert not missing, f"docs/architecture.md names what the code does not have: {missing}"
