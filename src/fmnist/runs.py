"""Train one model and write its run directory: config, history, checkpoint, predictions, metrics.

metrics.json is written last: its presence marks a complete run, so a killed run is seen as half-written.
"""

import contextlib
import csv
import io
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from fmnist import __version__, checkpoint, registry
from fmnist import data as data_module
from fmnist.errors import UserError
from fmnist.files import atomic_path, read_json, write_json, write_text

LAYOUT_VERSION = 1
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr")
FEATURE_SAMPLE = 2_000


def environment():
    """Versions and machine facts recorded beside every result."""
    versions = {"python": platform.python_version(), "fmnist": __version__}
    for package in ("numpy", "torch", "scikit-learn", "matplotlib", "Pillow", "safetensors"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "machine": {"platform": platform.platform(), "processor": cpu_name(), "cpus": os.cpu_count()},
    }


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def config_record(model_name, hparams, preset, seed, dataset, subset=None):
    return {
        "layout_version": LAYOUT_VERSION,
        "model": model_name,
        "preset": preset,
        "seed": seed,
        "hparams": {k: list(v) if isinstance(v, tuple) else v for k, v in hparams.items()},
        "subset": subset,
        "data": dataset.provenance(),
        "command": sys.argv,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **environment(),
    }


def subset_size(splits):
    """None for the full split, else the number of training images used."""
    return None if len(splits.y_train) == 48_000 else len(splits.y_train)


def write_history(path, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_npz(path, **arrays):
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def write_test_images(out_dir, splits):
    """The test images beside the results, so a report can show mistakes without re-reading the dataset."""
    write_npz(Path(out_dir) / "test_images.npz", images=splits.x_test, labels=splits.y_test)


def timed_logits(model, images):
    """(logits (N, 10), images per second) for batched inference over `images`."""
    start = time.perf_counter()
    logits = model.predict_logits(images)
    return logits, len(images) / max(time.perf_counter() - start, 1e-9)


def accuracy(logits, labels):
    return float((np.argmax(logits, axis=1) == labels).mean())


def write_predictions(out_dir, model, splits):
    """Val and test logits of `model` into predictions.npz; return (val_logits, test_logits, images/s)."""
    val_logits, _ = timed_logits(model, splits.x_val)
    test_logits, images_per_s = timed_logits(model, splits.x_test)
    write_npz(
        Path(out_dir) / "predictions.npz",
        val_logits=val_logits.astype(np.float32),
        val_labels=splits.y_val,
        test_logits=test_logits.astype(np.float32),
        test_labels=splits.y_test,
    )
    return val_logits, test_logits, images_per_s


def check_same_data(run_dir, config, dataset):
    """The figures of a run are about the data files it recorded: refuse other ones."""
    if config.get("data", {}).get("sha256") != dataset.sha256:
        found = dataset.paths["train_images"].parent
        raise UserError(f"{Path(run_dir) / 'config.json'}: the run was made from other data files than {found}")


def resume_settings(run_dir, model_name):
    """(hparams, config) of the `fmnist train` run in run_dir: what a resumed run must use again."""
    path = Path(run_dir) / "config.json"
    config = read_json(path, "file not found (not a run directory written by fmnist train)")
    config = config if isinstance(config, dict) else {}
    missing = [key for key in ("model", "hparams", "preset", "seed") if key not in config]
    if missing or not isinstance(config["hparams"], dict):
        raise UserError(f"{path}: not a run's config (no {', '.join(missing) or 'hyper-parameter table'})")
    if config.get("model") != model_name:
        raise UserError(f"{run_dir}: holds a {config.get('model')!r} run, not {model_name!r}")
    return registry.spec(model_name).from_json(config["hparams"]), config


def reevaluate(run_dir, data_dir=None, allow_unverified=False):
    """Reload every saved model under run_dir, predict its recorded split again, refresh predictions and metrics.

    The data must have the checksums the run recorded, so the figures are about the same images.
    """
    run_dir = Path(run_dir)
    model_dirs = (
        [run_dir]
        if (run_dir / checkpoint.MANIFEST).exists()
        else sorted(p.parent for p in run_dir.glob(f"*/{checkpoint.MANIFEST}"))
    )
    if not model_dirs:
        raise UserError(f"{run_dir}: no saved models (no {checkpoint.MANIFEST} here or one level down)")
    dataset = data_module.load(data_dir, allow_unverified)
    for model_dir in model_dirs:
        config = read_json(model_dir / "config.json")
        check_same_data(model_dir, config, dataset)
        splits = data_module.split(dataset, config["seed"])
        if config.get("subset"):
            splits = splits.quick(config["subset"])
        model, _ = checkpoint.load(model_dir)
        val_logits, test_logits, images_per_s = write_predictions(model_dir, model, splits)
        metrics = read_json(model_dir / "metrics.json")
        metrics.update(
            val_accuracy=accuracy(val_logits, splits.y_val),
            test_accuracy=accuracy(test_logits, splits.y_test),
            inference_images_per_s=round(images_per_s, 1),
        )
        write_json(model_dir / "metrics.json", metrics)
    return model_dirs


def train_run(
    model_name, hparams, splits, dataset, out_dir, *, preset, seed, progress=True, trained=None, resumer=None
):
    """Fit `model_name` on `splits`, evaluate on validation and test once, write the run directory.

    `trained` maps model names to already trained models that this one may reuse (the hybrid reuses the CNN).
    `resumer` (a `fmnist.resume.Resumer` on out_dir, or None): Ctrl-C and SIGTERM stop training with a
    resumable state; if it holds a saved state, training continues from it. Returns (model, metrics).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = registry.spec(model_name)
    if resumer is None or resumer.saved is None:  # a resumed run keeps the config it was started with
        (out_dir / "metrics.json").unlink(missing_ok=True)  # an older run's: this one is not complete yet
        record = config_record(model_name, hparams, preset, seed, dataset, subset_size(splits))
        write_json(out_dir / "config.json", record)
    reused = {name: trained[name] for name in spec.reuses if trained and name in trained}
    model = spec.load_class()(**hparams, **reused)

    with resumer or contextlib.nullcontext():
        start = time.perf_counter()
        try:
            history = model.fit(splits, seed=seed, progress=progress, resumer=resumer)
        except UserError:
            if resumer is not None:  # a diverged run: continuing it would diverge again
                resumer.finish()
            raise
        train_seconds = time.perf_counter() - start + (resumer.seconds_before if resumer else 0.0)
    if resumer is not None and resumer.stop_requested:
        print("fmnist: training had already finished; writing its results", file=sys.stderr)
    write_history(out_dir / "history.csv", history)
    checkpoint.save(out_dir, model_name, model, data=dataset.provenance())

    val_logits, test_logits, images_per_s = write_predictions(out_dir, model, splits)
    if hasattr(model, "features"):
        pick = np.random.default_rng(seed).permutation(len(splits.x_test))[:FEATURE_SAMPLE]
        write_npz(out_dir / "features.npz", features=model.features(splits.x_test[pick]), labels=splits.y_test[pick])
    metrics = {
        "model": model_name,
        "val_accuracy": accuracy(val_logits, splits.y_val),
        "test_accuracy": accuracy(test_logits, splits.y_test),
        "parameters": int(model.num_parameters()),
        "train_seconds": round(train_seconds, 2),
        "epochs": len(history),
        "best_epoch": int(1 + np.argmax([row["val_accuracy"] for row in history])) if history else None,
        "inference_images_per_s": round(images_per_s, 1),
    }
    checkpoint.update_metrics(out_dir, metrics)
    write_json(out_dir / "metrics.json", metrics)
    if resumer is not None:
        resumer.finish()
    return model, metrics
