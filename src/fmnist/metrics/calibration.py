"""How far a model's probabilities can be taken at their word: temperature scaling and the numbers that judge it.

Temperature scaling (Guo et al. 2017) divides every logit by one scalar T > 0 fitted to minimise the
validation log-loss. Dividing by a positive number keeps every row's order, so the argmax and every accuracy
figure stay exactly as they were; only the probabilities move. T is fitted on log T with scipy's bounded scalar
minimiser (the NLL is smooth and unimodal enough in log T for it), which keeps T positive by construction.

ECE: the top-1 probability in 15 equal-width bins over [0, 1]; the weighted mean of |accuracy - confidence|
per bin. Brier: the mean over images of the squared distance between the probability vector and the one-hot
label (summed over classes, so it lies in [0, 2]).
"""

import numpy as np
from scipy import optimize, special

BINS = 15
LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))  # far wider than any temperature a trained net needs


def _log_probs(logits, temperature=1.0):
    return special.log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def probabilities(logits, temperature=1.0):
    """softmax(logits / temperature): float64 (N, C)."""
    return np.exp(_log_probs(logits, temperature))


def nll(logits, labels, temperature=1.0):
    """Mean negative log-likelihood of integer labels (N,) under softmax(logits / temperature)."""
    log_p = _log_probs(logits, temperature)
    return float(-np.mean(log_p[np.arange(len(log_p)), np.asarray(labels)]))


def fit_temperature(logits, labels):
    """The T > 0 that minimises nll(logits, labels, T), fitted on log T (a bounded scalar minimiser)."""
    logits = np.asarray(logits, dtype=np.float64)
    if len(logits) == 0:
        raise ValueError("temperature: no validation logits to fit on")
    result = optimize.minimize_scalar(
        lambda log_t: nll(logits, labels, np.exp(log_t)),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(result.x))


def reliability(probs, labels, bins=BINS):
    """Per equal-width bin of the top-1 probability: (count, mean confidence, accuracy), each (bins,).

    A bin holds the probabilities in (lo, hi]; the first also holds its lower edge. Empty bins have NaN means."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(labels)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / count
        accuracy = np.bincount(which, correct.astype(float), bins) / count
    return count, mean_confidence, accuracy


def ece(probs, labels, bins=BINS):
    """Expected calibration error of the top-1 probability over `bins` equal-width bins."""
    count, confidence, accuracy = reliability(probs, labels, bins)
    used = count > 0
    return float(np.sum(count[used] * np.abs(accuracy[used] - confidence[used])) / count.sum())


def brier(probs, labels):
    """Mean over images of sum over classes of (p - one-hot)^2."""
    probs = np.asarray(probs, dtype=np.float64)
    one_hot = np.eye(probs.shape[1])[np.asarray(labels)]
    return float(np.mean(np.sum((probs - one_hot) ** 2, axis=1)))


def summary(logits, labels, temperature=1.0):
    """{"ece", "nll", "brier", "mean_confidence"} of softmax(logits / temperature) against labels."""
    probs = probabilities(logits, temperature)
    return {
        "ece": ece(probs, labels),
        "nll": nll(logits, labels, temperature),
        "brier": brier(probs, labels),
        "mean_confidence": float(probs.max(axis=1).mean()),
    }


def before_after(logits, labels, temperature):
    """metrics.json's calibration record of one split: the summary at T = 1 and at the fitted T."""
    return {"before": summary(logits, labels), "after": summary(logits, labels, temperature)}
