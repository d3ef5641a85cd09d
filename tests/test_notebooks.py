"""The notebooks run top to bottom on a small subset and are committed without outputs; the README's Python API
example runs as written."""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 600  # a hung kernel fails the test; 6-14 s per notebook on 1,000 images when the machine is idle
FIGURE_CALLS = (
    "api.examples(",
    "api.learning_curves(",
    "api.convergence(",
    "api.confusion_matrix(",
    "api.misclassified(",
    "api.feature_space(",
    "api.prediction_figure(",
    "api.explanation_figure(",
    "api.templates(",
    "plt.subplots(",
)


def load_runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = load_runner()


def test_the_notebooks_are_found():
    assert [p.name for p in NOTEBOOKS] == [
        "01_mlp_from_scratch.ipynb",
        "02_three_models_and_a_hybrid.ipynb",
        "03_what_the_models_look_at.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_saved_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = runner.dirty_cells(notebook)
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them (Edit > Clear All Outputs) and save"


def test_dirty_cells_finds_outputs_and_execution_counts():
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("text"),
            nbformat.v4.new_code_cell("1", outputs=[nbformat.v4.new_output("stream", text="1")]),
            nbformat.v4.new_code_cell("2", execution_count=3),
            nbformat.v4.new_code_cell("3"),
        ]
    )
    assert runner.dirty_cells(notebook) == [1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_a_subset(path, monkeypatch):
    monkeypatch.setenv("FMNIST_NOTEBOOK_SUBSET", "1000")
    monkeypatch.setenv("FMNIST_NOTEBOOK_EPOCHS", "2")
    notebook = runner.execute(path, timeout=CELL_TIMEOUT)  # any cell's error fails the test
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("name") == "stderr" and "Warning" in o.get("text", "")]
    for cell in notebook.cells:
        if cell.cell_type == "code" and any(call in cell.source for call in FIGURE_CALLS):
            shown = [o for o in cell.outputs if "image/png" in o.get("data", {})]
            assert shown, f"{path.name}: no figure shown inline by\n{cell.source}"


@pytest.mark.slow
def test_readme_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Python API)", "exec"), {"__name__": "readme"})
    assert re.search(r"test accuracy \d+\.\d\d %", capsys.readouterr().out)
    assert (tmp_path / "linear-confusion.png").stat().st_size > 10_000
