"""Execute the notebooks with a kernel of this very interpreter; `make notebooks` and tests/test_notebooks.py use it.

    python scripts/run_notebooks.py [--out runs/notebooks] [--timeout 900] [NOTEBOOK...]

writes each executed notebook and its HTML export to --out. The environment passes through to the kernel, so
FMNIST_NOTEBOOK_SUBSET and FMNIST_NOTEBOOK_EPOCHS select a quick run (unset: the full data).
"""

import argparse
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def execute(path, timeout):
    """Run every cell of the notebook at `path` in its own folder; return the executed notebook.

    Raises nbclient's CellExecutionError on the first cell that fails, or CellTimeoutError when a cell runs
    longer than `timeout` seconds. The kernel is always this interpreter's ipykernel: kernel specs installed on
    the machine are ignored (an empty search path leaves only the native kernel, which runs sys.executable).
    """
    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    client = NotebookClient(notebook, km=manager, timeout=timeout, resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return notebook


def dirty_cells(notebook):
    """Indices of code cells saved with outputs or execution counts (committed notebooks must have none)."""
    return [
        i
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description="execute notebooks and write executed copies with HTML")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "notebooks", help="folder for the copies")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per cell (default: 900)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb")):
        start = time.perf_counter()
        notebook = execute(path, args.timeout)
        nbformat.write(notebook, args.out / path.name)
        html, _ = HTMLExporter().from_notebook_node(notebook)
        (args.out / path.with_suffix(".html").name).write_text(html, encoding="utf-8")
        print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s -> {args.out / path.name} (+ .html)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
