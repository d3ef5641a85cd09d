"""One header and one place for every benchmark's results: where and on what each figure was measured.

Every `bench/bench_*.py` script takes its header from `header()`, prints `title(...)` above its table and writes its
JSON document through `save(NAME, doc, args.out)`: `{"header": ..., **doc}` in `bench/results/NAME-YYYY-MM-DD.json`
unless `--out FILE` says where. The header holds the date (ISO 8601 with seconds and the UTC offset), the processor
(model name, family and model number, the instruction sets that matter for speed here), the usable cores, the torch
and fmnist versions and the commit of this checkout (and whether tracked files differ from it).

Nothing runs at import time, and nothing from fmnist is imported until a function needs it, so a script's worker
subprocesses (and a run against an older checkout on PYTHONPATH) pay nothing for it.
"""

import datetime
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CPUINFO = Path("/proc/cpuinfo")
# The instruction sets whose presence changes which kernels (and how fast) torch and oneDNN run here.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
FIELDS = ("date", "cpu", "cpu_family", "cpu_model", "cpu_flags", "cores", "torch", "fmnist", "commit", "dirty")


def cpuinfo(path=CPUINFO):
    """{field: value} of the first processor in /proc/cpuinfo; {} where there is none (not Linux)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough: every core of these machines is alike
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _number(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def cpu_name():
    """The processor's model name, as `fmnist.engine.machine.cpu_name` gives it (read here where that is missing,
    e.g. in an older checkout put on PYTHONPATH)."""
    try:
        from fmnist.engine.machine import cpu_name as package_cpu_name
    except ImportError:
        return cpuinfo().get("model name") or "unknown"
    return package_cpu_name()


def cores():
    """Cores this process may run on (its affinity mask, which a container or `taskset` narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks (macOS)
        return os.cpu_count() or 1


def version(package):
    """An installed distribution's version, None if it is absent."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(folder, *words):
    done = subprocess.run(
        ["git", "--no-optional-locks", "-C", str(folder), *words],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return done.stdout


def commit(folder=HERE):
    """(HEAD's hash, whether tracked files differ from it) of the git repository `folder` is in; (None, None)
    without git or outside a repository. Untracked files (results written here, say) do not count as changes."""
    try:
        head = _git(folder, "rev-parse", "HEAD").strip()
        changed = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head or None, bool(changed.strip())


def header():
    """Where and on what a benchmark ran: a dict of `FIELDS` (see the module's docstring); never fails."""
    import fmnist

    info = cpuinfo()
    flags = set(info.get("flags", "").split())
    head, dirty = commit()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "cpu_family": _number(info.get("cpu family")),
        "cpu_model": _number(info.get("model")),
        "cpu_flags": [flag for flag in SPEED_FLAGS if flag in flags],
        "cores": cores(),
        "torch": version("torch"),
        "fmnist": fmnist.__version__,
        "commit": head,
        "dirty": dirty,
    }


def title(text, head):
    """One line above a printed table: `text`, the date, the processor, the cores, torch and the commit, e.g.
    "TEXT — 2026-12-07T11:40:02+00:00 — AMD EPYC (family 25 model 17), 2 cores, torch 2.13.0, commit abc1234"."""
    cpu = head["cpu"]
    if head.get("cpu_family") is not None and head.get("cpu_model") is not None:
        cpu += f" (family {head['cpu_family']} model {head['cpu_model']})"
    parts = [cpu, f"{head['cores']} cores"]
    if head.get("torch"):
        parts.append(f"torch {head['torch']}")
    if head.get("commit"):
        parts.append(f"commit {head['commit'][:7]}" + (" (dirty)" if head.get("dirty") else ""))
    return f"{text} — {head['date']} — {', '.join(parts)}"


def path_for(name, head, out=None):
    """`out` if given, else bench/results/NAME-YYYY-MM-DD.json (the date the header's)."""
    return Path(out) if out else RESULTS / f"{name}-{head['date'][:10]}.json"


def save(name, doc, out=None, *, head=None):
    """Write `{"header": head, **doc}` (`head`: `header()` unless given, e.g. the one a title was printed from)
    as indented UTF-8 JSON with a final newline, atomically, to `out` or to bench/results/NAME-YYYY-MM-DD.json
    (folders made as needed); print the path on stderr and return it."""
    from fmnist.files import write_json

    if "header" in doc:
        raise ValueError("save: the document has its own 'header'; the header is record.header()'s")
    head = header() if head is None else head
    path = path_for(name, head, out)
    write_json(path, {"header": head, **doc})
    print(f"wrote {path}", file=sys.stderr)
    return path
