"""Metrics against scikit-learn computed independently, and the run-directory reader on good and broken runs.

`write_single_run` and `write_compare_run` build tiny synthetic run directories (random logits) in the layout
runs.py and compare.py write; test_report.py uses them too.
"""

import json
import shutil
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from fmnist import evaluate, runs
from fmnist.data import CLASS_NAMES, SHA256
from fmnist.errors import UserError

DATA = {
    "paths": {role: f"/data/{role}.gz" for role in SHA256},
    "sha256": dict(SHA256),
    "verified": True,
}


def numpy_softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def noisy_logits(labels, rng, margin=2.5):
    """Random logits (N, 10) that favour the true label by `margin`: mostly right, with some mistakes."""
    logits = rng.normal(size=(len(labels), 10)).astype(np.float32)
    logits[np.arange(len(labels)), labels] += margin
    return logits


def write_model_dir(folder, name, test_labels, rng, *, features=False, margin=2.5, hparams=None, n_val=60):
    """One model's run directory as runs.train_run writes it."""
    folder.mkdir(parents=True)
    config = {
        "layout_version": evaluate.LAYOUT_VERSION,
        "model": name,
        "preset": "fast",
        "seed": 7,
        "hparams": hparams or {"lr": 0.01, "hidden": [8]},
        "subset": 500,
        "data": DATA,
        "versions": {"fmnist": "test"},
    }
    (folder / "config.json").write_text(json.dumps(config))
    lines = ["epoch,loss,accuracy,val_loss,val_accuracy,seconds,lr"]
    lines += [f"{e},{1.5 / e},{0.5 + 0.1 * e},{1.6 / e},{0.45 + 0.1 * e},{0.8 * e},0.01" for e in (1, 2, 3)]
    (folder / "history.csv").write_text("\n".join(lines) + "\n")
    val_labels = rng.integers(0, 10, n_val)
    val_logits, test_logits = noisy_logits(val_labels, rng, margin), noisy_logits(test_labels, rng, margin)
    np.savez(
        folder / "predictions.npz",
        val_logits=val_logits,
        val_labels=val_labels,
        test_logits=test_logits,
        test_labels=test_labels,
    )
    if features:
        centres = rng.normal(size=(10, 16)) * 3
        sample = centres[test_labels] + rng.normal(size=(len(test_labels), 16))
        np.savez(folder / "features.npz", features=sample.astype(np.float32), labels=test_labels)
    metrics = {
        "model": name,
        "val_accuracy": float((val_logits.argmax(1) == val_labels).mean()),
        "test_accuracy": float((test_logits.argmax(1) == test_labels).mean()),
        "parameters": 1234,
        "train_seconds": 2.4,
        "inference_images_per_s": 5000.0,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))


def make_test_labels(rng, n_test=100):
    return rng.permutation(np.arange(n_test) % 10).astype(np.int64)


def write_single_run(folder, seed=0, margin=2.5, hparams=None):
    rng = np.random.default_rng(seed)
    write_model_dir(folder, "mlp", make_test_labels(rng), rng, margin=margin, hparams=hparams)
    return folder


def write_compare_run(folder, names=("linear", "cnn"), seed=0):
    """A compare run: one model directory per name (cnn with features), test_images.npz and compare.json."""
    rng = np.random.default_rng(seed)
    labels = make_test_labels(rng)
    folder.mkdir(parents=True)
    np.savez(
        folder / "test_images.npz", images=rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8), labels=labels
    )
    for name in names:
        write_model_dir(folder / name, name, labels, rng, features=name == "cnn")
    record = {"layout_version": evaluate.LAYOUT_VERSION, "model": "compare", "preset": "fast", "seed": 7}
    record.update(data=DATA, models=list(names), versions={"fmnist": "test"})
    (folder / "compare.json").write_text(json.dumps(record))
    return folder


def test_metrics_equal_sklearn_on_fixed_predictions():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 300)
    logits = noisy_logits(labels, rng, margin=1.5)
    predicted = logits.argmax(axis=1)
    m = evaluate.metrics_from_logits(logits, labels)

    report = skm.classification_report(
        labels, predicted, labels=range(10), target_names=CLASS_NAMES, output_dict=True, zero_division=0
    )
    assert m["n"] == 300
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    for row in m["per_class"]:
        expected = report[row["name"]]
        assert row["name"] == CLASS_NAMES[row["class"]]
        assert row["precision"] == pytest.approx(expected["precision"])
        assert row["recall"] == pytest.approx(expected["recall"])
        assert row["f1"] == pytest.approx(expected["f1-score"])
        assert row["support"] == expected["support"]
    for key, sk_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
        assert m["macro"][key] == pytest.approx(report["macro avg"][sk_key])
    assert m["confusion_matrix"] == skm.confusion_matrix(labels, predicted, labels=range(10)).tolist()
    probs = numpy_softmax(logits.astype(np.float64))
    assert m["log_loss"] == pytest.approx(skm.log_loss(labels, probs, labels=range(10)), rel=1e-9)
    assert m["log_loss"] == pytest.approx(-np.log(probs[np.arange(300), labels]).mean(), rel=1e-9)
    assert json.loads(json.dumps(m)) == m  # plain JSON types all the way down


def test_metrics_by_hand_on_three_classes():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    logits = np.eye(3)[predicted] * 4.0
    m = evaluate.metrics_from_logits(logits, labels, class_names=("a", "b", "c"))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert [r["precision"] for r in m["per_class"]] == pytest.approx([1.0, 0.5, 0.5])
    assert [r["recall"] for r in m["per_class"]] == pytest.approx([2 / 3, 0.5, 1.0])
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    pairs = [(p["true_name"], p["predicted_name"], p["count"]) for p in m["most_confused"]]
    assert pairs == [("a", "b", 1), ("b", "c", 1)]
    assert m["most_confused"][0]["rate"] == pytest.approx(1 / 3)
    # softmax of (4, 0, 0): p(right) = e^4 / (e^4 + 2), p(wrong) = 1 / (e^4 + 2)
    right, wrong = np.log(np.exp(4) + 2) - 4, np.log(np.exp(4) + 2)
    assert m["log_loss"] == pytest.approx((4 * right + 2 * wrong) / 6)


def test_log_loss_is_finite_for_huge_logits():
    labels = np.arange(20) % 10
    logits = (np.eye(10, dtype=np.float32)[(labels + 1) % 10] * 2000.0) - 1000.0  # confidently wrong
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probs = evaluate.probabilities(logits)
        m = evaluate.metrics_from_logits(logits, labels)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0)
    assert np.isfinite(m["log_loss"]) and m["log_loss"] > 10
    assert m["accuracy"] == 0.0


def test_writer_and_reader_agree_on_the_layout_version():
    assert runs.LAYOUT_VERSION == evaluate.LAYOUT_VERSION


def test_load_and_evaluate_compare_run(tmp_path):
    folder = write_compare_run(tmp_path / "run")
    run = evaluate.load_run(folder)
    assert run.kind == "compare" and list(run.models) == ["linear", "cnn"]
    assert run.models["cnn"].features is not None and run.models["linear"].features is None
    assert run.test_images["images"].shape == (100, 28, 28)
    results = evaluate.evaluate_run(folder)
    for name, model in run.models.items():
        written = json.loads((folder / name / "evaluation.json").read_text())
        p = model.predictions
        assert written["test"] == evaluate.metrics_from_logits(p["test_logits"], p["test_labels"])
        assert written["val"] == results[name]["val"]
    summary = evaluate.format_summary(results, "val")
    assert "linear" in summary and "cnn" in summary and "val split" in summary


def test_load_single_run(tmp_path):
    run = evaluate.load_run(write_single_run(tmp_path / "one"))
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
    ("newer config", "single", lambda r: edit_json(r / "config.json", layout_version=2), "config.json", "reads 1"),
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
        "not a number",
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
        "not a model name",
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
    evaluate.load_run(folder)  # intact before we break it
    breaker(folder)
    with pytest.raises(UserError) as caught:
        evaluate.load_run(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(folder / culprit) if culprit else str(folder))
    assert words in message
