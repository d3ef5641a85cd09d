"""A model's answers about people's images: calibrated probabilities, top-k, the prediction set (fmnist.predict.sets)
and their text and JSON forms.

Used by `fmnist predict`, the server and the API alike, so that every answer is worded the same.
"""

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fmnist.data.dataset import CLASS_NAMES, NUM_CLASSES
from fmnist.errors import UserError
from fmnist.files import atomic_path, fitting_name
from fmnist.models import trust
from fmnist.models.contracts import Classifier
from fmnist.predict import segment, sets
from fmnist.predict.images import MAX_BYTES, MAX_PIXELS, ImageError, collect_inputs, detached, shown


@dataclasses.dataclass(frozen=True)
class Prediction:
    path: Path
    image: np.ndarray  # uint8 (28, 28): what the model saw
    top: tuple[tuple[int, float], ...]  # ((class index, probability), ...), most probable first
    unknown: bool = False  # the image does not look like any Fashion-MNIST class (fmnist.models.trust)
    ood_score: float | None = None  # higher: less like clothing; None for a model without an unknown rule
    cutout: np.ndarray | None = None  # uint8 (H, W): the garment cut out on white; None: no segmentation needed
    set: tuple[int, ...] = ()  # the prediction set's classes, most probable first (it may be empty)
    coverage: float | None = None  # the set's level; None for a model without fitted sets

    @property
    def file(self) -> str:
        return shown(self.path)


def assess(model: Classifier, images: np.ndarray, batch_size: int = 256) -> trust.Assessment:
    """Calibrated probabilities, OOD scores and unknown verdicts (`fmnist.models.trust.Assessment`) over uint8
    (N, 28, 28) images, in batches."""
    parts = [trust.assess(model, images[start : start + batch_size]) for start in range(0, len(images), batch_size)]
    if not parts:
        return trust.Assessment(np.empty((0, NUM_CLASSES)), np.empty(0), np.zeros(0, bool))
    return trust.Assessment(*(np.concatenate(column) for column in zip(*map(dataclasses.astuple, parts), strict=True)))


def probabilities(model: Classifier, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Calibrated class probabilities, softmax(logits / T), over uint8 (N, 28, 28) images: float64 (N, 10)."""
    return assess(model, images, batch_size).probs


def ranked(
    assessment: trust.Assessment,
    names: Iterable[str | Path],
    images: Iterable[np.ndarray],
    top_k: int,
    cutouts: Iterable[np.ndarray | None] | None = None,
) -> list[Prediction]:
    """One Prediction per image: its top-k classes, the unknown verdict, the OOD score (and its cut-out)."""
    order = np.argsort(-assessment.probs, axis=1, kind="stable")[:, :top_k]
    images = list(images)
    cuts = list(cutouts) if cutouts is not None else [None] * len(images)
    return [
        Prediction(Path(name), image, tuple((int(c), float(p[c])) for c in best), bool(unknown), _score(score), cut)
        for name, image, p, best, unknown, score, cut in zip(
            names, images, assessment.probs, order, assessment.unknown, assessment.ood_score, cuts, strict=True
        )
    ]


def with_sets(
    predictions: list[Prediction], probs: np.ndarray, set_mask: np.ndarray | None, coverage: float
) -> list[Prediction]:
    """The predictions with their prediction sets: set_mask bool (N, 10) at `coverage` (fmnist.predict.sets.mask)
    over the same images' probabilities (N, 10); unchanged for a model without sets (None)."""
    if set_mask is None:
        return predictions
    return [
        dataclasses.replace(pred, set=sets.ordered(row, p), coverage=coverage)
        for pred, row, p in zip(predictions, set_mask, probs, strict=True)
    ]


def _score(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 4)


def predict_files(
    model: Classifier,
    paths: Iterable[str | Path],
    top_k: int = 3,
    *,
    limits: tuple[int, int] = (MAX_BYTES, MAX_PIXELS),
    box: segment.Box | None = None,
    coverage: float = sets.DEFAULT,
) -> tuple[list[Prediction], list[ImageError]]:
    """Files and folders -> (list of Prediction in input order, list of ImageError). Never stops at a bad file.
    limits: (bytes, pixels) a file may have. `box`: where the garment is in each photo (x0, y0, x1, y1 in its
    pixels; see `fmnist.predict.segment`). Each answer carries its prediction set at `coverage` where the model
    has fitted sets."""
    if not 1 <= top_k <= NUM_CLASSES:
        raise UserError(f"--top-k {top_k}: must be between 1 and {NUM_CLASSES}")
    files, failures = collect_inputs(paths)
    kept, seen = [], []
    for path in files:
        try:
            seen.append(segment.convert_file(path, box=box, max_bytes=limits[0], max_pixels=limits[1]))
        except ImageError as exc:
            failures.append(detached(exc))
            continue
        kept.append(path)
    if not kept:
        return [], failures
    images = [s.image for s in seen]
    cutouts = [None if s.cutout is None else np.asarray(s.cutout) for s in seen]
    assessment = assess(model, np.stack(images))
    predictions = ranked(assessment, kept, images, top_k, cutouts)
    set_mask = sets.mask(model, assessment, coverage)
    return with_sets(predictions, assessment.probs, set_mask, coverage), failures


UNKNOWN_TEXT = "does not look like any Fashion-MNIST class"


def format_text(predictions: Iterable[Prediction]) -> str:
    """One line per file: `FILE: CLASS 93.1%`, the prediction set (`— Shirt or T-shirt/top (95 %)`) and, for
    top-k > 1, the ranked alternatives; an unknown image says so first (`FILE: unknown — does not look like any
    Fashion-MNIST class (closest: ...)`), its set after."""
    lines = []
    for pred in predictions:
        top = [f"{CLASS_NAMES[c]} {p:.1%}" for c, p in pred.top]
        among = f" — {sets.words(pred.set, pred.coverage)}" if pred.coverage is not None else ""
        if pred.unknown:
            lines.append(f"{pred.file}: unknown — {UNKNOWN_TEXT} (closest: {', '.join(top)}){among}")
            continue
        line = f"{pred.file}: {top[0]}{among}"
        lines.append(line + (f"  (top {len(top)}: {', '.join(top)})" if len(top) > 1 else ""))
    return "\n".join(lines)


def as_json(predictions: Iterable[Prediction], failures: Iterable[ImageError]) -> dict[str, Any]:
    """The machine-readable document: {"predictions": [...], "errors": [...]} (JSON-ready dict)."""

    def one(c: int, p: float) -> dict[str, Any]:
        return {"class": CLASS_NAMES[c], "class_index": c, "probability": round(p, 6)}

    return {
        "predictions": [
            {"file": pred.file, **one(*pred.top[0]), "top_k": [one(c, p) for c, p in pred.top]}
            | {"unknown": pred.unknown, "ood_score": pred.ood_score}
            | (sets.as_json(pred.set, pred.coverage) if pred.coverage is not None else {})
            for pred in predictions
        ],
        "errors": [{"file": exc.file, "error": exc.reason} for exc in failures],
    }


def format_json(predictions: Iterable[Prediction], failures: Iterable[ImageError]) -> str:
    return json.dumps(as_json(predictions, failures), indent=2, ensure_ascii=False)


def save_preprocessed(predictions: Iterable[Prediction], folder: str | Path) -> list[Path]:
    """Write each 28x28 image the model saw as FOLDER/<input stem>.png (a suffix keeps names unique)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder")
    written, used = [], set()
    for pred in predictions:
        stem, number = pred.path.stem, 1
        while (name := fitting_name(stem, (f"-{number}" if number > 1 else "") + ".png")) in used:
            number += 1
        used.add(name)
        with atomic_path(folder / name) as tmp:
            Image.fromarray(pred.image, "L").save(tmp, format="PNG")
        written.append(folder / name)
    return written
