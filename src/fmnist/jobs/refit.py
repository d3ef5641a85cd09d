"""Refit after selection: train once more on all 60,000 training images with every choice already made.

The protocol of scikit-learn's `refit` and of the published Fashion-MNIST results (which train on all 60,000):
an ordinary run (`fmnist.jobs.train.train_one`, the *selection* run) chooses on its validation split the epoch
count (its best epoch), and fits there the temperature, the unknown threshold, the standardisation of the
combined unknown score and whatever else `fmnist.models.trust` keeps in a model's record (prediction-set
thresholds too). Only when that run is complete does the refit start, into RUN/refit/: the same model,
hyper-parameters and seed, `epochs` = the selected count, `keep` = "last" (no early stopping: its validation
images are training images now, so they choose nothing), on train + validation.

What needs held-out data keeps the selection run's values, unchanged: nothing is held out any more to fit them
on. What comes from training images alone is the refit model's own: the class Gaussians of the unknown rule and
the pixel statistics. Whether the kept values still hold for the new weights is measured on test and reported
beside the selection's (`summary`): ECE after the temperature, the share of test clothing called unknown against
the rate the threshold was set for, set coverage where the record has sets. They can drift; the report says so.
"""

import dataclasses

import numpy as np

from fmnist.data.dataset import pixel_stats

FOLDER = "refit"  # RUN/refit/ (a compare: OUT/<model>/refit/): the refit model's run directory
MONITOR = 2_000  # validation images the refit still evaluates after each epoch: watched, never chosen on
TRAINING_FACTS = ("gaussians", "pixel_stats")  # trust keys fitted on training images: the refit model's own


def splits_for_refit(splits):
    """`splits` with train = train + validation (60,000 images on the full split) and their pixel statistics;
    the first MONITOR validation images stay as the loop's monitor (they are trained on); test unchanged."""
    x_train = np.concatenate([splits.x_train, splits.x_val])
    y_train = np.concatenate([splits.y_train, splits.y_val])
    mean, std = pixel_stats(x_train)
    monitor = slice(0, MONITOR)
    return dataclasses.replace(
        splits,
        x_train=x_train,
        y_train=y_train,
        x_val=splits.x_val[monitor],
        y_val=splits.y_val[monitor],
        mean=mean,
        std=std,
    )


def selected_epochs(metrics):
    """The epoch count the selection run chose: its best epoch (the epochs it ran where none is recorded)."""
    return int(metrics.get("best_epoch") or metrics["epochs"])


def hparams_for_refit(hparams, metrics):
    """The selection's hyper-parameters with its chosen epoch count, every epoch run, the last weights kept."""
    return {**hparams, "epochs": selected_epochs(metrics), "keep": "last"}


def kept_trust(selection, own):
    """The refit model's trust record: the selection's (`selection`, every held-out value as it was) with the
    training-image facts of the refit model's own record `own`."""
    return {**selection, **{k: own[k] for k in TRAINING_FACTS if k in own}}


def provenance(selection_trust, metrics, splits):
    """config.json's "refit_of" of a refit run: what it took from the selection and what it trained on."""
    return {
        "selection": "..",
        "selected_epochs": selected_epochs(metrics),
        "kept_from_selection": sorted(k for k in selection_trust if k not in TRAINING_FACTS),
        "train_images": len(splits.x_train) + len(splits.x_val),
    }


def _test_ece(metrics):
    return ((metrics.get("calibration") or {}).get("test") or {}).get("after", {}).get("ece")


def checks(metrics):
    """What a model's metrics say about the held-out values on test: accuracy, ECE, unknown rate, set coverage."""
    unknown = metrics.get("unknown") or {}
    out = {"test_accuracy": metrics["test_accuracy"], "test_ece": _test_ece(metrics)}
    out |= {"test_unknown_rate": unknown.get("test_unknown_rate"), "unknown_rate_chosen": unknown.get("rate")}
    sets = (metrics.get("sets") or {}).get("test") or {}
    if "coverage" in sets:
        out["test_set_coverage"] = sets["coverage"]
    return out


def summary(selection, refit):
    """{"selection": checks, "refit": checks} from the two runs' metrics.json records (see `checks`)."""
    return {"selection": checks(selection), "refit": checks(refit), "train_seconds": refit["train_seconds"]}
