"""Train one model into its run directory; re-evaluate saved runs.

The order of writing makes a stopped run recognisable: config.json first, metrics.json last.
"""

import contextlib
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from fmnist.data import dataset as data_module
from fmnist.engine import devices, precision, threads
from fmnist.engine.loop import best_epoch
from fmnist.engine.resume import STATE_FILE, Resumer
from fmnist.errors import Diverged, UserError
from fmnist.files import write_json
from fmnist.jobs import edits, refit, settings
from fmnist.metrics import calibration, ood, scores
from fmnist.models import registry, sets, trust
from fmnist.models.contracts import Classifier
from fmnist.rundir import checkpoint, layout, schema

FEATURE_SAMPLE = 2_000


def timed_logits(model, images):
    """(logits (N, 10), images per second) for batched inference over `images`."""
    start = time.perf_counter()
    logits = model.predict_logits(images)
    return logits, len(images) / max(time.perf_counter() - start, 1e-9)


def measure(model: Classifier, splits, facts):
    """Predict validation and test once; return (logits by split, the metrics.json record).

    facts: what the caller knows beyond the predictions (model, parameters, training time, epochs)."""
    logits = {"val": timed_logits(model, splits.x_val)[0]}
    logits["test"], images_per_s = timed_logits(model, splits.x_test)
    labels = {"val": splits.y_val, "test": splits.y_test}
    detailed = {s: scores.metrics_from_logits(logits[s], labels[s]) for s in layout.SPLITS}
    record = {**facts, "val_accuracy": detailed["val"]["accuracy"], "test_accuracy": detailed["test"]["accuracy"]}
    record |= {"inference_images_per_s": round(images_per_s, 1), **detailed}
    return logits, record | trust_record(model, splits, logits)


def trust_record(model, splits, logits):
    """metrics.json's "calibration" (ECE, NLL, Brier per split at T = 1 and at the fitted T), "unknown" (the share
    of validation and test clothing called unknown at the threshold) and "sets" (test coverage and size of the
    prediction sets, fmnist.models.sets.figures); {} for an uncalibrated model."""
    record = trust.of(model)
    if record is None:
        return {}
    labels = {"val": splits.y_val, "test": splits.y_test}
    temperature = record["temperature"]
    out = {"calibration": {"temperature": temperature}}
    out["calibration"] |= {s: calibration.before_after(logits[s], labels[s], temperature) for s in layout.SPLITS}
    test = trust.scores(model, splits.x_test, logits["test"], record["method"], record)
    out["unknown"] = {k: record.get(k) for k in ("method", "threshold", "rate", "val_unknown_rate")}
    if out["unknown"]["val_unknown_rate"] is None:  # a record written before the rate was kept with it
        val = trust.scores(model, splits.x_val, logits["val"], record["method"], record)
        out["unknown"]["val_unknown_rate"] = ood.unknown_rate(val, record["threshold"])
    out["unknown"]["test_unknown_rate"] = ood.unknown_rate(test, record["threshold"])
    if "sets" in record:
        out["sets"] = sets.figures(
            record["sets"], calibration.probabilities(logits["test"], temperature), splits.y_test, test
        )
    return out


def fit_model(model: Classifier, setup, *, resumer=None, on_epoch=None) -> list[dict]:
    """Train `model` on setup.splits with the setup's seed and threads: the one call every way of training makes
    (train, compare, a torchrun rank, a tuning trial, the API). Returns its per-epoch history."""
    threads.apply(setup.threads)
    return model.fit(setup.splits, seed=setup.seed, progress=setup.progress, resumer=resumer, on_epoch=on_epoch)


def _fit(model: Classifier, setup, resumer):
    """Train, counting the time of interrupted sessions too; a diverged run leaves nothing to resume."""
    with resumer or contextlib.nullcontext():
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            history = fit_model(model, setup, resumer=resumer)
        except Diverged as exc:
            if resumer is not None and resumer.saved is not None:  # the state may be at fault: keep it, say so
                raise UserError(
                    f"{resumer.path}: training resumed from this state diverged ({exc}); the state is kept"
                ) from None
            if resumer is not None:  # continuing it would diverge again
                resumer.finish()
            raise
    seconds = time.perf_counter() - start + (resumer.seconds_before if resumer else 0.0)
    cpu_seconds = time.process_time() - cpu_start  # every thread's; this session's only, after a resume
    if resumer is not None and resumer.stop_requested:
        print("fmnist: training had already finished; writing its results", file=sys.stderr)
    return history, seconds, cpu_seconds


def train_one(name, hparams, setup, out_dir, *, trained=None, resumer=None):
    """Fit model `name` on setup.splits, evaluate on validation and test once, write its run directory.

    `trained` maps model names to already trained models that this one may reuse (the hybrid reuses the CNN).
    `resumer` (a `fmnist.engine.resume.Resumer` on out_dir, or None): Ctrl-C and SIGTERM stop training with a
    resumable state; if it holds a saved state, training continues from it. Returns (model, metrics).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = registry.spec(name)
    device = model_device(spec, setup.device)
    fresh = resumer is None or resumer.saved is None
    if fresh:  # a resumed run keeps the config it was started with
        # config.json records the precision and device that run, and --resume reuses them
        hparams = precision.settled(hparams, device)
        (out_dir / layout.METRICS).unlink(missing_ok=True)  # an older run's: this one is not complete yet
        run = setup.record() | {"device": device}
        write_json(out_dir / layout.CONFIG, layout.config_record(name, hparams, run, setup.dataset))
    reused = {other: trained[other] for other in spec.reuses if trained and other in trained}
    model = spec.load_class()(**hparams, **reused)
    model.to_device(device)
    log = _tensorboard(name, setup, fresh)
    model.observers = (log,) if log else ()
    history, seconds, cpu_seconds = _fit(model, setup, resumer)
    if setup.held_out is not None:  # a refit: the held-out values are the selection run's (fmnist.jobs.refit)
        model.trust = refit.kept_trust(setup.held_out["trust"], trust.of(model))
    layout.write_history(out_dir, history)
    checkpoint.save(out_dir, name, model)
    facts = {"model": name, "parameters": int(model.num_parameters()), "train_seconds": round(seconds, 2)}
    kept = len(history) if hparams.get("keep") == "last" else best_epoch(history)  # the epoch whose weights stay
    facts |= {"epochs": len(history), "best_epoch": kept or None, "cpu_seconds": round(cpu_seconds, 2)}
    logits, record = measure(model, setup.splits, facts)
    record |= edits.test_figures(setup.labels, logits["test"], setup.splits.y_test)
    layout.write_predictions(out_dir, logits, setup.splits)
    if hasattr(model, "features"):
        pick = np.random.default_rng(setup.seed).permutation(len(setup.splits.x_test))[:FEATURE_SAMPLE]
        features = model.features(setup.splits.x_test[pick])
        layout.write_npz(out_dir / layout.FEATURES, features=features, labels=setup.splits.y_test[pick])
    write_attributions(model, setup, logits["test"], out_dir)
    layout.write_metrics(out_dir, record)
    if log:
        log.finish(hparams, record, model, setup.splits, logits["test"])
    if resumer is not None:
        resumer.finish()
    return model, record


def refit_one(name, setup, selection, out_dir, *, trained=None, resume=False):
    """Train `name` again on train + validation into out_dir/refit with the hyper-parameters and choices of
    `selection` = (its model, its metrics), a complete selection run on `setup` (fmnist.jobs.refit). `trained`:
    as for `train_one`, the refit models this one may reuse. resume: continue a refit stopped earlier (from its
    saved state, if it has one). Returns (model, metrics)."""
    model, metrics = selection
    folder = Path(out_dir) / refit.FOLDER
    kept = trust.of(model)
    if kept is None:
        raise UserError(f"{out_dir}: the selection run has no trust record to keep; retrain it")
    held_out = {"trust": kept, "record": refit.provenance(kept, metrics, setup.splits)}
    log = setup.tensorboard and str(Path(setup.tensorboard) / refit.FOLDER)  # beside the selection's log, not on it
    changes = {"splits": refit.splits_for_refit(setup.splits), "refit": False, "held_out": held_out, "tensorboard": log}
    setup = dataclasses.replace(setup, **changes)
    resumer = Resumer(folder, resume=resume and (folder / STATE_FILE).is_file())
    hparams = refit.hparams_for_refit(model.hparams, metrics)
    return train_one(name, hparams, setup, folder, trained=trained, resumer=resumer)


def selection_then_refit(name, hparams, setup, out_dir, *, resume=False):
    """`fmnist train`'s job: the selection run into out_dir, then, if setup.refit, its refit into out_dir/refit.
    resume: continue where the run stopped (the selection if it did not finish, else the refit).
    Returns (selection metrics, refit metrics or None)."""
    out_dir = Path(out_dir)
    if resume and (out_dir / refit.FOLDER / layout.METRICS).is_file():
        raise UserError(f"{out_dir}: nothing to resume (the selection and its refit both finished)")
    if resume and setup.refit and (out_dir / layout.METRICS).is_file():  # the selection is complete
        selection = checkpoint.load(out_dir)[0], schema.read_metrics(out_dir / layout.METRICS)
    else:
        selection = train_one(name, hparams, setup, out_dir, resumer=Resumer(out_dir, resume=resume))
    if not setup.refit:
        return selection[1], None
    return selection[1], refit_one(name, setup, selection, out_dir, resume=resume)[1]


def model_device(spec, requested):
    """The device model `spec` trains on for `requested`: resolved for a torch model, the CPU for a NumPy one
    (which says so when an accelerator was named)."""
    return devices.for_model(spec.name, spec.load_class().uses_torch, requested)


def write_attributions(model, setup, test_logits, out_dir):
    """A few correct and wrong test images with their attribution maps, for the report (a second or less).
    Without Captum (an install without the `explain` extra) the run has none and the report leaves them out."""
    try:
        from fmnist.predict.explain import attribute
    except ModuleNotFoundError:
        return

    test = setup.splits
    arrays = attribute.gallery(model, test.x_test, test.y_test, test_logits.argmax(axis=1), seed=setup.seed)
    layout.write_npz(out_dir / layout.ATTRIBUTIONS, **arrays)


def _tensorboard(name, setup, fresh):
    """The model's TensorBoard log (setup.tensorboard/<model>-seed<S>), or None without --tensorboard."""
    if setup.tensorboard is None:
        return None
    from fmnist.jobs.tensorboard import RunLog

    return RunLog(Path(setup.tensorboard) / f"{name}-seed{setup.seed}", fresh=fresh)


def resume_settings(run_dir, model_name):
    """(hparams, config) of the `fmnist train` run in run_dir: what a resumed run must use again."""
    config = layout.read_config(run_dir, model_name)
    return registry.spec(model_name).from_json(config["hparams"], where=Path(run_dir) / layout.CONFIG), config


def reevaluate(run_dir, data_dir=None, allow_unverified=False, device="auto"):
    """Reload every saved model under run_dir, predict its recorded split again, rewrite predictions and metrics.

    The data must have the checksums the run recorded, so the figures are about the same images.
    Returns {model name: metrics}."""
    run_dir = Path(run_dir)
    model_dirs = checkpoint.model_dirs(run_dir)
    if not model_dirs:
        raise UserError(f"{run_dir}: no saved models (no {checkpoint.MANIFEST} here or one level down)")
    dataset = data_module.load(data_dir, allow_unverified)
    measured = []  # every model checked and measured before any file is written: all rewritten, or none
    for model_dir in model_dirs:
        config = schema.read_config(model_dir / layout.CONFIG, "rerun `fmnist train`")
        layout.check_same_data(model_dir, config, dataset)
        splits = settings.recorded(config, dataset).splits
        model, _ = checkpoint.load(model_dir)
        model.to_device(model_device(registry.spec(config["model"]), device))
        calibrated_now = trust.of(model) is None
        if calibrated_now:  # a run of an older fmnist: calibrated now, from its own validation split
            trust.calibrate(model, splits)
        elif "widen" not in trust.of(model).get("sets", {}):  # sets older than this fmnist's: made now, from the
            trust.add_sets(model, splits, model.predict_logits(splits.x_val))  # same validation split and T
            calibrated_now = True
        old = schema.read_metrics(model_dir / layout.METRICS)
        facts = {k: old.get(k) for k in ("model", "parameters", "train_seconds", "cpu_seconds", "epochs", "best_epoch")}
        measured.append((model_dir, config["model"], splits, model, calibrated_now, *measure(model, splits, facts)))
    results = {}
    for model_dir, name, splits, model, calibrated_now, logits, record in measured:
        if calibrated_now:
            checkpoint.save(model_dir, name, model)
        layout.write_predictions(model_dir, logits, splits)
        layout.write_metrics(model_dir, record)
        results[name] = record
    return results
