"""What each JSON file of a run directory must hold, checked by the one reader (`fmnist.files`).

config.json, compare.json and metrics.json are written by fmnist.rundir.layout and fmnist.jobs; the checkpoint
manifest's schema lives beside it (fmnist.rundir.checkpoint) and a model folder's model.json beside its class
(fmnist.models). Every schema names the fields the code reads, with their types and ranges; other keys are
allowed (a newer fmnist, or another tool, may add some), a wrong type or a value out of range never is. A
hyper-parameter table is checked by the registry, and its errors name the file (never a flag).
"""

from fmnist.data.dataset import CLASS_NAMES, NUM_CLASSES
from fmnist.errors import UserError
from fmnist.files import (
    anything,
    listing,
    mapping,
    number,
    optional,
    read_json,
    read_versioned,
    table,
    text,
    validated,
    whole,
)
from fmnist.models import registry

LAYOUT_VERSION = 2  # 2: all metrics in metrics.json (no evaluation.json), a checkpoint manifest without copies
MAX_EPOCHS = 10_000
SEED = whole(0, 2**63 - 1)
SHARE = number(0, 1)
DATA = mapping({"sha256": table(text(max_length=100), text(max_length=100), high=16)})

CONFIG = mapping(
    {
        "model": text(tuple(registry.REGISTRY)),
        "preset": text(max_length=100),
        "seed": SEED,
        "subset": whole(1, 60_000, null=True),
        "threads": optional(whole(1, 4096, null=True)),
        "hparams": table(text(max_length=100), anything, high=1000),
        "data": DATA,
        "distributed": optional(mapping({}, null=True)),
    }
)
COMPARE = mapping(
    {
        "models": listing(text(tuple(registry.REGISTRY)), low=1, high=len(registry.REGISTRY)),
        "seed": optional(SEED),
        "data": DATA,
    }
)

SCORES = {"precision": SHARE, "recall": SHARE, "f1": SHARE}
PER_CLASS = mapping({"class": whole(0, NUM_CLASSES - 1), "name": text(CLASS_NAMES), **SCORES, "support": whole()})
PAIR = mapping(
    {
        "true": whole(0, NUM_CLASSES - 1),
        "predicted": whole(0, NUM_CLASSES - 1),
        "true_name": text(CLASS_NAMES),
        "predicted_name": text(CLASS_NAMES),
        "count": whole(),
        "rate": SHARE,
    }
)
DETAILED = mapping(
    {
        "accuracy": SHARE,
        "log_loss": number(0),
        "macro": mapping(SCORES),
        "per_class": listing(PER_CLASS, low=NUM_CLASSES, high=NUM_CLASSES),
        "confusion_matrix": listing(listing(whole(), low=NUM_CLASSES, high=NUM_CLASSES), low=NUM_CLASSES, high=10),
        "most_confused": listing(PAIR, high=NUM_CLASSES * NUM_CLASSES),
    }
)
METRICS = mapping(
    {
        "val_accuracy": SHARE,
        "test_accuracy": SHARE,
        "parameters": whole(),
        "train_seconds": number(0),
        "inference_images_per_s": number(0),
        "epochs": optional(whole(1, MAX_EPOCHS)),
        "best_epoch": optional(whole(0, MAX_EPOCHS, null=True)),
        "val": DETAILED,
        "test": DETAILED,
    }
)


def read_config(path, rerun="train the run anew", *, hparams=True):
    """config.json of one model's run, checked; with `hparams` (for a run to train or evaluate again, not one
    only reported on) its preset and hyper-parameters checked by the registry too."""
    config = read_versioned(path, "layout_version", LAYOUT_VERSION, missing=f"missing; {rerun}", hint=rerun)
    validated(path, config, CONFIG)
    spec = registry.spec(config["model"])
    if hparams and config["preset"] not in spec.presets:
        raise UserError(f"{path}: preset {config['preset']!r} is not one of {', '.join(spec.presets)}")
    if hparams:
        spec.from_json(config["hparams"], where=path)
    return config


def read_compare(path, rerun="rerun `fmnist compare`"):
    compare = read_versioned(path, "layout_version", LAYOUT_VERSION, missing=f"missing; {rerun}", hint=rerun)
    return validated(path, compare, COMPARE)


def read_metrics(path, rerun="the run did not finish"):
    """metrics.json: every number finite and in its range, the detailed metrics of both splits complete."""
    metrics = read_json(path, missing=f"missing ({rerun})")
    return validated(path, metrics, METRICS)
