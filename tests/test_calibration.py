"""Temperature scaling, ECE, Brier and the unknown-input scores, on synthetic numbers with known answers."""

import numpy as np
import pytest

from fmnist.metrics import calibration, ood


def synthetic(temperature, n=20_000, seed=0):
    """Labels drawn from softmax(z); the logits a model reports are z * temperature, so T = temperature undoes it."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.5, (n, 10))
    probs = calibration.probabilities(z)
    labels = (probs.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z * temperature, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_temperature_fit_recovers_a_known_temperature(true_t):
    logits, labels = synthetic(true_t)
    fitted = calibration.fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_t, rel=0.05)
    assert calibration.nll(logits, labels, fitted) <= calibration.nll(logits, labels, fitted * 1.1)
    assert calibration.nll(logits, labels, fitted) <= calibration.nll(logits, labels, fitted / 1.1)
    np.testing.assert_array_equal(calibration.probabilities(logits, fitted).argmax(1), logits.argmax(1))


def test_temperature_scaling_mends_an_overconfident_model():
    logits, labels = synthetic(3.0)
    t = calibration.fit_temperature(logits, labels)
    before, after = calibration.summary(logits, labels), calibration.summary(logits, labels, t)
    assert before["ece"] > 0.05 and after["ece"] < 0.02
    assert after["nll"] < before["nll"] and after["brier"] < before["brier"]


def test_ece_against_a_hand_computation():
    # top-1 probabilities 0.95, 0.95, 0.55, 0.35 (a tie: argmax takes class 1); right, wrong, right, wrong
    probs = np.array([[0.95, 0.05, 0.0], [0.95, 0.05, 0.0], [0.45, 0.55, 0.0], [0.30, 0.35, 0.35]])
    labels = np.array([0, 1, 1, 0])
    # bin (14/15, 1]: 2 images, confidence 0.95, accuracy 0.5 -> |0.45|; bin (8/15, 9/15]: 0.55 vs 1 -> 0.45;
    # bin (5/15, 6/15]: 0.35 vs 0 -> 0.35. ECE = (2 * 0.45 + 0.45 + 0.35) / 4
    assert calibration.ece(probs, labels) == pytest.approx((2 * 0.45 + 0.45 + 0.35) / 4)
    count, confidence, accuracy = calibration.reliability(probs, labels)
    assert count.sum() == 4 and count[14] == 2 and count[8] == 1 and count[5] == 1
    assert confidence[14] == pytest.approx(0.95) and accuracy[14] == pytest.approx(0.5)


def test_brier_against_a_hand_computation():
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    # (0.3^2 + 0.2^2 + 0.1^2) and (0.5^2 + 0.5^2) for labels 0 and 1
    assert calibration.brier(probs, np.array([0, 1])) == pytest.approx((0.09 + 0.04 + 0.01 + 0.5) / 2)


def test_ood_scores_and_threshold():
    rng = np.random.default_rng(0)
    inside, outside = rng.normal(0, 1, 5000), rng.normal(3, 1, 5000)
    assert ood.auroc(inside, outside) > 0.95 and ood.auroc(inside, inside[::-1]) == pytest.approx(0.5, abs=0.02)
    threshold = ood.threshold_for(inside, 0.05)
    # the margin keeps the validation rate under 5 %, and a fresh sample of the same kind at or under it
    assert 0.04 < ood.unknown_rate(inside, threshold) < 0.05
    assert ood.unknown_rate(rng.normal(0, 1, 20_000), threshold) <= 0.05
    confident, flat = np.array([[10.0, 0, 0]]), np.array([[0.1, 0, 0]])
    assert ood.energy_score(confident) < ood.energy_score(flat)
    assert ood.max_probability_score(confident) < ood.max_probability_score(flat)


def test_mahalanobis_is_small_near_a_class_and_large_away():
    rng = np.random.default_rng(0)
    means = rng.normal(0, 5, (10, 8))
    labels = rng.integers(0, 10, 4000)
    features = means[labels] + rng.normal(0, 1, (4000, 8))
    gaussian = ood.fit_gaussian(features, labels)
    near = ood.mahalanobis_score(means + rng.normal(0, 1, (10, 8)), gaussian)
    far = ood.mahalanobis_score(rng.normal(0, 1, (10, 8)) + 40, gaussian)
    assert near.max() < 6 < far.min()
