"""Prediction sets fitted with the temperature: the sorted calibration scores of each class, any level later.

`fit(probs, labels)` keeps, for each class, the conformity scores (fmnist.metrics.conformal, score SCORE) of
the validation images of that class under their temperature-scaled probabilities, sorted. Any coverage level's
class-conditional thresholds follow from them at answer time (`thresholds`), so `--coverage 0.9` needs no refit.
The record lives in the model's trust record (fmnist.models.trust) as "sets": {"score", "scores": [C arrays]},
saved in trust.safetensors as `sets.<class>` beside trust.json's {"score", "sizes"}, under the checkpoint's
checksums.

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


def fit(probs, labels, score=SCORE):
    """The set record from calibrated validation probabilities (N, C) and labels (N,)."""
    true = conformal.true_scores(probs, labels, score)
    return {"score": score, "scores": conformal.sorted_by_class(true, labels, np.shape(probs)[1])}


def thresholds(record, coverage=DEFAULT):
    """The class-conditional, training-conditional thresholds (C,) for a level in (0, 1) (ValueError otherwise)."""
    return conformal.class_thresholds(record["scores"], coverage, DELTA)


def mask(record, probs, coverage=DEFAULT):
    """Prediction sets as a bool mask (N, C) for calibrated probabilities (N, C) (a row may be empty)."""
    scores = conformal.class_scores(probs, record["score"])
    return conformal.sets_from_scores(scores, thresholds(record, coverage))


def figures(record, probs, labels):
    """{"score", "levels": {"0.95": conformal.summary, ...}, "curve": [[level, coverage, mean size], ...]}: the
    sets' coverage and size on labelled images at each of LEVELS and CURVE (metrics.json's "sets", the report)."""
    levels = {f"{level:.2f}": conformal.summary(mask(record, probs, level), labels) for level in LEVELS}
    curve = [conformal.summary(mask(record, probs, level), labels) for level in CURVE]
    points = [[level, c["coverage"], c["mean_size"]] for level, c in zip(CURVE, curve, strict=True)]
    return {"score": record["score"], "levels": levels, "curve": points}


def to_json(record):
    return {"score": record["score"], "sizes": [len(s) for s in record["scores"]]}


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
    return {"score": entry["score"], "scores": scores}
