"""No broken module reference: every `src/fmnist/...` path and every dotted `fmnist.` name written in the README,
the docs, the notebooks, the bench scripts and the package's own docstrings and comments exists.

Names are resolved from the source with `ast` (nothing is imported): the longest prefix that is a module or a
package, then each further part a name defined at the top of that module or in the class before it.
"""

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "fmnist"
PATH = re.compile(r"src/fmnist/[\w/.]*\w")
DOTTED = re.compile(r"(?<![\w./-])fmnist(?:\.[A-Za-z_]\w*)+")


def texts():
    """(where, text) of everything that may name a module."""
    places = [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("bench/*.py"), *ROOT.glob("bench/*.md")]
    places += [*ROOT.glob("notebooks/*.ipynb"), *PACKAGE.rglob("*.py"), ROOT / "pyproject.toml", ROOT / "Makefile"]
    return [(p.relative_to(ROOT), p.read_text(encoding="utf-8")) for p in places if p.is_file()]


@cache
def defined(path):
    """{name: the class node or None} of what a module defines at its top."""
    names = {}
    for node in ast.parse(path.read_text()).body:
        names.update(_names(node))
    return names


def _names(node):
    if isinstance(node, ast.ClassDef):
        return {node.name: node}
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return {node.name: None}
    if isinstance(node, ast.Assign):  # A = ... and A, B = ...
        targets = [e for t in node.targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
        return {t.id: None for t in targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id: None}
    if isinstance(node, ast.ImportFrom | ast.Import):
        return {(a.asname or a.name).split(".")[0]: None for a in node.names}
    if isinstance(node, ast.If | ast.Try):  # TYPE_CHECKING blocks, optional imports
        found = {}
        for child in [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]:
            found.update(_names(child))
        return found
    return {}


def resolves(dotted):
    parts = dotted.split(".")[1:]
    here = PACKAGE
    while parts and ((here / parts[0]).is_dir() or (here / f"{parts[0]}.py").is_file()):
        here = here / parts[0] if (here / parts[0]).is_dir() else here / f"{parts.pop(0)}.py"
        if here.is_dir():
            parts.pop(0)
    if not parts:
        return True
    module = here / "__init__.py" if here.is_dir() else here
    if not module.is_file():
        return False
    names = defined(module)
    for part in parts:
        if part not in names:
            return False
        node = names[part]
        names = {k: v for child in node.body for k, v in _names(child).items()} if node is not None else None
        if names is None:
            return True  # an attribute of a function or a value: as far as the source can tell
    return True


def broken():
    found = []
    for where, text in texts():
        for path in sorted(set(PATH.findall(text))):
            if not (ROOT / path).exists():
                found.append(f"{where}: {path}")
        for dotted in sorted(set(DOTTED.findall(text))):
            if not resolves(dotted.rstrip(".")):
                found.append(f"{where}: {dotted}")
    return found


def test_every_module_path_and_dotted_name_resolves():
    assert broken() == []


def test_the_resolver_tells_a_real_name_from_a_missing_one():
    assert resolves("fmnist.engine.loop.LoopConfig.observers")
    assert resolves("fmnist.models.contracts.Classifier")
    assert resolves("fmnist.predict")
    assert not resolves("fmnist.serve.answers")
    assert not resolves("fmnist.engine.loop.NoSuchThing")
    assert not resolves("fmnist.registry")
