"""The run-directory reader on good and broken runs (synthetic runs from rundirs.py)."""

import json
import shutil

import numpy as np
import pytest

from fmnist.errors import UserError
from fmnist.rundir import layout
from rundirs import write_compare_run, write_single_run


def test_load_compare_run(tmp_path):
    folder = write_compare_run(tmp_path / "run")
    run = layout.load_run(folder)
    assert run.kind == "compare" and list(run.models) == ["linear", "cnn"]
    assert run.models["cnn"].features is not None and run.models["linear"].features is None
    assert run.test_images["images"].shape == (100, 28, 28)
    for model in run.models.values():
        assert model.metrics["test"]["n"] == 100 and model.metrics["val"]["n"] == 60


def test_load_single_run(tmp_path):
    run = layout.load_run(write_single_run(tmp_path / "one"))
    assert run.kind == "single" and list(run.models) == ["mlp"] and run.test_images is None
    assert run.models["mlp"].history["val_accuracy"].shape == (3,)


def edit_json(path, **changes):
    obj = json.loads(path.read_text())
    obj.update(changes)
    path.write_text(json.dumps(obj))


def drop_key(path, key):
    obj = json.loads(path.read_text())
    del obj[key]
    path.write_text(json.dumps(obj))


def rewrite_npz(path, **changes):
    arrays = dict(np.load(path))
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del arrays[key]
    np.savez(path, **arrays)


def keep_only(folder, name):
    for entry in folder.iterdir():
        if entry.name != name:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


# (description, run kind, how to break it, the file named, words of the message)
BROKEN = [
    ("absent", "single", lambda r: shutil.rmtree(r), "", "no such run directory"),
    ("empty", "single", lambda r: keep_only(r, ""), "", "empty directory"),
    ("a file", "single", lambda r: (shutil.rmtree(r), r.write_text("x")), "", "not a directory"),
    ("older config", "single", lambda r: drop_key(r / "config.json", "layout_version"), "config.json", "older"),
    ("newer config", "single", lambda r: edit_json(r / "config.json", layout_version=3), "config.json", "reads 2"),
    ("layout 1", "single", lambda r: edit_json(r / "config.json", layout_version=1), "config.json", "reads 2"),
    (
        "no detailed metrics",
        "single",
        lambda r: drop_key(r / "metrics.json", "test"),
        "metrics.json",
        "'test'",
    ),
    ("older compare", "compare", lambda r: drop_key(r / "compare.json", "layout_version"), "compare.json", "older"),
    ("bad json", "single", lambda r: (r / "config.json").write_text("{not json"), "config.json", "unreadable"),
    ("no seed", "single", lambda r: drop_key(r / "config.json", "seed"), "config.json", "'seed'"),
    ("no predictions", "single", lambda r: (r / "predictions.npz").unlink(), "predictions.npz", "missing"),
    ("no metrics", "single", lambda r: (r / "metrics.json").unlink(), "metrics.json", "fmnist train"),
    ("metric absent", "single", lambda r: drop_key(r / "metrics.json", "parameters"), "metrics.json", "'parameters'"),
    (
        "metric not a number",
        "single",
        lambda r: edit_json(r / "metrics.json", parameters="many"),
        "metrics.json",
        "parameters is 'many', not a whole number",
    ),
    ("missing columns", "single", lambda r: (r / "history.csv").write_text("epoch,loss\n"), "history.csv", "column"),
    ("header only", "single", lambda r: keep_header(r / "history.csv"), "history.csv", "no epochs"),
    ("truncated npz", "single", lambda r: truncate(r / "predictions.npz"), "predictions.npz", "damaged"),
    (
        "array absent",
        "single",
        lambda r: rewrite_npz(r / "predictions.npz", test_logits=None),
        "predictions.npz",
        "'test_logits'",
    ),
    (
        "nan logits",
        "single",
        lambda r: rewrite_npz(r / "predictions.npz", val_logits=np.full((60, 10), np.nan, np.float32)),
        "predictions.npz",
        "NaN",
    ),
    (
        "bad label",
        "single",
        lambda r: rewrite_npz(r / "predictions.npz", val_labels=np.full(60, 10)),
        "predictions.npz",
        "outside",
    ),
    ("no compare.json", "compare", lambda r: (r / "compare.json").unlink(), "compare.json", "fmnist compare"),
    ("stopped at once", "compare", lambda r: keep_only(r, "test_images.npz"), "compare.json", "missing"),
    ("model absent", "compare", lambda r: shutil.rmtree(r / "cnn"), "cnn", "missing"),
    (
        "model half-written",
        "compare",
        lambda r: (r / "cnn" / "metrics.json").unlink(),
        "cnn/metrics.json",
        "incomplete",
    ),
    ("no test images", "compare", lambda r: (r / "test_images.npz").unlink(), "test_images.npz", "missing"),
    (
        "other images",
        "compare",
        lambda r: rewrite_npz(r / "test_images.npz", labels=np.zeros(100, np.int64)),
        "test_images.npz",
        "differ",
    ),
    (
        "wrong model",
        "compare",
        lambda r: edit_json(r / "cnn" / "config.json", model="mlp"),
        "cnn/config.json",
        "expected 'cnn'",
    ),
    (
        "escaping name",
        "compare",
        lambda r: edit_json(r / "compare.json", models=["../x"]),
        "compare.json",
        "models[0] is '../x', expected one of",
    ),
]


def keep_header(path):
    path.write_text(path.read_text().splitlines()[0] + "\n")


def truncate(path):
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize(("kind", "breaker", "culprit", "words"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_run_directories_name_what_is_wrong(tmp_path, kind, breaker, culprit, words):
    folder = tmp_path / "run"
    (write_single_run if kind == "single" else write_compare_run)(folder)
    layout.load_run(folder)  # intact before we break it
    breaker(folder)
    with pytest.raises(UserError) as caught:
        layout.load_run(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(folder / culprit) if culprit else str(folder))
    assert words in message
