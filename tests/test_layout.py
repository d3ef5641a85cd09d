"""The package's shape: subpackages layered one way, small modules and functions, and a layout page naming them.

Read from the source with `ast` alone: nothing here imports torch or the package.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fmnist"
LAYOUT_PAGE = PACKAGE.parents[1] / "docs" / "architecture.md"  # its "## Layout" section names every module
# Top to bottom; a module may import its own room and the rooms below it. Rooms on one line are peers and
# import neither each other nor anything above.
LAYERS = [
    ("cli", "api"),
    ("jobs",),
    ("report", "serve"),
    ("predict",),
    ("rundir",),
    ("models",),
    ("engine",),
    ("metrics",),
    ("data",),
]
EVERYWHERE = {"errors", "files", "__init__"}  # what every layer uses
TOP_MODULES = 5


def room_of(dotted):
    """'fmnist.models.scratch.mlp' -> 'models'; 'fmnist.api' -> 'api'; None outside the package."""
    parts = dotted.split(".")
    if parts[0] != "fmnist":
        return None
    if len(parts) == 1 or not ((PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file()):
        return "__init__"  # `from fmnist import __version__`
    return parts[1]


def level(room):
    return next((i for i, rooms in enumerate(LAYERS) if room in rooms), None)


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        yield ".".join(relative.parts).removesuffix(".__init__"), path


def imported(path, dotted):
    """The fmnist modules (or names in them) that the file at `path` imports, absolute and relative alike."""
    tree = ast.parse(path.read_text(), str(path))
    package = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield from (f"{base}.{alias.name}" for alias in node.names)


def room_imports():
    """{(importer's room, imported room): [importing module, ...]} across rooms of the package."""
    edges = {}
    for dotted, path in modules():
        mine = room_of(dotted)
        for target in imported(path, dotted):
            theirs = room_of(target)
            if theirs is not None and theirs != mine:
                edges.setdefault((mine, theirs), []).append(dotted)
    return edges


def layering_faults(edges):
    faults = []
    for (mine, theirs), where in sorted(edges.items()):
        if theirs in EVERYWHERE or mine in ("__main__",):
            continue
        if level(mine) is None or level(theirs) is None:
            faults.append(f"{where[0]}: imports {theirs!r}, a room the layers do not name")
        elif level(theirs) <= level(mine):
            faults.append(f"{where[0]}: room {mine!r} imports {theirs!r}, which is not below it")
    return faults


def cycles(edges):
    """Rooms that reach themselves through the import graph."""
    graph = {}
    for mine, theirs in edges:
        graph.setdefault(mine, set()).add(theirs)

    def reaches(start):
        seen, todo = set(), list(graph.get(start, ()))
        while todo:
            room = todo.pop()
            if room not in seen:
                seen.add(room)
                todo.extend(graph.get(room, ()))
        return seen

    return sorted(room for room in graph if room in reaches(room))


def test_rooms_import_only_downwards_and_never_in_a_circle():
    edges = room_imports()
    assert ("cli", "jobs") in edges and ("models", "engine") in edges  # the walk sees real imports
    assert layering_faults(edges) == []
    assert cycles(edges) == []


def test_the_checks_catch_an_upward_import_and_a_cycle():
    edges = {("engine", "models"): ["fmnist.engine.loop"], ("models", "engine"): ["fmnist.models.nets"]}
    assert layering_faults(edges) == ["fmnist.engine.loop: room 'engine' imports 'models', which is not below it"]
    assert cycles(edges) == ["engine", "models"]
    assert layering_faults({("report", "serve"): ["fmnist.report.compose"]})  # peers do not import each other


def test_a_relative_import_is_resolved_to_its_room(tmp_path):
    module = tmp_path / "loop.py"
    module.write_text("from ..models import nets\nfrom . import schedule\n")
    assert set(imported(module, "fmnist.engine.loop")) == {"fmnist.models.nets", "fmnist.engine.schedule"}


def test_few_modules_at_the_top_and_small_functions():
    top = [p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")]
    assert len(top) <= TOP_MODULES, top
    long = []
    for dotted, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
                count = len(names) - (names[:1] in (["self"], ["cls"]))
                if node.end_lineno - node.lineno + 1 > 60 or count > 6:
                    long.append(f"{dotted}.{node.name}")
    assert long == []


def readme_layout():
    text = LAYOUT_PAGE.read_text()
    block = re.search(r"## Layout\n.*?```\n(.*?)```", text, re.S)
    assert block, f"{LAYOUT_PAGE.name}: no ## Layout section with a code block"
    return block.group(1)


def test_every_module_the_readme_layout_names_exists():
    """Each `name.py` and `name/` of the layout, under the folder it is indented beneath, is in the tree."""
    root = PACKAGE.parents[1]
    missing, stack = [], []
    for line in readme_layout().splitlines():
        match = re.match(r"( *)(\S+?)(/)?(?:\s{2,}|$)", line)
        if not match or not (match.group(3) or match.group(2).endswith(".py")):
            continue
        depth = len(match.group(1)) // 2
        stack[depth:] = [match.group(2) + (match.group(3) or "")]
        path = root.joinpath(*stack)
        if not path.exists():
            missing.append(str(path.relative_to(root)))
    assert missing == []


@pytest.mark.parametrize("room", sorted({r for rooms in LAYERS for r in rooms} - {"api"}))
def test_the_readme_layout_names_every_room(room):
    assert re.search(rf"^  {room}/", readme_layout(), re.M), f"the layout in docs/architecture.md does not show {room}/"
