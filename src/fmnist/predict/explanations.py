"""Attribution maps for people's images: `fmnist explain`, the page's heat maps and `api.explain` share this.

Images go through the same photo -> 28x28 conversion as `fmnist predict` (`fmnist.predict.answers`); the maps come
from `fmnist.predict.explain`. A heat map is drawn with NumPy and Pillow (no matplotlib: the server draws one per
explained answer): red where a pixel is evidence for the class, blue where against, over the image in gray.
"""

import base64
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fmnist.data.dataset import CLASS_NAMES
from fmnist.errors import UserError
from fmnist.files import NAME_MAX, atomic_path, fitting_name
from fmnist.models.contracts import Classifier
from fmnist.predict import answers
from fmnist.predict import explain as explain_names
from fmnist.predict.answers import Prediction
from fmnist.predict.explain import attribute as explain_module
from fmnist.predict.explain.attribute import Explanation, Target
from fmnist.predict.images import ImageError, shown

SCALE = 8  # a 28x28 panel drawn at 224x224 pixels
GAP = 4


def heat_rgb(image: np.ndarray, attribution: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """uint8 (28, 28) image and float (28, 28) map -> uint8 (28 s, 28 s, 3): the map over the image, red for
    evidence for the class, blue against, strength relative to the map's largest |value|."""
    peak = float(np.abs(attribution).max()) or 1.0
    signed = np.clip(attribution / peak, -1, 1)[..., None]
    gray = np.repeat((0.25 + 0.45 * image[..., None] / 255.0), 3, axis=-1)
    red, blue = np.array([0.85, 0.1, 0.05]), np.array([0.05, 0.3, 0.9])
    alpha = np.abs(signed)
    colour = np.where(signed >= 0, red, blue)
    rgb = (1 - alpha) * gray + alpha * colour
    big = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    return np.rint(255 * big).astype(np.uint8)


def side_by_side(image: np.ndarray, attribution: np.ndarray, scale: int = SCALE) -> Image.Image:
    """The 28x28 image the model saw (uint8 (28, 28)), and beside it the map (float (28, 28)) over it: one RGB
    Pillow image."""
    left = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    right = heat_rgb(image, attribution, scale)
    side = 28 * scale
    canvas = np.full((side, 2 * side + GAP, 3), 255, np.uint8)
    canvas[:, :side] = left[..., None]
    canvas[:, side + GAP :] = right
    return Image.fromarray(canvas, "RGB")


def heat_png_base64(image: np.ndarray, attribution: np.ndarray) -> str:
    """The map over the image (no side panel) as base64 PNG, for the page."""
    buffer = io.BytesIO()
    Image.fromarray(heat_rgb(image, attribution, 4), "RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def explain_files(
    model: Classifier, paths: Iterable[str | Path], method: str | None = None, target: Target = None
) -> tuple[list[Prediction], Explanation, list[ImageError]]:
    """Files and folders -> (predictions, Explanation of their images, failures), the way `predict` reads them."""
    if method is not None and method not in explain_module.methods_for(model):
        choices = ", ".join(explain_module.methods_for(model))
        raise UserError(f"--method {method}: for this model choose one of {choices}")
    predictions, failures = answers.predict_files(model, paths, top_k=3)
    images = np.stack([p.image for p in predictions]) if predictions else np.empty((0, 28, 28), np.uint8)
    return predictions, explain_module.explain(model, images, method, target), failures


def unique_stems(predictions: Iterable[Prediction]) -> list[str]:
    """One output name per input file (its stem; -2, -3 ... for repeats)."""
    used, out = set(), []
    for pred in predictions:
        stem, number = pred.path.stem or "image", 1
        # Room for ".npy" / ".png" after it: the name of a 255-byte input would not fit otherwise.
        while (name := fitting_name(stem, f"-{number}" if number > 1 else "", NAME_MAX - 4)) in used:
            number += 1
        used.add(name)
        out.append(name)
    return out


def write_outputs(
    predictions: Sequence[Prediction], explanation: Explanation, folder: str | Path
) -> list[tuple[Path, Path]]:
    """DIR/NAME.npy (the float32 map) and DIR/NAME.png (image and overlay) per image; returns [(npy, png)]."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, pred, attribution in zip(unique_stems(predictions), predictions, explanation.maps, strict=True):
        npy, png = folder / f"{name}.npy", folder / f"{name}.png"
        with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
            np.save(fh, attribution.astype(np.float32), allow_pickle=False)
        with atomic_path(png) as tmp:
            side_by_side(pred.image, attribution).save(tmp, format="PNG")
        written.append((npy, png))
    return written


def as_json(
    predictions: Iterable[Prediction],
    explanation: Explanation,
    failures: Iterable[ImageError],
    written: Iterable[tuple[Path, Path]],
) -> dict[str, Any]:
    """`fmnist predict --json`'s document with, per image, the method, the target class and the files."""
    doc = answers.as_json(predictions, failures)
    doc["method"] = explanation.method
    for i, (entry, (npy, png)) in enumerate(zip(doc["predictions"], written, strict=True)):
        target = int(explanation.targets[i])
        # Escaped as `predict --json` escapes file names: undecodable bytes must not become lone surrogates.
        entry.update(target=CLASS_NAMES[target], target_index=target, map=shown(npy), overlay=shown(png))
        if explanation.delta is not None:
            entry["convergence_delta"] = round(float(explanation.delta[i]), 6)
    return doc


def explained_maps(model: Classifier, images: np.ndarray) -> np.ndarray:
    """The server's heat maps: the default method's maps float32 (N, 28, 28) for each uint8 (N, 28, 28) image's
    predicted class."""
    return explain_module.explain(model, images).maps


def add_heat_maps(doc: dict[str, Any], images: Iterable[np.ndarray], maps: Iterable[np.ndarray]) -> dict[str, Any]:
    """Each prediction of a /predict document gets "heat_png" (base64 PNG, 112x112) and the document the method."""
    doc["explain_method"] = explain_names.DEFAULT_METHOD
    for entry, image, attribution in zip(doc["predictions"], images, maps, strict=True):
        entry["heat_png"] = heat_png_base64(image, attribution)
    return doc
