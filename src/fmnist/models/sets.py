"""Prediction sets fitted with the temperature: the sorted calibration scores of each class, any level later.

`fit(probs, labels, outlier)` keeps, for each class, the conformity scores (fmnist.metrics.conformal, score
SCORE, widened below) of the validation images of that class under their temperature-scaled probabilities, sorted.
Any coverage level's class-conditional thresholds follow from them at answer time (`thresholds`), so
`--coverage 0.9` needs no refit.
The record lives in the model's trust record (fmnist.models.trust) as "sets": {"score", "scores": [C arrays],
"widen"}, saved in trust.safetensors as `sets.<class>` beside trust.json's {"score", "sizes", "widen"}, under the
checkpoint's checksums.

Widening (WIDEN): the score of every class of an image is lowered by WIDEN · max(0, u − u₀), u the image's
unknown-input score (fmnist.models.trust: higher, less like the training images; standardised on validation
clothing) and u₀ its WIDEN_FROM quantile on the validation images: an image unlike the training images gets a
wider set, up to every class, where the plain score keeps the few classes a confidently wrong network names.
Conformal validity holds for any score fixed before the calibration images are scored (u₀, like the
temperature, is a single number fitted on the same validation images). 99 % of validation images are untouched.
WIDEN chosen on validation (bench/bench_sets.py, WIDEN_RULE there): the largest rate of a grid that adds at most
0.01 classes to the mean validation set size at 95 %, for every model. A record without "widen" (fitted by an
older fmnist) gives the plain score.

SCORE: LAC (1 − p(true class)), chosen by measurement on validation halves (bench/bench_sets.py, docs/
prediction-sets.md): with class-conditional thresholds it gave the smallest sets of the three at every level
for all five models, at the same per-class coverage.

DELTA: the thresholds are training-conditional (fmnist.metrics.conformal.rank): with probability at least
1 − DELTA over the draw of the validation images, each class's coverage is at least the level. Chosen by
measurement on validation halves (bench/bench_sets.py, DELTA_RULE there): the largest δ of a grid for which, over
the models of a run, at most one split in ten leaves some class more than 2 points under 95 % on its held-out half.
"""

import numpy as np

from fmnist.metrics import conformal

SCORE = "lac"
DEFAULT = 0.95  # the level answers use unless asked for another
LEVELS = (0.90, 0.95, 0.99)  # the levels metrics.json and the report give test figures for
CURVE = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 0.995)  # the report's coverage-against-level plot
PREFIX = "sets."
DELTA = 0.1
WIDEN, WIDEN_FROM = 0.1, 0.99
WIDENING = ("from", "rate")  # the keys of a record's "widen"


def fit(probs, labels, outlier=None, score=SCORE, rate=WIDEN):
    """The set record from calibrated validation probabilities (N, C), labels (N,) and unknown-input scores (N,)
    (None: no widening, the plain score)."""
    record = {"score": score}
    if outlier is not None:
        record["widen"] = {"from": float(np.quantile(outlier, WIDEN_FROM)), "rate": float(rate)}
    true = scores(record, probs, outlier)[np.arange(len(labels)), np.asarray(labels)]
    return record | {"scores": conformal.sorted_by_class(true, labels, np.shape(probs)[1])}


def widening(record, outlier):
    """How much each image's class scores are lowered (N,) (0 for a record without "widen")."""
    widen = record.get("widen")
    if widen is None:
        return 0.0
    if outlier is None:
        raise ValueError("these prediction sets widen with the unknown-input score: give the images' scores")
    return widen["rate"] * np.maximum(0.0, np.asarray(outlier, dtype=np.float64) - widen["from"])


def scores(record, probs, outlier=None):
    """The (widened) conformity score of every class of every image: float64 (N, C)."""
    return conformal.class_scores(probs, record["score"]) - np.reshape(widening(record, outlier), (-1, 1))


def thresholds(record, coverage=DEFAULT):
    """The class-conditional, training-conditional thresholds (C,) for a level in (0, 1) (ValueError otherwise)."""
    return conformal.class_thresholds(record["scores"], coverage, DELTA)


def mask(record, probs, coverage=DEFAULT, outlier=None):
    """Prediction sets as a bool mask (N, C) for calibrated probabilities (N, C) and the images' unknown-input
    scores (N,) (a row may be empty)."""
    return conformal.sets_from_scores(scores(record, probs, outlier), thresholds(record, coverage))


def figures(record, probs, labels, outlier=None):
    """{"score", "delta", "widen", "levels": {"0.95": conformal.summary, ...}, "curve": [[level, coverage, mean
    size], ...]}: the sets' coverage and size on labelled images at each of LEVELS and CURVE (metrics.json's
    "sets", the report)."""
    levels = {f"{level:.2f}": conformal.summary(mask(record, probs, level, outlier), labels) for level in LEVELS}
    curve = [conformal.summary(mask(record, probs, level, outlier), labels) for level in CURVE]
    points = [[level, c["coverage"], c["mean_size"]] for level, c in zip(CURVE, curve, strict=True)]
    head = {"score": record["score"], "delta": DELTA, "widen": record.get("widen")}
    return head | {"levels": levels, "curve": points}


def to_json(record):
    widen = {"widen": record["widen"]} if "widen" in record else {}
    return {"score": record["score"], "sizes": [len(s) for s in record["scores"]], **widen}


def to_arrays(record):
    return {f"{PREFIX}{c}": np.ascontiguousarray(s, dtype=np.float64) for c, s in enumerate(record["scores"])}


def from_saved(entry, arrays):
    """The record from trust.json's "sets" entry and trust.safetensors' arrays; ValueError if they disagree."""
    if not isinstance(entry, dict) or entry.get("score") not in conformal.SCORES:
        raise ValueError('its "sets" entry names no known conformity score')
    sizes = entry.get("sizes")
    scores = [arrays.get(f"{PREFIX}{c}") for c in range(len(sizes or ()))]
    if not sizes or any(s is None or s.ndim != 1 or len(s) != n for s, n in zip(scores, sizes, strict=True)):
        raise ValueError("its set scores are missing or not the sizes trust.json lists")
    if any(not np.all(np.diff(s) >= 0) for s in scores):
        raise ValueError("its set scores are not sorted")
    widen = entry.get("widen")
    if widen is not None and not (isinstance(widen, dict) and all(isinstance(widen.get(k), float) for k in WIDENING)):
        raise ValueError('its "widen" entry is not {"from": number, "rate": number}')
    return {"score": entry["score"], "scores": scores, **({"widen": widen} if widen is not None else {})}
