"""How each model holds up under corrupted images: accuracy per corruption and severity (fmnist.data.corruptions).

The sweep takes the first `images` test items (the split is already shuffled by class), corrupts them with
every corruption at every severity from one seed, and asks every model. The table per model: accuracy per
corruption (mean over severities), the mean over all, and the corruption error relative to the linear model
(Hendrycks & Dietterich 2019): CE_c = sum_s error(model, c, s) / sum_s error(linear, c, s); mCE is their mean
(below 1: more robust than the linear model). robustness.json keeps it all, with the number of images.

Where exchangeability breaks, prediction sets (fmnist.models.sets) lose their promise: "sets" holds, per model
with fitted sets, the coverage and mean size of its 95 % sets on the clean images, on every corruption and
severity, and on the same items re-rendered as product photos (fmnist.predict.outliers) — measured, not hidden.
"""

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fmnist.data import corruptions
from fmnist.data import dataset as data_module
from fmnist.files import read_json, write_json
from fmnist.metrics import calibration, conformal, scores
from fmnist.models import sets, trust
from fmnist.predict import outliers
from fmnist.report import trust as report_trust
from fmnist.report.tables import table as text_table
from fmnist.rundir import checkpoint, layout

FILE = "robustness.json"
COMPARE_IMAGES = 200  # what `fmnist compare` sweeps (x 65 corrupted copies per model): small, for `make run`
EVALUATE_IMAGES = 2000  # what `fmnist evaluate --robustness` sweeps by default
BASELINE = "linear"
BATCH_IMAGES = 16_384  # images per prediction call: large batches, bounded memory


def sweep(models, images, labels, seed=0, progress=False):
    """{name: model} on uint8 test images (N, 28, 28) with labels (N,) -> the robustness record."""
    names = list(models)
    accuracy = {name: {} for name in names}
    steps = [(c, s) for c in corruptions.CORRUPTIONS for s in corruptions.SEVERITIES]
    copies = [images]  # clean first
    for corruption, severity in tqdm(steps, desc="robustness", unit="corruption", disable=not progress, leave=False):
        copies.append(corruptions.corrupt(images, corruption, severity, seed))
    copies.append(outliers.product_photos(images, seed))  # last: the photos, for the sets only
    clean, set_figures = {}, {}
    for name in names:
        logits = _predict_copies(models[name], copies)
        clean[name] = scores.accuracy(logits[0], labels)
        for (corruption, _), step_logits in zip(steps, logits[1:-1], strict=True):
            accuracy[name].setdefault(corruption, []).append(scores.accuracy(step_logits, labels))
        if (trust.of(models[name]) or {}).get("sets"):
            set_figures[name] = sets_under_shift(models[name], copies, logits, labels, steps)
    record = {"images": len(images), "seed": seed, "severities": list(corruptions.SEVERITIES)}
    record |= {"corruptions": list(corruptions.CORRUPTIONS), "clean": clean, "accuracy": accuracy}
    record["mean"] = {name: float(np.mean([v for c in accuracy[name].values() for v in c])) for name in names}
    record["ce"] = {name: relative_errors(accuracy, name) for name in names}
    record["mce"] = {name: float(np.mean(list(ce.values()))) if ce else None for name, ce in record["ce"].items()}
    if set_figures:
        record["sets"] = {"coverage_level": sets.DEFAULT, "delta": sets.DELTA, "models": set_figures}
    return record


def sets_under_shift(model, copies, logits, labels, steps):
    """A model's 95 % sets on the clean copy, each (corruption, severity) and the photos (images (copies, N, 28,
    28) and their logits (copies, N, 10) in the sweep's order; the sets widen with each image's unknown-input
    score): {"clean": {coverage, size}, "photos": {...}, "coverage"|"size": {corruption: [per severity]}, "widen"}."""
    record = trust.of(model)
    unknown = [trust.scores(model, c, one, record["method"], record) for c, one in zip(copies, logits, strict=True)]

    def figures(i):
        probs = calibration.probabilities(logits[i], record["temperature"])
        summary = conformal.summary(sets.mask(record["sets"], probs, sets.DEFAULT, unknown[i]), labels)
        return {"coverage": summary["coverage"], "size": summary["mean_size"]}

    out = {"clean": figures(0), "photos": figures(len(logits) - 1), "coverage": {}, "size": {}}
    out["widen"] = record["sets"].get("widen")
    for i, (corruption, _) in enumerate(steps, start=1):
        one = figures(i)
        out["coverage"].setdefault(corruption, []).append(one["coverage"])
        out["size"].setdefault(corruption, []).append(one["size"])
    return out


def _predict_copies(model, copies):
    """Logits (copies, N, C) of equally long image sets, predicted many sets per call: `make run`'s sweep (five
    models, 200 images) took 18.6 s with one call per set, 8.1 s so (bench/NOTES.md); BATCH_IMAGES bounds memory."""
    per_call = max(1, BATCH_IMAGES // len(copies[0]))
    groups = [np.concatenate(copies[i : i + per_call]) for i in range(0, len(copies), per_call)]
    return np.concatenate([model.predict_logits(group) for group in groups]).reshape(len(copies), len(copies[0]), -1)


def relative_errors(accuracy, name, baseline=BASELINE):
    """{corruption: CE} of model `name` against the baseline's errors; {} when the sweep has no baseline."""
    if baseline not in accuracy:
        return {}
    out = {}
    for corruption, values in accuracy[name].items():
        base = sum(1 - a for a in accuracy[baseline][corruption])
        out[corruption] = float(sum(1 - a for a in values) / base) if base > 0 else None
    return out


def run(models, splits, folder, images=COMPARE_IMAGES, seed=0, progress=False):
    """Sweep the first `images` test items of splits and write folder/robustness.json; return the record."""
    count = min(images, len(splits.x_test))
    record = sweep(models, splits.x_test[:count], splits.y_test[:count], seed, progress)
    write_json(folder / FILE, record)
    return record


def run_saved(run_dir, data, images=EVALUATE_IMAGES, progress=True):
    """The sweep for the models of a saved run (one model's run directory or a compare run) on its own split,
    written to RUN/robustness.json. data: the loaded dataset (its checksums must be the run's)."""
    run_dir, models, split_of = Path(run_dir), {}, None
    for model_dir in checkpoint.model_dirs(run_dir):
        config = read_json(model_dir / layout.CONFIG)
        layout.check_same_data(model_dir, config, data)
        models[config["model"]], _ = checkpoint.load(model_dir)
        split_of = split_of or (config["seed"], config.get("subset"))
    seed, subset = split_of
    splits = data_module.split(data, seed)
    return run(models, splits.quick(subset) if subset else splits, run_dir, images, seed, progress)


def table(record):
    header, body = report_trust.robustness_rows(record)
    note = f"robustness: accuracy (%) on {record['images']:,} test images per corruption, mean of 5 severities"
    return f"{note}\n{text_table(header, body)}"
