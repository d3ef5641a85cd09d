"""Tiny synthetic run directories (random logits) in the layout fmnist.rundir.layout writes, for reader tests."""

import json

import numpy as np

from fmnist.data.dataset import SHA256
from fmnist.metrics.scores import metrics_from_logits
from fmnist.rundir import layout

DATA = {
    "paths": {role: f"/data/{role}.gz" for role in SHA256},
    "sha256": dict(SHA256),
    "verified": True,
}


def noisy_logits(labels, rng, margin=2.5):
    """Random logits (N, 10) that favour the true label by `margin`: mostly right, with some mistakes."""
    logits = rng.normal(size=(len(labels), 10)).astype(np.float32)
    logits[np.arange(len(labels)), labels] += margin
    return logits


def write_model_dir(folder, name, test_labels, rng, *, features=False, margin=2.5, hparams=None, n_val=60):
    """One model's run directory as pipeline.train_one writes it."""
    folder.mkdir(parents=True)
    config = {
        "layout_version": layout.LAYOUT_VERSION,
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
    detailed = {
        "val": metrics_from_logits(val_logits, val_labels),
        "test": metrics_from_logits(test_logits, test_labels),
    }
    metrics = {
        "model": name,
        "val_accuracy": detailed["val"]["accuracy"],
        "test_accuracy": detailed["test"]["accuracy"],
        "parameters": 1234,
        "train_seconds": 2.4,
        "inference_images_per_s": 5000.0,
        **detailed,
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
    record = {"layout_version": layout.LAYOUT_VERSION, "model": "compare", "preset": "fast", "seed": 7}
    record.update(data=DATA, models=list(names), versions={"fmnist": "test"})
    (folder / "compare.json").write_text(json.dumps(record))
    return folder
