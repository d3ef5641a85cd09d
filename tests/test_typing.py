"""The typed part of the package: the two contracts, the Python API and the room that answers images.

mypy checks those modules in `make lint` ([tool.mypy] in pyproject.toml); this test makes sure there is something
to check: every public function and method in them has its parameters and its return annotated.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fmnist"
TYPED = [PACKAGE / "api.py", *sorted((PACKAGE / "predict").rglob("*.py"))]


def unannotated(path):
    """'module.function' for each public function of `path` (methods of public classes included) that lacks
    an annotation on a parameter (self and cls aside) or on its return."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(body, prefix):
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                public = not node.name.startswith("_") or node.name == "__init__"
                args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
                args += [a for a in (node.args.vararg, node.args.kwarg) if a]
                bare = [a.arg for a in args if a.annotation is None and a.arg not in ("self", "cls", "ctx")]
                returns = node.returns is not None or node.name == "__init__"
                if public and (bare or not returns):
                    found.append(f"{path.stem}.{prefix}{node.name}")

    visit(tree.body, "")
    return found


def test_every_public_function_of_the_typed_modules_is_annotated():
    assert [name for path in TYPED for name in unannotated(path)] == []


def test_the_check_sees_a_missing_annotation(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f(a: int) -> int: ...\ndef g(a) -> int: ...\ndef _h(a): ...\nclass C:\n  def m(self): ...\n")
    assert unannotated(module) == ["m.g", "m.C.m"]
