"""What every fitted model learns after its weights: a temperature for honest probabilities, and an "unknown" rule.

`calibrate(model, splits)` runs at the end of every model's `fit` (so `train`, `compare`, `tune` trials and
`api.fit` get it alike) and sets `model.trust`:
    temperature   T > 0 fitted on the validation logits (fmnist.metrics.calibration); probabilities are
                  softmax(logits / T), so the argmax never changes
    method        the out-of-distribution score (fmnist.metrics.ood); higher means less like clothing
    threshold     the score above which an image is called unknown: set on validation so that `rate` (5 %) of
                  validation clothing is
    gaussians     for the Mahalanobis scores: class means and the whitening matrix of the feature vectors (the
                  CNN's and the hybrid's) and of the standardised pixels, from training images
    standardise   for "combined": each part's mean and spread on validation clothing
    sets          the sorted calibration scores of each class, for prediction sets at any level, widened
                  by the out-of-distribution score (fmnist.models.sets)
`assess(model, images)` gives calibrated probabilities, scores and the verdict. `save` / `load` keep the record
beside the weights (trust.json and trust.safetensors), so the checkpoint's checksums cover it.
"""

import dataclasses
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file
from safetensors.numpy import save as safetensors_bytes

from fmnist.data.dataset import normalise_flat
from fmnist.errors import UserError
from fmnist.files import atomic_path, read_json, write_json
from fmnist.metrics import calibration, ood
from fmnist.models import sets
from fmnist.models.contracts import Classifier

RATE = 0.05  # validation clothing called unknown: the default the threshold is set for
# "combined": the mean of the energy score and the Mahalanobis distances on the features and on the pixels, each
# standardised by its mean and spread on validation clothing. Chosen by measurement on the dev non-clothing set
# (bench/bench_trust.py, README): each part misses a different kind of outlier (the energy misses noise and
# shapes, the pixel distance misses digits), together they miss few.
METHOD = "combined"
METHODS = ("max-probability", "energy", "features", "pixels", "combined")
COMBINED = ("energy", "features", "pixels")
GAUSSIAN_IMAGES = 10_000  # training images the class Gaussians are fitted on
JSON, ARRAYS = "trust.json", "trust.safetensors"
FORMAT = "fmnist-trust/1"
BATCH = 1024


@dataclasses.dataclass(frozen=True)
class Assessment:
    """What a model says about images: calibrated probabilities (N, 10), OOD scores (N,), unknown (N,) bool."""

    probs: np.ndarray
    ood_score: np.ndarray
    unknown: np.ndarray

    def __len__(self):
        return len(self.probs)

    def __getitem__(self, rows):
        """The assessment of some images (a slice: the inference thread hands each request its own rows)."""
        return Assessment(self.probs[rows], self.ood_score[rows], self.unknown[rows])


def parts(model, method):
    """The scores a method is made of, those the model has (only the CNN and the hybrid have features)."""
    wanted = COMBINED if method == "combined" else (method,)
    return tuple(p for p in wanted if p != "features" or hasattr(model, "features"))


def _vectors(model, images, part, trust, features=None):
    if part == "features" and features is not None:
        return features
    if part == "features":
        return np.concatenate([model.features(images[i : i + BATCH]) for i in range(0, len(images), BATCH)])
    mean, std = trust["pixel_stats"]
    return normalise_flat(np.asarray(images), mean, std)


def _part_score(model, images, logits, part, trust, features=None):
    if part == "max-probability":
        return ood.max_probability_score(logits, trust["temperature"])
    if part == "energy":
        return ood.energy_score(logits, trust["temperature"])
    return ood.mahalanobis_score(_vectors(model, images, part, trust, features), trust["gaussians"][part])


def scores(model, images, logits, method, trust, features=None):
    """The OOD score of each image under `method` (higher: less like clothing). features: the model's feature
    vectors of the images when the caller has them already."""
    names = parts(model, method)
    each = {p: _part_score(model, images, logits, p, trust, features) for p in names}
    return _combined(each, trust) if method == "combined" else each[names[0]]


def _combined(each, trust):
    standard = trust["standardise"]
    return sum((score - standard[p][0]) / standard[p][1] for p, score in each.items()) / len(each)


def calibrate(model: Classifier, splits, method=METHOD, rate=RATE, val_logits=None):
    """Fit the temperature and the unknown threshold on validation; set and return `model.trust`."""
    names = parts(model, method)
    if not names:
        raise ValueError(f"unknown-input method {method!r}: this model has no feature vectors")
    features = None
    if val_logits is not None:
        logits = val_logits
    elif "features" in names:
        logits, features = model.logits_and_features(splits.x_val)  # one pass for both
    else:
        logits = model.predict_logits(splits.x_val)
    trust = {"temperature": calibration.fit_temperature(logits, splits.y_val), "method": method, "rate": rate}
    trust["pixel_stats"] = (float(splits.mean), float(splits.std))
    take = slice(0, min(len(splits.x_train), GAUSSIAN_IMAGES))
    trust["gaussians"] = {
        p: ood.fit_gaussian(_vectors(model, splits.x_train[take], p, trust), splits.y_train[take])
        for p in names
        if p in ("features", "pixels")
    }
    each = {p: _part_score(model, splits.x_val, logits, p, trust, features) for p in names}
    if method == "combined":
        trust["standardise"] = {p: (float(v.mean()), float(max(v.std(), 1e-12))) for p, v in each.items()}
    val = _combined(each, trust) if method == "combined" else each[names[0]]
    trust["threshold"] = ood.threshold_for(val, rate)
    trust["val_unknown_rate"] = ood.unknown_rate(val, trust["threshold"])
    trust["sets"] = sets.fit(calibration.probabilities(logits, trust["temperature"]), splits.y_val, val)
    model.trust = trust
    return trust


def add_sets(model, splits, val_logits):
    """Give a calibrated model of an older fmnist its prediction sets, at its own temperature (nothing refitted)."""
    record = model.trust
    outlier = scores(model, splits.x_val, val_logits, record["method"], record)
    record["sets"] = sets.fit(calibration.probabilities(val_logits, record["temperature"]), splits.y_val, outlier)
    return record


def of(model):
    """The model's trust record; a model without one (an older run, a stand-in) answers at T = 1, never unknown."""
    return getattr(model, "trust", None)


def assess(model: Classifier, images, logits=None):
    """Calibrated probabilities, OOD scores and the unknown verdict for uint8 images (N, 28, 28)."""
    trust, features = of(model), None
    if logits is None and trust is not None and "features" in parts(model, trust["method"]):
        logits, features = model.logits_and_features(images)  # one pass where two would do the same
    elif logits is None:
        logits = model.predict_logits(images)
    if trust is None:
        return Assessment(calibration.probabilities(logits), np.full(len(logits), np.nan), np.zeros(len(logits), bool))
    score = scores(model, images, logits, trust["method"], trust, features)
    probs = calibration.probabilities(logits, trust["temperature"])
    return Assessment(probs, score, score > trust["threshold"])


def save(model, folder):
    """Write the model's trust record into its weights folder (nothing for a model without one)."""
    trust = of(model)
    if trust is None:
        return
    folder = Path(folder)
    record = {"format": FORMAT, **{k: v for k, v in trust.items() if k not in ("gaussians", "sets")}}
    if "sets" in trust:
        record["sets"] = sets.to_json(trust["sets"])
    write_json(folder / JSON, record)
    arrays = {f"{p}.{k}": np.ascontiguousarray(v) for p, g in trust["gaussians"].items() for k, v in g.items()}
    arrays |= sets.to_arrays(trust["sets"]) if "sets" in trust else {}
    if arrays:
        with atomic_path(folder / ARRAYS) as tmp:
            tmp.write_bytes(safetensors_bytes(arrays))  # a full disk: an OSError (save_file raises its own error)


def load(model, folder):
    """Set `model.trust` from its weights folder; None when the folder has none (an older run)."""
    folder = Path(folder)
    model.trust = None
    if not (folder / JSON).is_file():
        return None
    record = read_json(folder / JSON)
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("method") not in METHODS:
        raise UserError(f"{folder / JSON}: not a {FORMAT} record (retrain or re-evaluate the run)")
    trust = {k: v for k, v in record.items() if k != "format"}
    trust["pixel_stats"] = tuple(trust["pixel_stats"])
    trust["gaussians"], arrays = {}, {}
    if (folder / ARRAYS).is_file():
        try:
            arrays = load_file(str(folder / ARRAYS))
        except (OSError, SafetensorError) as exc:
            raise UserError(f"{folder / ARRAYS}: cannot read the class Gaussians and set scores ({exc})") from exc
        for key, value in arrays.items():
            part, _, name = key.partition(".")
            if not key.startswith(sets.PREFIX):
                trust["gaussians"].setdefault(part, {})[name] = value
    if "sets" in trust:
        try:
            trust["sets"] = sets.from_saved(trust["sets"], arrays)
        except ValueError as exc:
            raise UserError(f"{folder / JSON}: {exc} (run `fmnist evaluate` on the run again)") from None
    model.trust = trust
    return trust
