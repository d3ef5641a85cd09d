"""What every generated table shares: the newest results file of a benchmark, the line naming its file, date and
processor, and the Markdown of a table (scripts/gen_docs.py and the gen_tables_* modules)."""

import functools
import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def newest(prefix):
    """(path, document) of the newest bench/results/PREFIX-YYYY-MM-DD.json (None, None if there is none)."""
    found = sorted(RESULTS.glob(f"{prefix}-20[0-9][0-9]-[0-9][0-9]-[0-9][0-9].json"), key=lambda p: p.stem[-10:])
    return (found[-1], json.loads(found[-1].read_text())) if found else (None, None)


def where(path, doc):
    """'bench/results/FILE, DATE, CPU (family F model M), N cores' from the common header or an older file's
    own fields."""
    first = doc[0] if isinstance(doc, list) else doc
    head = first.get("header") or {**first.get("machine", {}), **first}
    cpu = head.get("cpu") or "unknown processor"
    if head.get("cpu_family") is not None:
        cpu += f" (family {head['cpu_family']} model {head['cpu_model']})"
    cores = f", {head['cores']} cores" if head.get("cores") else ""
    return f"Source: `{path.relative_to(ROOT)}`, {head.get('date', 'undated')}, {cpu}{cores}."


def pct(share, digits=2):
    return f"{100 * share:.{digits}f} %"


def yes_no(met):
    return "**yes**" if met else "**no**"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)])


def missing(prefix, how):
    return f"No `bench/results/{prefix}-*.json` yet: `{how}` records one."


def from_newest(prefix, how):
    """Decorate `build(doc) -> Markdown` into a generated block of the newest bench/results/PREFIX-*.json: what
    `build` writes, then the line naming that file, its date and processor; without a file, how to record one."""

    def decorate(build):
        @functools.wraps(build)
        def block():
            path, doc = newest(prefix)
            return missing(prefix, how) if doc is None else f"{build(doc)}\n\n{where(path, doc)}"

        return block

    return decorate


def bench_module(name):
    """bench/NAME.py as a module (its siblings, e.g. record and peers, importable beside it)."""
    bench = str(ROOT / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module(name)


def src_module(name):
    """fmnist.NAME from this checkout, whichever fmnist the venv has installed."""
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    return importlib.import_module(name)
