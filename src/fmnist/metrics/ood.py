"""Scores for "this image is not like any class" (higher: less like the training data), and how to judge them.

Candidates measured (bench/bench_trust.py): the maximum calibrated probability (Hendrycks & Gimpel 2017),
the energy score (Liu et al. 2020) and a Mahalanobis distance on a model's feature vectors (Lee et al. 2018:
Gaussian classes with one shared covariance; the score is the distance to the nearest class mean). Features
are whitened once by the shared covariance's inverse square root, so a score is a nearest-mean search in
plain Euclidean space.
"""

import numpy as np
from scipy import special
from sklearn import covariance, metrics

CLASSES = 10


def max_probability_score(logits, temperature=1.0):
    """1 - the top calibrated probability."""
    probs = special.softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return 1.0 - probs.max(axis=1)


def energy_score(logits, temperature=1.0):
    """-T logsumexp(logits / T): low for inputs the model has a confident answer about."""
    return -temperature * special.logsumexp(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def fit_gaussian(features, labels, classes=CLASSES):
    """Class means and a whitening matrix W (shared Ledoit-Wolf covariance = (W W^T)^-1) from train features.

    Returns {"means": (C, D), "whiten": (D, D)} as float32 arrays."""
    x = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    means = np.stack([x[labels == c].mean(axis=0) for c in range(classes)])
    shared = covariance.LedoitWolf(assume_centered=True, store_precision=False).fit(x - means[labels]).covariance_
    values, vectors = np.linalg.eigh(shared)
    whiten = vectors / np.sqrt(np.maximum(values, 1e-12 * values.max()))
    return {"means": means.astype(np.float32), "whiten": whiten.astype(np.float32)}


def mahalanobis_score(features, gaussian):
    """The Mahalanobis distance of each row of features (N, D) to its nearest class mean: float64 (N,).

    The whitening runs in float32 (half the time of float64; the distances agree to about 1e-5 of their size)."""
    w = np.asarray(gaussian["whiten"], dtype=np.float32)
    x = (np.asarray(features, dtype=np.float32) @ w).astype(np.float64)
    m = np.asarray(gaussian["means"], dtype=np.float32).astype(np.float64) @ w.astype(np.float64)
    squared = (x**2).sum(1, keepdims=True) - 2 * x @ m.T + (m**2).sum(1)
    return np.sqrt(np.maximum(squared.min(axis=1), 0.0))


def threshold_for(scores, rate, z=1.645):
    """The unknown threshold for in-distribution `scores`: the score above which a share `rate` - z * its
    sampling error lies. The margin (one-sided 95 % for z = 1.645) is what keeps a fresh sample of the same kind
    at or under `rate`, where the plain quantile would put half of all fresh samples over it."""
    scores = np.asarray(scores, dtype=np.float64)
    share = max(rate - z * np.sqrt(rate * (1 - rate) / len(scores)), 0.0)
    return float(np.quantile(scores, 1.0 - share))


def auroc(inside, outside):
    """Area under the ROC curve of telling `outside` scores from `inside` ones (1: perfect, 0.5: chance)."""
    inside, outside = np.asarray(inside), np.asarray(outside)
    truth = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(metrics.roc_auc_score(truth, np.r_[inside, outside]))


def unknown_rate(scores, threshold):
    """The share of scores called unknown (strictly above the threshold)."""
    return float(np.mean(np.asarray(scores) > threshold))
