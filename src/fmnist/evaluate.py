"""Metrics from logits (scikit-learn), and the reader that checks a run directory before anything uses it.

A run directory is one model's run (config.json at its top) or a compare run (compare.json, test_images.npz and
one sub-directory per model). Every file is checked as it is read, so a missing, older or half-written run fails
with one line naming the file at fault rather than with a traceback from deep inside a plot.
"""

import csv
import dataclasses
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
from scipy.special import softmax
from sklearn import metrics as skm

from fmnist.data import CLASS_NAMES, NUM_CLASSES, SIDE
from fmnist.errors import UserError
from fmnist.files import write_json

LAYOUT_VERSION = 1  # the `layout_version` that runs.py writes into config.json and compare.json
CONFIG_KEYS = ("model", "seed", "hparams", "data")
COMPARE_KEYS = ("models", "seed", "data")
METRICS_KEYS = ("val_accuracy", "test_accuracy", "parameters", "train_seconds", "inference_images_per_s")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr")
SPLITS = ("val", "test")
MODEL_FILES = ("config.json", "history.csv", "metrics.json", "predictions.npz")
TOP_CONFUSIONS = 5


def probabilities(logits):
    """Logits (N, C) -> float64 softmax probabilities (N, C); stable for any logit scale."""
    return softmax(np.asarray(logits, dtype=np.float64), axis=1)


def most_confused(confusion, class_names=CLASS_NAMES, top=TOP_CONFUSIONS):
    """The `top` largest off-diagonal cells of a confusion matrix (C, C): true class -> predicted class."""
    off_diagonal = np.array(confusion, dtype=np.int64)
    np.fill_diagonal(off_diagonal, 0)
    row_totals = np.asarray(confusion).sum(axis=1)
    pairs = []
    for flat in np.argsort(-off_diagonal, axis=None, kind="stable")[:top]:
        true, predicted = divmod(int(flat), off_diagonal.shape[1])
        count = int(off_diagonal[true, predicted])
        if count == 0:
            break
        pairs.append(
            {
                "true": true,
                "true_name": class_names[true],
                "predicted": predicted,
                "predicted_name": class_names[predicted],
                "count": count,
                "rate": count / int(row_totals[true]),  # the share of the true class sent to `predicted`
            }
        )
    return pairs


def metrics_from_logits(logits, labels, class_names=CLASS_NAMES):
    """Accuracy, log-loss, per-class and macro precision / recall / F1, the confusion matrix (rows: true class,
    columns: predicted class) and the most-confused pairs, for logits (N, C) and integer labels (N,).

    Returns plain Python numbers and lists, ready for JSON.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    classes = list(range(len(class_names)))
    if logits.ndim != 2 or logits.shape != (len(labels), len(classes)):
        raise ValueError(f"logits {logits.shape} do not match labels {labels.shape} and {len(classes)} classes")
    predicted = logits.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0.0
    )
    confusion = skm.confusion_matrix(labels, predicted, labels=classes)
    return {
        "n": len(labels),
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "log_loss": float(skm.log_loss(labels, probabilities(logits), labels=classes)),
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
        "per_class": [
            {
                "class": c,
                "name": class_names[c],
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "support": int(support[c]),
            }
            for c in classes
        ],
        "confusion_matrix": confusion.tolist(),
        "most_confused": most_confused(confusion, class_names),
    }


@dataclasses.dataclass(frozen=True)
class ModelRun:
    """One model's run directory, read and checked."""

    name: str
    folder: Path
    config: dict
    history: dict  # column -> float64 (epochs,)
    metrics: dict
    predictions: dict  # val_logits (N, 10), val_labels (N,), test_logits (M, 10), test_labels (M,)
    features: dict | None  # features float (n, D), labels (n,): a sample of test items; None if the model has none


@dataclasses.dataclass(frozen=True)
class Run:
    """A single-model run ("single") or a compare run ("compare") with its models in the order it lists them."""

    folder: Path
    kind: str
    models: dict  # name -> ModelRun
    compare: dict | None  # compare.json, for a compare run
    test_images: dict | None  # images uint8 (M, 28, 28), labels (M,), aligned with every model's test predictions


def _missing(path, rerun):
    return UserError(f"{path}: missing — the run is incomplete; {rerun}")


def _read_json(path, required, rerun):
    if not path.is_file():
        raise _missing(path, rerun)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable ({exc}) — the file is damaged; {rerun}") from exc
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(obj).__name__}; {rerun}")
    if path.name in ("config.json", "compare.json"):
        version = obj.get("layout_version")
        if version is None:
            raise UserError(f"{path}: no layout_version — written by an older fmnist; {rerun}")
        if version != LAYOUT_VERSION:
            raise UserError(f"{path}: layout_version {version!r}, this fmnist reads {LAYOUT_VERSION}; {rerun}")
    absent = [key for key in required if key not in obj]
    if absent:
        raise UserError(f"{path}: no {absent[0]!r} entry — the file is incomplete; {rerun}")
    return obj


def _read_npz(path, keys, rerun):
    if not path.is_file():
        raise _missing(path, rerun)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UserError(f"{path}: unreadable ({exc}) — the file is damaged; {rerun}") from exc
    absent = [key for key in keys if key not in arrays]
    if absent:
        raise UserError(f"{path}: no array {absent[0]!r} — the file is incomplete; {rerun}")
    return arrays


def _check_labelled(path, values_key, values, labels_key, labels, item_shape, rerun):
    """`values` (N, *item_shape) (None: any width) with integer class labels (N,) in 0-9."""
    problem = None
    widths = values.shape[1:]
    if len(widths) != len(item_shape) or not all(w in (None, s) for w, s in zip(item_shape, widths, strict=True)):
        problem = f"{values_key} has shape {values.shape}, expected (N, {', '.join(str(w or 'D') for w in item_shape)})"
    elif labels.shape != (len(values),) or not np.issubdtype(labels.dtype, np.integer):
        problem = f"{labels_key} has shape {labels.shape} and dtype {labels.dtype}, expected {len(values)} integers"
    elif len(labels) == 0:
        problem = f"{labels_key} is empty"
    elif labels.min() < 0 or labels.max() >= NUM_CLASSES:
        problem = f"{labels_key} holds labels outside 0-{NUM_CLASSES - 1}"
    elif np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        problem = f"{values_key} holds NaN or infinite values"
    if problem:
        raise UserError(f"{path}: {problem}; {rerun}")


def _read_history(path, rerun):
    if not path.is_file():
        raise _missing(path, rerun)
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            absent = [c for c in HISTORY_COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise UserError(f"{path}: no {absent[0]!r} column — the file is incomplete or older; {rerun}")
            rows = [[float(row[c]) for c in HISTORY_COLUMNS] for row in reader]
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: unreadable ({exc}) — the file is damaged; {rerun}") from exc
    if not rows:
        raise UserError(f"{path}: no epochs recorded — the run is incomplete; {rerun}")
    return {c: np.array(column) for c, column in zip(HISTORY_COLUMNS, zip(*rows, strict=True), strict=True)}


def load_model_run(folder, name, rerun):
    """Read and check one model's files in `folder`; `name` is the model the caller expects (None: any)."""
    config = _read_json(folder / "config.json", CONFIG_KEYS, rerun)
    if name is not None and config["model"] != name:
        raise UserError(f"{folder / 'config.json'}: model {config['model']!r}, expected {name!r}; {rerun}")
    history = _read_history(folder / "history.csv", rerun)
    metrics = _read_json(folder / "metrics.json", METRICS_KEYS, rerun)
    for key in METRICS_KEYS:
        if isinstance(metrics[key], bool) or not isinstance(metrics[key], int | float):
            raise UserError(f"{folder / 'metrics.json'}: {key} is {metrics[key]!r}, not a number; {rerun}")
    predictions = _read_npz(
        folder / "predictions.npz", [f"{s}_{k}" for s in SPLITS for k in ("logits", "labels")], rerun
    )
    for split in SPLITS:
        logits, labels = f"{split}_logits", f"{split}_labels"
        _check_labelled(
            folder / "predictions.npz", logits, predictions[logits], labels, predictions[labels], (NUM_CLASSES,), rerun
        )
    features = None
    if (folder / "features.npz").exists():
        features = _read_npz(folder / "features.npz", ("features", "labels"), rerun)
        _check_labelled(
            folder / "features.npz", "features", features["features"], "labels", features["labels"], (None,), rerun
        )
    return ModelRun(config["model"], folder, config, history, metrics, predictions, features)


def _load_test_images(path, models, rerun):
    images = _read_npz(path, ("images", "labels"), rerun)
    _check_labelled(path, "images", images["images"], "labels", images["labels"], (SIDE, SIDE), rerun)
    for model in models.values():
        if not np.array_equal(images["labels"], model.predictions["test_labels"]):
            raise UserError(
                f"{path}: labels differ from {model.folder / 'predictions.npz'} test_labels — "
                f"the files come from different runs; {rerun}"
            )
    return images


def load_run(run_dir):
    """Read and check a run directory (single-model or compare); raise UserError naming whatever is missing."""
    folder = Path(run_dir)
    if not folder.exists():
        raise UserError(f"{folder}: no such run directory")
    if not folder.is_dir():
        raise UserError(f"{folder}: not a directory — pass a run directory")
    entries = list(folder.iterdir())
    if not entries:
        raise UserError(f"{folder}: empty directory, not a run — run `fmnist train` or `fmnist compare` first")
    single = any((folder / name).exists() for name in MODEL_FILES)
    # `fmnist compare` writes test_images.npz first and compare.json last: anything between is a stopped run.
    started_compare = (folder / "test_images.npz").exists() or any((e / "config.json").exists() for e in entries)
    if (folder / "compare.json").exists() or (started_compare and not single):
        rerun = "rerun `fmnist compare`"
        compare = _read_json(folder / "compare.json", COMPARE_KEYS, rerun)
        names = compare["models"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise UserError(f"{folder / 'compare.json'}: 'models' must be a non-empty list of model names; {rerun}")
        models = {}
        for name in names:
            if Path(name).name != name or name in (".", ".."):
                raise UserError(f"{folder / 'compare.json'}: {name!r} is not a model name; {rerun}")
            if not (folder / name).is_dir():
                raise _missing(folder / name, rerun)
            models[name] = load_model_run(folder / name, name, rerun)
        test_images = _load_test_images(folder / "test_images.npz", models, rerun)
        return Run(folder, "compare", models, compare, test_images)
    if single:
        rerun = "rerun `fmnist train`"
        model = load_model_run(folder, None, rerun)
        models = {model.name: model}
        # A single run may carry its test images too; without them the report leaves out the image galleries.
        test_images = None
        if (folder / "test_images.npz").exists():
            test_images = _load_test_images(folder / "test_images.npz", models, rerun)
        return Run(folder, "single", models, None, test_images)
    raise UserError(f"{folder}: not a run directory (no config.json or compare.json)")


def evaluate_run(run):
    """Detailed metrics of every model on both splits, each written to the model's evaluation.json.

    `run` is a Run or a run directory. Returns {model: {"val": metrics, "test": metrics}}.
    """
    if not isinstance(run, Run):
        run = load_run(run)
    results = {}
    for name, model in run.models.items():
        p = model.predictions
        results[name] = {s: metrics_from_logits(p[f"{s}_logits"], p[f"{s}_labels"]) for s in SPLITS}
        write_json(model.folder / "evaluation.json", {"layout_version": LAYOUT_VERSION, "model": name, **results[name]})
    return results


def format_summary(results, split="test"):
    """A plain-text table of one split's metrics per model, for the terminal."""
    header = f"{'model':<14}{'accuracy':>10}{'macro F1':>10}{'log-loss':>10}  {'weakest class (F1)':<24}top confusion"
    lines = [f"{split} split", header]
    for name, by_split in results.items():
        m = by_split[split]
        weakest = min(m["per_class"], key=lambda row: row["f1"])
        top = m["most_confused"][0] if m["most_confused"] else None
        confusion = f"{top['true_name']} -> {top['predicted_name']} ({top['count']})" if top else "none"
        lines.append(
            f"{name:<14}{m['accuracy']:>10.2%}{m['macro']['f1']:>10.4f}{m['log_loss']:>10.4f}  "
            f"{weakest['name'] + ' (' + format(weakest['f1'], '.3f') + ')':<24}{confusion}"
        )
    return "\n".join(lines)
