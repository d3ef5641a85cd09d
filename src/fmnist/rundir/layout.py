"""The run directory: its file names, its format version, the writer and the reader, in one place.

A run directory is one model's run (config.json at its top) or a compare run (compare.json, test_images.npz and
one sub-directory per model). Each fact is written once: the settings in config.json, the epochs in
history.csv, every metric in metrics.json (written last: its presence marks a complete run), the logits in
predictions.npz, the weights and their normalisation in the checkpoint (fmnist.rundir.checkpoint). The reader checks
every file as it reads it, so a missing, older or half-written run fails with one line naming the file at
fault rather than with a traceback from deep inside a plot.
"""

import csv
import dataclasses
import io
import math
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from fmnist.data.dataset import NUM_CLASSES, SIDE
from fmnist.engine import machine
from fmnist.errors import UserError
from fmnist.files import atomic_path, read_json, read_versioned, write_json, write_text
from fmnist.models import registry
from fmnist.rundir import schema
from fmnist.rundir.schema import LAYOUT_VERSION

CONFIG, COMPARE, HISTORY, METRICS = "config.json", "compare.json", "history.csv", "metrics.json"
PREDICTIONS, FEATURES, TEST_IMAGES = "predictions.npz", "features.npz", "test_images.npz"
CARD = "MODEL_CARD.md"  # fmnist.report.card writes it, GET /models/NAME/card serves it
ATTRIBUTIONS = (
    "attributions.npz"  # a few test images with their attribution maps (fmnist.predict.explain.attribute.gallery)
)
SPLITS = ("val", "test")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr")
MODEL_FILES = (CONFIG, HISTORY, METRICS, PREDICTIONS)
MAX_ARRAY_BYTES = 1_000_000_000  # a run's .npz files hold ~10 MB (the test images and their logits)
MAX_HISTORY_BYTES = 10_000_000  # history.csv: one short line per epoch

# -- writing ---------------------------------------------------------------------------------------------------


def config_record(model_name, hparams, run, dataset):
    """config.json's content. run: {"preset", "seed", "subset"} (subset None for the full split)."""
    return {
        "layout_version": LAYOUT_VERSION,
        "model": model_name,
        **run,
        "hparams": registry.to_json(hparams),
        "data": dataset.provenance(),
        "command": sys.argv,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **machine.environment(),
    }


def write_history(folder, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(Path(folder) / HISTORY, buffer.getvalue())


def write_npz(path, **arrays):
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def write_predictions(folder, logits, splits):
    """logits: {"val": (N, 10), "test": (M, 10)} with the labels of `splits`."""
    arrays = {f"{s}_logits": np.asarray(logits[s], dtype=np.float32) for s in SPLITS}
    write_npz(Path(folder) / PREDICTIONS, **arrays, val_labels=splits.y_val, test_labels=splits.y_test)


def write_test_images(folder, splits):
    """The test images beside the results, so a report can show mistakes without re-reading the dataset."""
    write_npz(Path(folder) / TEST_IMAGES, images=splits.x_test, labels=splits.y_test)


def write_metrics(folder, metrics):
    write_json(Path(folder) / METRICS, metrics)


def read_config(folder, model_name):
    """config.json of the `fmnist train` run in `folder`, checked to be a `model_name` run."""
    path = Path(folder) / CONFIG
    missing = "file not found (not a run directory written by fmnist train)"
    config = read_versioned(path, "layout_version", LAYOUT_VERSION, missing=missing, hint="train the run anew")
    if isinstance(config.get("model"), str) and config["model"] != model_name:
        raise UserError(f"{folder}: holds a {config['model']!r} run, not {model_name!r}")
    return schema.read_config(path)


def check_same_data(folder, config, dataset):
    """The figures of a run are about the data files it recorded: refuse other ones."""
    if config["data"]["sha256"] != dataset.sha256:
        found = dataset.paths["train_images"].parent
        raise UserError(f"{Path(folder) / CONFIG}: the run was made from other data files than {found}")


# -- reading ---------------------------------------------------------------------------------------------------


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
    attributions: dict | None = None  # images, labels, targets, maps (n, 28, 28), method[, templates]; or None


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


def _read_json(path, reader, rerun):
    """A run file read and checked by its schema's `reader`; a missing one names the command to rerun."""
    if not path.is_file():
        raise _missing(path, rerun)
    return reader(path, rerun)


def _npz_bytes(path):
    """What the arrays of an .npz take in memory, from their .npy headers (a compressed file can hold a bomb)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist()[:1000]:
            with archive.open(member) as fh:
                version = np.lib.format.read_magic(fh)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"{member.filename}: .npy format {version}, numpy writes 1.0 or 2.0")
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
            total += math.prod(shape) * dtype.itemsize
    return total


def _read_npz(path, keys, rerun):
    if not path.is_file():
        raise _missing(path, rerun)
    try:
        if (size := _npz_bytes(path)) > MAX_ARRAY_BYTES:
            raise UserError(f"{path}: its arrays would take {size:,} bytes, more than a run writes; {rerun}")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, MemoryError) as exc:
        raise UserError(f"{path}: unreadable ({type(exc).__name__}: {exc}) — the file is damaged; {rerun}") from None
    absent = [key for key in keys if key not in arrays]
    if absent:
        raise UserError(f"{path}: no array {absent[0]!r} — the file is incomplete; {rerun}")
    return arrays


def _check_labelled(path, arrays, keys, item_shape, rerun):
    """arrays[values_key] (N, *item_shape) (None: any width) with integer class labels arrays[labels_key] (N,)."""
    (values_key, values), (labels_key, labels) = ((k, arrays[k]) for k in keys)
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
    if path.stat().st_size > MAX_HISTORY_BYTES:
        raise UserError(f"{path}: over {MAX_HISTORY_BYTES:,} bytes, not a history fmnist writes; {rerun}")
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
    if not np.isfinite(rows).all():
        raise UserError(f"{path}: holds NaN or infinite values; {rerun}")
    return {c: np.array(column) for c, column in zip(HISTORY_COLUMNS, zip(*rows, strict=True), strict=True)}


def load_model_run(folder, name, rerun):
    """Read and check one model's files in `folder`; `name` is the model the caller expects (None: any)."""
    if not (folder / CONFIG).is_file():
        raise _missing(folder / CONFIG, rerun)
    config = read_versioned(folder / CONFIG, "layout_version", LAYOUT_VERSION, hint=rerun)
    if name is not None and config.get("model") != name:
        raise UserError(f"{folder / CONFIG}: model {config.get('model')!r}, expected {name!r}; {rerun}")
    config = schema.read_config(folder / CONFIG, rerun, hparams=False)
    history = _read_history(folder / HISTORY, rerun)
    metrics = _read_json(folder / METRICS, schema.read_metrics, rerun)
    predictions = _read_npz(folder / PREDICTIONS, [f"{s}_{k}" for s in SPLITS for k in ("logits", "labels")], rerun)
    for split in SPLITS:
        logits, labels = f"{split}_logits", f"{split}_labels"
        _check_labelled(folder / PREDICTIONS, predictions, (logits, labels), (NUM_CLASSES,), rerun)
    features = None
    if (folder / FEATURES).exists():
        features = _read_npz(folder / FEATURES, ("features", "labels"), rerun)
        _check_labelled(folder / FEATURES, features, ("features", "labels"), (None,), rerun)
    attributions = None
    if (folder / ATTRIBUTIONS).exists():
        attributions = _read_npz(folder / ATTRIBUTIONS, ("images", "labels", "targets", "maps", "method"), rerun)
        _check_labelled(folder / ATTRIBUTIONS, attributions, ("maps", "targets"), (SIDE, SIDE), rerun)
    return ModelRun(config["model"], folder, config, history, metrics, predictions, features, attributions)


def _load_test_images(path, models, rerun):
    images = _read_npz(path, ("images", "labels"), rerun)
    _check_labelled(path, images, ("images", "labels"), (SIDE, SIDE), rerun)
    for model in models.values():
        if not np.array_equal(images["labels"], model.predictions["test_labels"]):
            raise UserError(
                f"{path}: labels differ from {model.folder / PREDICTIONS} test_labels — "
                f"the files come from different runs; {rerun}"
            )
    return images


def _is_seeds_study(folder):
    if not (folder / COMPARE).is_file():
        return False
    record = read_json(folder / COMPARE)
    return isinstance(record, dict) and isinstance(record.get("seeds"), list)


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
    started_compare = (folder / TEST_IMAGES).exists() or any((e / CONFIG).exists() for e in entries)
    if (folder / COMPARE).exists() or (started_compare and not single):
        rerun = "rerun `fmnist compare`"
        if _is_seeds_study(folder):
            raise UserError(
                f"{folder}: a compare over seeds; its report.md sums them up, seed-N/ holds each seed's run"
            )
        compare = _read_json(folder / COMPARE, schema.read_compare, rerun)
        names = compare["models"]
        models = {}
        for name in names:
            if Path(name).name != name or name in (".", ".."):
                raise UserError(f"{folder / COMPARE}: {name!r} is not a model name; {rerun}")
            if not (folder / name).is_dir():
                raise _missing(folder / name, rerun)
            if (folder / name).is_symlink():
                raise UserError(f"{folder / name}: a symbolic link; a compare run's model folders must be its own")
            models[name] = load_model_run(folder / name, name, rerun)
        test_images = _load_test_images(folder / TEST_IMAGES, models, rerun)
        return Run(folder, "compare", models, compare, test_images)
    if single:
        rerun = "rerun `fmnist train`"
        model = load_model_run(folder, None, rerun)
        models = {model.name: model}
        # A single run may carry its test images too; without them the report leaves out the image galleries.
        test_images = None
        if (folder / TEST_IMAGES).exists():
            test_images = _load_test_images(folder / TEST_IMAGES, models, rerun)
        return Run(folder, "single", models, None, test_images)
    raise UserError(f"{folder}: not a run directory (no config.json or compare.json)")
