"""fmnist audit: which labels look wrong, from probabilities no model made about an image it trained on.

The 60,000 training images are cut into K stratified, seeded folds. Fold k's model trains on the other folds
(less a stratified tenth of them, held out for its own best epoch and temperature, as every fit does) and scores
fold k; the 10,000 test images are scored by the average of the K fold models, each of which trained on training
images only. Confident learning (cleanlab's `find_label_issues` and label quality scores) then picks the suspects
of each file, written to label_issues.csv (`fmnist.rundir.labels`) with a report (`fmnist.report.audit`).

Each finished fold is saved atomically (fold-K.npz, with the positions it trained on, held out and scored), after
audit.json, which records the settings: the same command on the same --out continues a stopped audit with the
finished folds, and gives the same result (same seed, same thread count).
"""

import dataclasses
import time
import zipfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fmnist.data import dataset as data_module
from fmnist.engine import precision
from fmnist.errors import UserError
from fmnist.files import read_json, write_json
from fmnist.jobs import settings, train
from fmnist.metrics import scores
from fmnist.models import registry, trust
from fmnist.rundir import labels, layout

HOLDOUT = 0.1  # of the training folds, for the fold model's best epoch and temperature
MODELS = ("linear", "mlp", "cnn", "scratch-mlp")  # the hybrid trains a CNN inside: not offered
FOLD_KEYS = ("scored", "trained", "held_out", "probs", "test_probs", "seconds")


@dataclasses.dataclass(frozen=True)
class Audit:
    """An audit's settings: everything its result depends on, recorded in audit.json."""

    model: str = "cnn"
    folds: int = 5
    seed: int = 0
    preset: str = "fast"
    epochs: int | None = None  # a cap on the preset's epochs (None: the preset's own)
    subset: int | None = None  # audit only the first N training images and N/6 test images (quick looks, tests)
    threads: int = 1
    device: str = "auto"

    def check(self):
        if self.model not in MODELS:
            raise UserError(f"--model {self.model}: the audit trains one of {', '.join(MODELS)}")
        if not 2 <= self.folds <= 20:
            raise UserError(f"--folds {self.folds}: choose 2 to 20")
        if self.subset is not None and self.subset < 100 * self.folds:
            raise UserError(f"--subset {self.subset}: need at least {100 * self.folds} images for {self.folds} folds")
        registry.spec(self.model).resolve(self.preset, {"epochs": self.epochs})


def audited_data(dataset, audit):
    """(train images, train labels, test images, test labels): all of them, or the subset's first images."""
    n = audit.subset or len(dataset.train_labels)
    m = max(n // 6, 10) if audit.subset else len(dataset.test_labels)
    train_labels, test_labels = dataset.train_labels[:n].astype(np.int64), dataset.test_labels[:m].astype(np.int64)
    return dataset.train_images[:n], train_labels, dataset.test_images[:m], test_labels


def fold_of(train_labels, folds, seed):
    """The fold (0..folds-1) of every training image: stratified by class, seeded."""
    from sklearn.model_selection import StratifiedKFold

    out = np.empty(len(train_labels), np.int64)
    cutter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, scored) in enumerate(cutter.split(np.zeros(len(train_labels)), train_labels)):
        out[scored] = fold
    return out


def fold_splits(images, train_labels, folds, fold, seed):
    """(Splits, positions): fold `fold`'s model trains on x_train, selects on x_val (both from the other folds)
    and scores x_test, the fold itself. positions: {"trained", "held_out", "scored"} in the IDX file."""
    scored = np.flatnonzero(folds == fold)
    others = np.flatnonzero(folds != fold)
    kept, held = data_module.stratified_split(train_labels[others], seed + fold, HOLDOUT)
    trained = np.random.default_rng([seed, fold]).permutation(others[kept])
    mean, std = data_module.pixel_stats(images[trained])
    splits = data_module.Splits(
        x_train=images[trained],
        y_train=train_labels[trained],
        x_val=images[others[held]],
        y_val=train_labels[others[held]],
        x_test=images[scored],
        y_test=train_labels[scored],
        mean=mean,
        std=std,
        seed=seed,
    )
    return splits, {"trained": trained, "held_out": others[held], "scored": scored}


def calibrated(model, images):
    """softmax(logits / T) with the fold model's own temperature (fitted on its held-out images)."""
    record = trust.of(model)
    temperature = record["temperature"] if record else 1.0
    return scores.softmax(model.predict_logits(images) / temperature)


def train_fold(audit, data, folds, fold, progress):
    """Train fold `fold`'s model and score its fold and the test images: the fold-K.npz arrays."""
    images, train_labels, test_images, _ = data
    start = time.perf_counter()
    splits, positions = fold_splits(images, train_labels, folds, fold, audit.seed)
    spec = registry.spec(audit.model)
    device = train.model_device(spec, audit.device)
    hparams = precision.settled(spec.resolve(audit.preset, {"epochs": audit.epochs}), device)
    model = spec.load_class()(**hparams)
    model.to_device(device)
    setup = settings.for_splits(splits, seed=audit.seed, threads=audit.threads, progress=progress)
    train.fit_model(model, setup)
    probs, test_probs = calibrated(model, splits.x_test), calibrated(model, test_images)
    return {**positions, "probs": probs, "test_probs": test_probs, "seconds": time.perf_counter() - start}


def read_fold(path, expected_scored):
    """A finished fold's arrays, checked to be whole and to score the positions this audit gives that fold."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in FOLD_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: unreadable ({exc}); delete it to train that fold again") from None
    if not np.array_equal(arrays["scored"], expected_scored) or len(arrays["probs"]) != len(expected_scored):
        raise UserError(f"{path}: scores other images than this audit's fold; delete it to train that fold again")
    return arrays


def start(out, audit, dataset):
    """Write audit.json, or check that the one in `out` has these settings (a stopped audit continuing)."""
    plan = dataclasses.asdict(audit) | {"holdout": HOLDOUT, "data": dataset.provenance()}
    path = Path(out) / labels.PLAN
    if path.exists():
        old = read_json(path)
        if not isinstance(old, dict) or {k: old.get(k) for k in plan} != plan:
            raise UserError(f"{path}: an audit with other settings or data; give the same ones or another --out")
        return False
    write_json(path, layout.config_record("audit", {}, plan, dataset))
    return True


def run(dataset, audit, out, *, progress=True):
    """Audit `dataset` into `out` (continuing a stopped audit there). Returns the summary record."""
    audit.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start(out, audit, dataset)
    data = audited_data(dataset, audit)
    folds = fold_of(data[1], audit.folds, audit.seed)
    done = []
    for fold in tqdm(range(audit.folds), desc="audit", unit="fold", disable=not progress, position=0):
        path = out / f"fold-{fold}.npz"
        if not path.exists():
            layout.write_npz(path, **train_fold(audit, data, folds, fold, progress))
        done.append(read_fold(path, np.flatnonzero(folds == fold)))
    return finish(out, audit, data, done)


def finish(out, audit, data, done):
    """Out-of-sample probabilities -> suspects per file -> probabilities.npz, label_issues.csv, summary.json."""
    _, train_labels, _, test_labels = data
    probs = np.zeros((len(train_labels), data_module.NUM_CLASSES))
    for arrays in done:
        probs[arrays["scored"]] = arrays["probs"]
    test_probs = np.mean([arrays["test_probs"] for arrays in done], axis=0)
    layout.write_npz(
        out / labels.PROBS, train=probs, test=test_probs, train_labels=train_labels, test_labels=test_labels
    )
    found = {"train": suspects(train_labels, probs, "train"), "test": suspects(test_labels, test_probs, "test")}
    issues = sorted(found["train"] + found["test"], key=lambda issue: issue.score)
    labels.write_issues(out / labels.ISSUES, issues)
    pictures = {"train": data[0], "test": data[2]}
    chosen = np.array([pictures[i.file][i.index] for i in issues], np.uint8).reshape(-1, 28, 28)
    layout.write_npz(out / labels.IMAGES, images=chosen)
    summary = {
        "model": audit.model,
        "folds": audit.folds,
        "images": {"train": len(train_labels), "test": len(test_labels)},
        "suspects": {name: len(rows) for name, rows in found.items()},
        "accuracy": {"train": scores.accuracy(probs, train_labels), "test": scores.accuracy(test_probs, test_labels)},
        "fold_seconds": [round(float(arrays["seconds"]), 1) for arrays in done],
    }
    write_json(out / labels.SUMMARY, summary)
    return summary


def suspects(given, probs, file):
    """Confident learning on one file: the images cleanlab flags, lowest label quality (strongest suspect) first."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    flagged = find_label_issues(given, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    quality = get_label_quality_scores(given, probs, method="self_confidence")
    order = np.flatnonzero(flagged)
    order = order[np.argsort(quality[order], kind="stable")]
    return [
        labels.Issue(file, int(i), int(given[i]), int(probs[i].argmax()), float(np.clip(quality[i], 0.0, 1.0)))
        for i in order
    ]
