"""The models a server answers with: every model of a run directory loaded and verified once, each named with
its checkpoint's version (which weights gave an answer)."""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from fmnist.data.dataset import CLASS_NAMES
from fmnist.errors import UserError
from fmnist.predict import answers
from fmnist.rundir import checkpoint, schema
from fmnist.serve import cards
from fmnist.serve import runtime as runtimes


@dataclasses.dataclass(frozen=True)
class ServedModel:
    name: str
    kind: str
    model: object
    val_accuracy: float
    test_accuracy: float
    parameters: int
    version: str  # the checkpoint's SHA-256 prefix (`checkpoint_version`): which weights gave an answer
    card: str | None = None  # MODEL_CARD.md's text (fmnist.serve.cards)

    def describe(self):
        fields = ("name", "kind", "version", "val_accuracy", "test_accuracy", "parameters")
        return {field: getattr(self, field) for field in fields}


def load_one(folder, name, runtime=("torch", "auto")):
    """One verified model, ready to answer with `runtime` ((torch or onnx, device); fmnist.serve.runtime)."""
    model, manifest = checkpoint.load(folder, calibrated=True)
    model = runtimes.prepare(model, folder, manifest, runtime)
    if manifest.get("class_names") != list(CLASS_NAMES):
        raise UserError(f"{folder / checkpoint.MANIFEST}: its class names are not Fashion-MNIST's")
    metrics = schema.read_metrics(folder / "metrics.json")  # finite numbers in range, or a one-line error
    values = {key: kind(metrics[key]) for key, kind in (("val_accuracy", float), ("test_accuracy", float))}
    values["parameters"] = int(metrics["parameters"])
    answers.probabilities(model, np.zeros((1, 28, 28), np.uint8))  # a model that loads but cannot run: now
    values |= {"version": checkpoint_version(manifest), "card": cards.read(folder)}
    return ServedModel(name=name, kind=manifest["kind"], model=model, **values)


def checkpoint_version(manifest):
    """12 hex digits of the SHA-256 of the checkpoint's manifest (canonical JSON), which holds every weight
    file's SHA-256: two checkpoints share it only if their weights are the same bytes."""
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()[:12]


def load_run(run_dir, runtime=("torch", "auto")):
    """Verify and load every model of a run directory: ({name: ServedModel}, default name = best validation)."""
    folders = checkpoint.models_of(run_dir)
    single = len(folders) == 1 and folders[0] == Path(run_dir)
    served = {}
    for folder in folders:
        one = load_one(folder, None, runtime)
        served[one.kind if single else folder.name] = dataclasses.replace(one, name=one.kind if single else folder.name)
    best = max(served.values(), key=lambda m: m.val_accuracy)
    return served, best.name
