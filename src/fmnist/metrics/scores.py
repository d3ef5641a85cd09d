"""Numbers from logits: accuracy, log-loss, probabilities, and the full per-class metrics (scikit-learn).

Every other module asks this one, so that a figure is computed the same way wherever it appears.
"""

import numpy as np
from scipy import special
from sklearn import metrics as skm

from fmnist.data.dataset import CLASS_NAMES

TOP_CONFUSIONS = 5


def accuracy(logits, labels):
    """The share of rows of logits (N, C) whose largest entry is at the label (N,)."""
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def mean_log_loss(logits, labels):
    """Mean cross-entropy of logits (N, C) against integer labels (N,), from a stable float64 log-softmax."""
    log_p = special.log_softmax(np.asarray(logits, dtype=np.float64), axis=1)
    return float(-np.mean(log_p[np.arange(len(log_p)), np.asarray(labels)]))


def softmax(logits):
    """Logits (N, C) -> float64 softmax probabilities (N, C); stable for any logit scale."""
    return special.softmax(np.asarray(logits, dtype=np.float64), axis=1)


def most_confused(confusion, class_names=CLASS_NAMES, top=TOP_CONFUSIONS):
    """The `top` largest off-diagonal cells of a confusion matrix (C, C): true class -> predicted class."""
    off_diagonal = np.array(confusion, dtype=np.int64)
    np.fill_diagonal(off_diagonal, 0)
    row_totals = np.asarray(confusion).sum(axis=1)
    pairs = []
    for flat in np.argsort(-off_diagonal, axis=None, kind="stable")[:top]:
        true, predicted = divmod(int(flat), off_diagonal.shape[1])
        count = int(off_diagonal[true, predicted])
        if count == 0:
            break
        pairs.append(
            {
                "true": true,
                "true_name": class_names[true],
                "predicted": predicted,
                "predicted_name": class_names[predicted],
                "count": count,
                "rate": count / int(row_totals[true]),  # the share of the true class sent to `predicted`
            }
        )
    return pairs


def metrics_from_logits(logits, labels, class_names=CLASS_NAMES):
    """Accuracy, log-loss, per-class and macro precision / recall / F1, the confusion matrix (rows: true class,
    columns: predicted class) and the most-confused pairs, for logits (N, C) and integer labels (N,).

    Returns plain Python numbers and lists, ready for JSON.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    classes = list(range(len(class_names)))
    if logits.ndim != 2 or logits.shape != (len(labels), len(classes)):
        raise ValueError(f"logits {logits.shape} do not match labels {labels.shape} and {len(classes)} classes")
    predicted = logits.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0.0
    )
    confusion = skm.confusion_matrix(labels, predicted, labels=classes)
    return {
        "n": len(labels),
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "log_loss": float(skm.log_loss(labels, softmax(logits), labels=classes)),
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
        "per_class": [
            {
                "class": c,
                "name": class_names[c],
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "support": int(support[c]),
            }
            for c in classes
        ],
        "confusion_matrix": confusion.tolist(),
        "most_confused": most_confused(confusion, class_names),
    }
