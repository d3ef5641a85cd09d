"""The unknown rule for segmented photos: a threshold of its own, set on photos of validation garments.

A garment cut from its background (`fmnist.predict.segment`) is not quite a dataset image: a tilt, JPEG, a
shadow's rim, a print, levels set by a rule. The model's unknown score (`fmnist.models.trust`), whose threshold
is set on dataset images, called 30-45 % of cleanly cut garments unknown (docs/photos.md): the pixel distance
above all. So a photo that was segmented is judged against a threshold set the same way on segmented photos:
composites (`fmnist.predict.composites`) of VALIDATION garments go through `segment.convert`, and the threshold
lets the record's rate of them be called unknown (never stricter than the dataset's threshold). Photos that take
the dataset's steps (product shots, scans, dataset images) keep the dataset's threshold.

The threshold is a fact of the trained model: `fit` runs after training (`fmnist.jobs.train`) and
`fmnist evaluate` adds it to an older run's models; it is saved with the rest of the trust record.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from fmnist.data.dataset import Splits
from fmnist.metrics import ood
from fmnist.models import trust
from fmnist.models.contracts import Classifier
from fmnist.predict import composites, segment
from fmnist.predict.images import load_image

PHOTOS = 200  # composites of validation garments the threshold is set on (kinds in turn), at most
SHARE = 0.1  # of the validation garments, where that is fewer (a --subset run: about 30 ms a photo)
LONG_SIDE = 400  # their size: segmentation works on segment.SEG_SIDE pixels anyway, and small ones are quick
KEY = "photo_threshold"


def segmented_images(items: np.ndarray, count: int, seed: int) -> np.ndarray:
    """What the model sees of photos of the first `count` items, uint8 (N, 28, 28): only those segmented."""
    rng = np.random.default_rng([seed, 36])
    seen = []
    for i, item in enumerate(items[:count]):
        data, _ = composites.composite(item, composites.KINDS[i % len(composites.KINDS)], rng, LONG_SIDE)
        one = segment.convert(load_image("photo", content=data))
        if one.cutout is not None:
            seen.append(one.image)
    return np.stack(seen) if seen else np.zeros((0, 28, 28), np.uint8)


def fit(
    model: Classifier, splits: Splits, seed: int = 0, count: int = PHOTOS, cache: dict | None = None
) -> float | None:
    """Set the model's photo threshold from composites of its validation garments; None for a model without an
    unknown rule (nothing to set). `count` photos at most, and no more than SHARE of the validation garments.
    `cache`: a dict the models of one run share, so the cut-outs (about 30 ms each) are made once per run."""
    record = trust.of(model)
    if record is None:
        return None
    count = min(count, max(1, round(SHARE * len(splits.x_val))))
    key = (KEY, seed, count)
    images = cache.get(key) if cache is not None else None
    if images is None:
        images = segmented_images(splits.x_val, count, seed)
    if cache is not None:
        cache[key] = images
    if not len(images):
        return None
    scores = trust.assess(model, images).ood_score
    record[KEY] = max(ood.threshold_for(scores, record["rate"]), record["threshold"])
    return record[KEY]


def judged(model: Classifier, assessment: trust.Assessment, segmented: Sequence[bool]) -> trust.Assessment:
    """The assessment with each segmented photo (True in `segmented`: it has a cut-out) judged against the photo
    threshold; unchanged for a model without one (an older run)."""
    record = trust.of(model)
    if record is None or KEY not in record or not len(assessment):
        return assessment
    unknown = np.where(np.asarray(segmented, bool), assessment.ood_score > record[KEY], assessment.unknown)
    return dataclasses.replace(assessment, unknown=unknown)
