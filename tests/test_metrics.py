"""Metrics against scikit-learn computed independently, by hand, and at extreme logits."""

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from fmnist.data.dataset import CLASS_NAMES
from fmnist.metrics import scores
from rundirs import noisy_logits


def numpy_softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_metrics_equal_sklearn_on_fixed_predictions():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 300)
    logits = noisy_logits(labels, rng, margin=1.5)
    predicted = logits.argmax(axis=1)
    m = scores.metrics_from_logits(logits, labels)

    report = skm.classification_report(
        labels, predicted, labels=range(10), target_names=CLASS_NAMES, output_dict=True, zero_division=0
    )
    assert m["n"] == 300
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    for row in m["per_class"]:
        expected = report[row["name"]]
        assert row["name"] == CLASS_NAMES[row["class"]]
        assert row["precision"] == pytest.approx(expected["precision"])
        assert row["recall"] == pytest.approx(expected["recall"])
        assert row["f1"] == pytest.approx(expected["f1-score"])
        assert row["support"] == expected["support"]
    for key, sk_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
        assert m["macro"][key] == pytest.approx(report["macro avg"][sk_key])
    assert m["confusion_matrix"] == skm.confusion_matrix(labels, predicted, labels=range(10)).tolist()
    probs = numpy_softmax(logits.astype(np.float64))
    assert m["log_loss"] == pytest.approx(skm.log_loss(labels, probs, labels=range(10)), rel=1e-9)
    assert m["log_loss"] == pytest.approx(-np.log(probs[np.arange(300), labels]).mean(), rel=1e-9)
    assert json.loads(json.dumps(m)) == m  # plain JSON types all the way down


def test_metrics_by_hand_on_three_classes():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    logits = np.eye(3)[predicted] * 4.0
    m = scores.metrics_from_logits(logits, labels, class_names=("a", "b", "c"))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert [r["precision"] for r in m["per_class"]] == pytest.approx([1.0, 0.5, 0.5])
    assert [r["recall"] for r in m["per_class"]] == pytest.approx([2 / 3, 0.5, 1.0])
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    pairs = [(p["true_name"], p["predicted_name"], p["count"]) for p in m["most_confused"]]
    assert pairs == [("a", "b", 1), ("b", "c", 1)]
    assert m["most_confused"][0]["rate"] == pytest.approx(1 / 3)
    # softmax of (4, 0, 0): p(right) = e^4 / (e^4 + 2), p(wrong) = 1 / (e^4 + 2)
    right, wrong = np.log(np.exp(4) + 2) - 4, np.log(np.exp(4) + 2)
    assert m["log_loss"] == pytest.approx((4 * right + 2 * wrong) / 6)


def test_log_loss_is_finite_for_huge_logits():
    labels = np.arange(20) % 10
    logits = (np.eye(10, dtype=np.float32)[(labels + 1) % 10] * 2000.0) - 1000.0  # confidently wrong
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probs = scores.softmax(logits)
        m = scores.metrics_from_logits(logits, labels)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0)
    assert np.isfinite(m["log_loss"]) and m["log_loss"] > 10
    assert m["accuracy"] == 0.0


def test_accuracy_and_mean_log_loss_agree_with_the_full_metrics():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 200)
    logits = noisy_logits(labels, rng, margin=1.0)
    full = scores.metrics_from_logits(logits, labels)
    assert scores.accuracy(logits, labels) == pytest.approx(full["accuracy"])
    assert scores.mean_log_loss(logits, labels) == pytest.approx(full["log_loss"], rel=1e-9)
    huge = np.where(np.eye(10, dtype=bool)[(labels + 1) % 10], 1e4, -1e4).astype(np.float32)
    assert scores.mean_log_loss(huge, labels) == pytest.approx(2e4)
