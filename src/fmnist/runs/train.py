"""Train one model into its run directory, compare several on one split, re-evaluate saved runs.

The order of writing makes a stopped run recognisable: config.json first, metrics.json last.
"""

import contextlib
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fmnist.data import dataset as data_module
from fmnist.engine import precision
from fmnist.engine import threads as threads_module
from fmnist.engine.loop import best_epoch
from fmnist.engine.resume import STATE_FILE, Resumer
from fmnist.errors import Diverged, UserError
from fmnist.files import read_json, write_json
from fmnist.metrics import scores
from fmnist.models import registry
from fmnist.rundir import checkpoint, layout

FEATURE_SAMPLE = 2_000


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every model of a run shares: the data, the preset and the seed."""

    splits: data_module.Splits
    dataset: data_module.Dataset
    preset: str = "fast"
    seed: int = 0
    progress: bool = True
    threads: int | None = None  # torch's intra-op threads (None: torch's own default)
    distributed: dict | None = None  # a data-parallel run's processes and backend (fmnist.models.parallel)

    def record(self):
        """The settings config.json keeps; subset is None for the full split."""
        subset = None if len(self.splits.y_train) == 48_000 else len(self.splits.y_train)
        extra = {"distributed": self.distributed} if self.distributed else {}
        return {"preset": self.preset, "seed": self.seed, "subset": subset, "threads": self.threads, **extra}


def load_setup(data_dir=None, allow_unverified=False, *, seed=0, subset=None, threads=None, **settings):
    """Find and verify the data, split it with `seed`, keep `subset` training images (None: all).

    threads: as given, else OMP_NUM_THREADS, else the cores free right now (fmnist.engine.threads)."""
    dataset = data_module.load(data_dir, allow_unverified)
    splits = data_module.split(dataset, seed)
    chosen = threads_module.choose(threads)
    return Setup(splits.quick(subset) if subset else splits, dataset, seed=seed, threads=chosen, **settings)


def timed_logits(model, images):
    """(logits (N, 10), images per second) for batched inference over `images`."""
    start = time.perf_counter()
    logits = model.predict_logits(images)
    return logits, len(images) / max(time.perf_counter() - start, 1e-9)


def measure(model, splits, facts):
    """Predict validation and test once; return (logits by split, the metrics.json record).

    facts: what the caller knows beyond the predictions (model, parameters, training time, epochs)."""
    logits = {"val": timed_logits(model, splits.x_val)[0]}
    logits["test"], images_per_s = timed_logits(model, splits.x_test)
    labels = {"val": splits.y_val, "test": splits.y_test}
    detailed = {s: scores.metrics_from_logits(logits[s], labels[s]) for s in layout.SPLITS}
    record = {**facts, "val_accuracy": detailed["val"]["accuracy"], "test_accuracy": detailed["test"]["accuracy"]}
    record |= {"inference_images_per_s": round(images_per_s, 1), **detailed}
    return logits, record


def _fit(model, setup, resumer):
    """Train, counting the time of interrupted sessions too; a diverged run leaves nothing to resume."""
    if setup.threads is not None:
        threads_module.apply(setup.threads)
    with resumer or contextlib.nullcontext():
        start = time.perf_counter()
        try:
            history = model.fit(setup.splits, seed=setup.seed, progress=setup.progress, resumer=resumer)
        except Diverged:
            if resumer is not None:  # continuing it would diverge again
                resumer.finish()
            raise
    seconds = time.perf_counter() - start + (resumer.seconds_before if resumer else 0.0)
    if resumer is not None and resumer.stop_requested:
        print("fmnist: training had already finished; writing its results", file=sys.stderr)
    return history, seconds


def train_one(name, hparams, setup, out_dir, *, trained=None, resumer=None):
    """Fit model `name` on setup.splits, evaluate on validation and test once, write its run directory.

    `trained` maps model names to already trained models that this one may reuse (the hybrid reuses the CNN).
    `resumer` (a `fmnist.engine.resume.Resumer` on out_dir, or None): Ctrl-C and SIGTERM stop training with a
    resumable state; if it holds a saved state, training continues from it. Returns (model, metrics).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = registry.spec(name)
    if resumer is None or resumer.saved is None:  # a resumed run keeps the config it was started with
        hparams = precision.settled(hparams)  # config.json records the precision that runs, and --resume reuses it
        (out_dir / layout.METRICS).unlink(missing_ok=True)  # an older run's: this one is not complete yet
        write_json(out_dir / layout.CONFIG, layout.config_record(name, hparams, setup.record(), setup.dataset))
    reused = {other: trained[other] for other in spec.reuses if trained and other in trained}
    model = spec.load_class()(**hparams, **reused)
    history, seconds = _fit(model, setup, resumer)
    layout.write_history(out_dir, history)
    checkpoint.save(out_dir, name, model)
    facts = {"model": name, "parameters": int(model.num_parameters()), "train_seconds": round(seconds, 2)}
    facts |= {"epochs": len(history), "best_epoch": best_epoch(history) or None}
    logits, record = measure(model, setup.splits, facts)
    layout.write_predictions(out_dir, logits, setup.splits)
    if hasattr(model, "features"):
        pick = np.random.default_rng(setup.seed).permutation(len(setup.splits.x_test))[:FEATURE_SAMPLE]
        features = model.features(setup.splits.x_test[pick])
        layout.write_npz(out_dir / layout.FEATURES, features=features, labels=setup.splits.y_test[pick])
    write_attributions(model, setup, logits["test"], out_dir)
    layout.write_metrics(out_dir, record)
    if resumer is not None:
        resumer.finish()
    return model, record


def write_attributions(model, setup, test_logits, out_dir):
    """A few correct and wrong test images with their attribution maps, for the report (a second or less).
    Without Captum (an install without the `explain` extra) the run has none and the report leaves them out."""
    try:
        from fmnist.models.explain import attribute
    except ModuleNotFoundError:
        return

    test = setup.splits
    arrays = attribute.gallery(model, test.x_test, test.y_test, test_logits.argmax(axis=1), seed=setup.seed)
    layout.write_npz(out_dir / layout.ATTRIBUTIONS, **arrays)


def parse_models(text):
    """'linear,cnn' -> ['linear', 'cnn'] in registry order, so a reused model is trained before its user."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        registry.spec(name)
    if not names:
        raise UserError("--models: name at least one model")
    return [n for n in registry.REGISTRY if n in names]


def compare(names, setup, out_dir, overrides=None, *, resume=False):
    """Train `names` in order on one split, each into out_dir/<name>/, then write compare.json.

    Ctrl-C or SIGTERM stops the model in training with a resumable state. resume: skip the models already
    finished (their metrics.json exists) and continue the one stopped. Returns {name: metrics}."""
    hparams = {name: registry.spec(name).resolve(setup.preset, overrides) for name in names}  # all checked first
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layout.write_test_images(out_dir, setup.splits)
    trained, results = {}, {}
    overall = tqdm(names, desc="compare", unit="model", disable=not setup.progress, position=0)
    start = time.perf_counter()
    for name in overall:
        overall.set_postfix_str(name)
        trained[name], results[name] = _compare_one(name, hparams[name], setup, out_dir / name, trained, resume)
    overall.close()
    record = layout.config_record("compare", {}, setup.record(), setup.dataset)
    summary = {name: {k: v for k, v in m.items() if k not in layout.SPLITS} for name, m in results.items()}
    record.update(models=names, total_seconds=round(time.perf_counter() - start, 1), results=summary)
    write_json(out_dir / layout.COMPARE, record)
    return results


def _compare_one(name, hparams, setup, model_dir, trained, resume):
    """One model of a compare: reloaded if a resumed compare finished it already, else trained (or continued)."""
    if resume and (model_dir / layout.METRICS).is_file():
        model, _ = checkpoint.load(model_dir)  # a later model may reuse it (the hybrid reuses the CNN)
        return model, read_json(model_dir / layout.METRICS)
    resumer = Resumer(model_dir, resume=resume and (model_dir / STATE_FILE).is_file())
    return train_one(name, hparams, setup, model_dir, trained=trained, resumer=resumer)


def resume_settings(run_dir, model_name):
    """(hparams, config) of the `fmnist train` run in run_dir: what a resumed run must use again."""
    config = layout.read_config(run_dir, model_name)
    return registry.spec(model_name).from_json(config["hparams"]), config


def reevaluate(run_dir, data_dir=None, allow_unverified=False):
    """Reload every saved model under run_dir, predict its recorded split again, rewrite predictions and metrics.

    The data must have the checksums the run recorded, so the figures are about the same images.
    Returns {model name: metrics}."""
    run_dir = Path(run_dir)
    model_dirs = checkpoint.model_dirs(run_dir)
    if not model_dirs:
        raise UserError(f"{run_dir}: no saved models (no {checkpoint.MANIFEST} here or one level down)")
    dataset = data_module.load(data_dir, allow_unverified)
    results = {}
    for model_dir in model_dirs:
        config = read_json(model_dir / layout.CONFIG)
        layout.check_same_data(model_dir, config, dataset)
        splits = data_module.split(dataset, config["seed"])
        splits = splits.quick(config["subset"]) if config.get("subset") else splits
        model, _ = checkpoint.load(model_dir)
        old = read_json(model_dir / layout.METRICS)
        facts = {k: old.get(k) for k in ("model", "parameters", "train_seconds", "epochs", "best_epoch")}
        logits, record = measure(model, splits, facts)
        layout.write_predictions(model_dir, logits, splits)
        layout.write_metrics(model_dir, record)
        results[config["model"]] = record
    return results
