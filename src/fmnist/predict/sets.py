"""Prediction sets in answers: the classes that hold the true one at a stated coverage, in words and in JSON.

A model fitted by this fmnist keeps the sorted calibration scores of each class (fmnist.models.sets); the set at
any level in (0, 1) is computed here from the calibrated probabilities, for `fmnist predict`, the server, the
API and `fmnist explain` alike. The promise: for images like the validation ones, the set holds the true class
for at least that share of the images of every class. It is not a promise about one given image, nor about
images unlike the dataset's (photos, corrupted images): the report measures how far it holds there.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from fmnist.data.dataset import CLASS_NAMES
from fmnist.metrics import conformal
from fmnist.models import sets as fitted
from fmnist.models import trust
from fmnist.models.contracts import Classifier

DEFAULT = fitted.DEFAULT


def coverage_value(value: Any, name: str = "coverage") -> float:
    """A coverage level from a flag, a query parameter or an argument: a number strictly between 0 and 1, or
    ValueError with a one-line message naming `name` (callers word it as their own error)."""
    try:
        level = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} {value!r}: not a number (give a level such as 0.9 or 0.95)") from None
    try:
        return conformal.check_coverage(level)
    except ValueError:
        raise ValueError(f"{name} {value}: must lie strictly between 0 and 1 (e.g. 0.95 for 95 %)") from None


def record_of(model: Any) -> dict[str, Any] | None:
    """The model's fitted set record (fmnist.models.sets), or None for a model without one (a stand-in, a run of
    an older fmnist). A runtime standing in for a model (the ONNX one) carries it as `set_record`."""
    own = getattr(model, "set_record", None)
    if own is not None:
        return own
    record = trust.of(model)
    return record.get("sets") if isinstance(record, dict) else None


def mask(model: Classifier, assessment: trust.Assessment, coverage: float = DEFAULT) -> np.ndarray | None:
    """The prediction sets of assessed images (calibrated probabilities and unknown-input scores) at `coverage`:
    bool (N, 10), or None for a model without a set record. A runtime without unknown-input scores (NaN: the ONNX
    one `fmnist serve --runtime onnx` runs, which calls nothing unknown either) gets sets without the widening."""
    record = record_of(model)
    if record is None:
        return None
    outlier = np.nan_to_num(np.asarray(assessment.ood_score, dtype=np.float64), nan=-np.inf)
    return fitted.mask(record, assessment.probs, coverage, outlier)


def ordered(row: np.ndarray, probs: np.ndarray) -> tuple[int, ...]:
    """The class indices of one set (bool (10,)), most probable first."""
    members = np.flatnonzero(row)
    return tuple(int(c) for c in members[np.argsort(-probs[members], kind="stable")])


def words(members: Sequence[int], coverage: float) -> str:
    """The set in words: its class names, most probable first, and the level ("Shirt or T-shirt/top (95 %)");
    an empty set is "no class (95 %)"."""
    names = [CLASS_NAMES[c] for c in members]
    if not names:
        return f"no class ({percent(coverage)})"
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"{joined} ({percent(coverage)})"


def percent(coverage: float) -> str:
    """0.95 -> "95 %", 0.995 -> "99.5 %"."""
    return f"{100 * coverage:.4g} %"


def as_json(members: Sequence[int], coverage: float) -> dict[str, Any]:
    """The JSON fields of one answer's set: {"set": [class names, most probable first], "coverage": level}."""
    return {"set": [CLASS_NAMES[c] for c in members], "coverage": coverage}
