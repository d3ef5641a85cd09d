"""A model's answers about people's images: calibrated probabilities, top-k, and their text and JSON forms.

Used by `fmnist predict`, the server and the API alike, so that every answer is worded the same.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image

from fmnist.data.dataset import CLASS_NAMES, NUM_CLASSES
from fmnist.data.images import (
    MAX_BYTES,
    MAX_PIXELS,
    ImageError,
    collect_inputs,
    detached,
    load_image,
    shown,
    to_fashion_mnist,
)
from fmnist.errors import UserError
from fmnist.files import atomic_path
from fmnist.metrics import scores


@dataclasses.dataclass(frozen=True)
class Prediction:
    path: Path
    image: np.ndarray  # uint8 (28, 28): what the model saw
    top: tuple  # ((class index, probability), ...), most probable first

    @property
    def file(self):
        return shown(self.path)


def probabilities(model, images, batch_size=256):
    """Softmax of `model.predict_logits` over uint8 (N, 28, 28) images, in batches: float64 (N, 10)."""
    out = np.empty((len(images), NUM_CLASSES))
    for start in range(0, len(images), batch_size):
        out[start : start + batch_size] = scores.softmax(model.predict_logits(images[start : start + batch_size]))
    return out


def predict_files(model, paths, top_k=3, *, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS):
    """Files and folders -> (list of Prediction in input order, list of ImageError). Never stops at a bad file."""
    if not 1 <= top_k <= NUM_CLASSES:
        raise UserError(f"--top-k {top_k}: must be between 1 and {NUM_CLASSES}")
    files, failures = collect_inputs(paths)
    kept, images = [], []
    for path in files:
        try:
            images.append(to_fashion_mnist(load_image(path, max_bytes=max_bytes, max_pixels=max_pixels)))
        except ImageError as exc:
            failures.append(detached(exc))
            continue
        kept.append(path)
    if not kept:
        return [], failures
    probs = probabilities(model, np.stack(images))
    ranked = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    predictions = [
        Prediction(path, image, tuple((int(c), float(p[c])) for c in order))
        for path, image, p, order in zip(kept, images, probs, ranked, strict=True)
    ]
    return predictions, failures


def format_text(predictions):
    """One line per file: `FILE: CLASS 93.1%` and, for top-k > 1, the ranked alternatives."""
    lines = []
    for pred in predictions:
        ranked = [f"{CLASS_NAMES[c]} {p:.1%}" for c, p in pred.top]
        line = f"{pred.file}: {ranked[0]}"
        lines.append(line + (f"  (top {len(ranked)}: {', '.join(ranked)})" if len(ranked) > 1 else ""))
    return "\n".join(lines)


def as_json(predictions, failures):
    """The machine-readable document: {"predictions": [...], "errors": [...]} (JSON-ready dict)."""

    def ranked(c, p):
        return {"class": CLASS_NAMES[c], "class_index": c, "probability": round(p, 6)}

    return {
        "predictions": [
            {"file": pred.file, **ranked(*pred.top[0]), "top_k": [ranked(c, p) for c, p in pred.top]}
            for pred in predictions
        ],
        "errors": [{"file": exc.file, "error": exc.reason} for exc in failures],
    }


def format_json(predictions, failures):
    return json.dumps(as_json(predictions, failures), indent=2, ensure_ascii=False)


def save_preprocessed(predictions, folder):
    """Write each 28x28 image the model saw as FOLDER/<input stem>.png (a suffix keeps names unique)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder")
    written, used = [], set()
    for pred in predictions:
        stem, number = pred.path.stem, 1
        while (name := stem + (f"-{number}" if number > 1 else "") + ".png") in used:
            number += 1
        used.add(name)
        with atomic_path(folder / name) as tmp:
            Image.fromarray(pred.image, "L").save(tmp, format="PNG")
        written.append(folder / name)
    return written
