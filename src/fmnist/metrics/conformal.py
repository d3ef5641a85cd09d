"""Split conformal prediction sets: classes that hold the true one for at least a stated share of images.

Given calibration images the model never trained on (the validation split), a conformity score s(x, y) that is
high when class y fits x badly, and a level 1 - α, the threshold q is the ⌈(n + 1)(1 − α)⌉-th smallest of the n
calibration scores of the true classes; the set of a new image is every class y with s(x, y) ≤ q. If the new
image is exchangeable with the calibration ones, P(true class in set) ≥ 1 − α (Vovk et al. 2005; Angelopoulos &
Bates 2021, "A gentle introduction"), whatever the model. When ⌈(n + 1)(1 − α)⌉ > n there are too few
calibration scores to promise the level: the threshold is +inf and the set is every class.

Class-conditional (Mondrian) sets compute one threshold per class from that class's calibration images alone, so
the promise holds for each true class separately (shirts as well as trousers), not only on average.

Training-conditional (PAC) thresholds: the promise above is an average over calibration draws; the coverage of
one fitted threshold, the k-th smallest of n continuous scores, is itself random, Beta(k, n + 1 − k) (Vovk 2012,
"Conditional validity of inductive conformal predictors"; Park et al. 2020, "PAC confidence sets"). Given δ, the
rank is the smallest k with P(Beta(k, n + 1 − k) < 1 − α) ≤ δ: then with probability at least 1 − δ over the
calibration images, the thresholds in hand cover at least 1 − α of new images (per class, for Mondrian sets).

Scores, from probabilities p (N, C) (temperature-scaled softmax), for every class at once (N, C):
    lac    1 − p_y (least ambiguous set-valued classifier, Sadinle et al. 2019)
    aps    the total probability of the classes ranked at or above y (adaptive prediction sets, Romano et al.
           2020), deterministic: no random tie-breaking, so the CLI, the server and the ONNX graph agree
    raps   aps + λ · max(0, rank(y) − k_reg) (regularised APS, Angelopoulos et al. 2021), rank counted from 1
A class whose score ties the threshold is in the set. Sets are not forced to hold the most probable class: that
would only add coverage the level does not ask for (measured: 96.6 % instead of 95 % for the cnn).
"""

import functools
import math

import numpy as np

SCORES = ("lac", "aps", "raps")
RAPS_LAMBDA, RAPS_K = 0.01, 1  # the penalty per rank beyond the first (the paper's small-λ regime)


def class_scores(probs, score="lac"):
    """The conformity score of every class for every image: float64 (N, C) from probabilities (N, C)."""
    probs = np.asarray(probs, dtype=np.float64)
    if score == "lac":
        return 1.0 - probs
    if score not in SCORES:
        raise ValueError(f"conformity score {score!r}: choose one of {', '.join(SCORES)}")
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=1)
    cumulative = np.empty_like(probs)
    np.put_along_axis(cumulative, order, np.cumsum(ranked, axis=1), axis=1)
    if score == "aps":
        return cumulative
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(1, probs.shape[1] + 1)[None, :].repeat(len(probs), 0), axis=1)
    return cumulative + RAPS_LAMBDA * np.maximum(0, rank - RAPS_K)


def true_scores(probs, labels, score="lac"):
    """The score of each image's true class: float64 (N,) from probabilities (N, C) and labels (N,)."""
    labels = np.asarray(labels)
    return class_scores(probs, score)[np.arange(len(labels)), labels]


@functools.lru_cache(maxsize=256)  # a pure function of three numbers, asked per class on every answer
def rank(n, coverage, delta=None):
    """Which smallest calibration score is the threshold (1-based; > n means none is): ⌈(n + 1) · coverage⌉
    (coverage ≥ the level on average over calibration draws), or with `delta` the smallest k whose Beta(k,
    n + 1 − k) coverage falls below the level with probability at most delta (training-conditional)."""
    if delta is None:
        # The small tolerance keeps a product that is an integer in exact arithmetic from rounding up past it.
        return math.ceil((n + 1) * coverage - 1e-9)
    from scipy.special import betainc  # the Beta law's CDF; lazily: scipy is slow to import

    k = np.arange(1, n + 1)
    enough = np.flatnonzero(betainc(k, n + 1 - k, coverage) <= delta)  # decreasing in k
    return int(k[enough[0]]) if len(enough) else n + 1


def quantile(sorted_scores, coverage, delta=None):
    """The finite-sample threshold from calibration scores sorted ascending (n,): the rank(n, coverage, delta)-th
    smallest, or +inf when that rank exceeds n (too few scores for the level: the set is every class)."""
    k = rank(len(sorted_scores), coverage, delta)
    return float(sorted_scores[k - 1]) if k <= len(sorted_scores) else math.inf


def check_coverage(coverage):
    """The level as a float in (0, 1), or ValueError naming it."""
    value = float(coverage)
    if not 0.0 < value < 1.0:
        raise ValueError(f"coverage {coverage}: must lie strictly between 0 and 1 (e.g. 0.95 for 95 %)")
    return value


def marginal_threshold(scores, coverage):
    """One threshold for all classes from calibration scores (n,) of the true classes."""
    return quantile(np.sort(np.asarray(scores, dtype=np.float64)), check_coverage(coverage))


def sorted_by_class(scores, labels, num_classes):
    """The calibration scores (n,) split by true class (n,), each sorted ascending: a list of C arrays."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    return [np.sort(scores[labels == c]) for c in range(num_classes)]


def class_thresholds(per_class, coverage, delta=None):
    """Mondrian thresholds (C,) from the sorted calibration scores of each class (a list of C arrays); delta: see
    rank."""
    coverage = check_coverage(coverage)
    return np.array([quantile(scores, coverage, delta) for scores in per_class])


def sets_from_scores(scores, thresholds):
    """Prediction sets as a bool mask (N, C): class y of image i is in when scores[i, y] ≤ thresholds[y] (a
    scalar threshold applies to every class). A set may be empty: no class is typical enough at the level (with
    class-conditional thresholds, most often an image unlike every class's calibration images)."""
    return np.asarray(scores) <= np.asarray(thresholds, dtype=np.float64)


def summary(mask, labels):
    """Coverage (share of images whose true class is in the set), per class (C,), mean set size and the share of
    one-class sets, from a set mask (N, C) and labels (N,)."""
    labels = np.asarray(labels)
    hit = mask[np.arange(len(labels)), labels]
    sizes = mask.sum(axis=1)
    per_class = [float(hit[labels == c].mean()) if (labels == c).any() else math.nan for c in range(mask.shape[1])]
    return {
        "coverage": float(hit.mean()),
        "per_class": per_class,
        "mean_size": float(sizes.mean()),
        "single": float((sizes == 1).mean()),
        "empty": float((sizes == 0).mean()),
    }
