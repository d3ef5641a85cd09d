"""Attribution maps over the 28x28 pixels, for all five models; a run's gallery of them; the linear templates.

    result = explain(model, images)                # uint8 (N, 28, 28); the model's default method, its predictions
    result.maps                                    # float32 (N, 28, 28): positive = evidence for result.targets
    explain(model, images, "integrated-gradients", target=3).delta   # Captum's convergence delta per image

A map explains what the model computes on the image's pixels (in [0, 1] units): its normalisation, its network
and its test-time augmentation (`fmnist.predict.explain.pixel`). The methods are Captum's (`methods`); the
from-scratch MLP and the hybrid's MLP supply their input gradients from their own backward pass.
"""

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from fmnist.data.dataset import CLASS_NAMES, NUM_CLASSES, SIDE
from fmnist.errors import UserError
from fmnist.metrics.scores import softmax
from fmnist.models.contracts import Classifier
from fmnist.predict.explain import CNN_ONLY, DEFAULT_METHOD, METHODS
from fmnist.predict.explain import methods as methods_module
from fmnist.predict.explain.pixel import kind, pixel_module, to_pixels

if TYPE_CHECKING:
    from fmnist.models.classifiers import TorchClassifier

BATCH = 100  # images per call into Captum: bounds the memory of integrated gradients' path points
# What a map explains: None or "predicted" (each image's predicted class), a class number or name, one per image.
Target = int | str | Sequence[int] | np.ndarray | None


@dataclasses.dataclass(frozen=True)
class Explanation:
    method: str
    maps: np.ndarray  # float32 (N, 28, 28): attribution to the target class, positive = evidence for it
    targets: np.ndarray  # int64 (N,): the class each map explains
    probabilities: np.ndarray  # float64 (N, 10): the model's prediction
    delta: np.ndarray | None  # float32 (N,): integrated gradients' convergence delta, else None

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def methods_for(model: Classifier) -> tuple[str, ...]:
    """The methods that apply to a model: grad-cam needs a CNN (the cnn itself or the hybrid's)."""
    name = kind(model)
    return tuple(m for m in METHODS if m not in CNN_ONLY or name in ("cnn", "hybrid"))


def default_method(model: Classifier) -> str:
    return DEFAULT_METHOD


def _targets(target: Target, predicted: np.ndarray) -> np.ndarray:
    if target is None or (isinstance(target, str) and target == "predicted"):
        return predicted.astype(np.int64)
    if isinstance(target, str):
        if target.isdigit():
            target = int(target)
        elif target in CLASS_NAMES:
            target = CLASS_NAMES.index(target)
        else:
            raise UserError(f"target {target!r}: 'predicted', a class number 0-9 or one of {', '.join(CLASS_NAMES)}")
    targets = np.broadcast_to(np.asarray(target, dtype=np.int64), predicted.shape).copy()
    if targets.size and (targets.min() < 0 or targets.max() >= NUM_CLASSES):
        raise UserError(f"target {target!r}: a class number must be 0-{NUM_CLASSES - 1}")
    return targets


def explain(model: Classifier, images: np.ndarray, method: str | None = None, target: Target = None) -> Explanation:
    """Attribution maps of `model` for uint8 images (N, 28, 28); target: None / "predicted" (each image's
    predicted class), a class number or name, or one class per image. Returns an `Explanation`."""
    method = method or default_method(model)
    if method not in methods_for(model):
        raise UserError(f"method {method!r}: for {kind(model)} choose one of {', '.join(methods_for(model))}")
    try:
        x = to_pixels(images)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    module = pixel_module(model)
    with torch.inference_mode():
        logits = torch.cat([module(x[s : s + BATCH]) for s in range(0, len(x), BATCH)]) if len(x) else None
    probs = softmax(logits.double().numpy()) if logits is not None else np.empty((0, NUM_CLASSES))
    targets = _targets(target, probs.argmax(axis=1))
    run = methods_module.BY_NAME[method]
    parts: list[np.ndarray] = []
    deltas: list[np.ndarray | None] = []
    for start in range(0, len(x), BATCH):
        part, part_delta = run(module, x[start : start + BATCH], torch.from_numpy(targets[start : start + BATCH]))
        parts.append(part.detach().float().numpy())
        deltas.append(None if part_delta is None else part_delta.detach().float().numpy())
    maps = np.concatenate(parts) if parts else np.empty((0, SIDE, SIDE), np.float32)
    # a method gives a delta for every batch or for none
    delta = np.concatenate(cast("list[np.ndarray]", deltas)) if deltas and deltas[0] is not None else None
    return Explanation(method, maps.astype(np.float32), targets, probs, delta)


def templates(model: Classifier) -> np.ndarray:
    """The linear model's ten class templates: float32 (10, 28, 28), each class's weight per pixel (in [0, 1]
    pixel units, so a template is exactly that class's saliency map on any image)."""
    if kind(model) != "linear":
        raise UserError(f"templates: only the linear model has class templates, not {kind(model)}")
    linear = cast("TorchClassifier", model)  # the linear model: its network and pixel statistics
    weight = linear.module.fc.weight.detach().numpy() / linear.std
    return weight.reshape(NUM_CLASSES, SIDE, SIDE).astype(np.float32)


def gallery(
    model: Classifier,
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    seed: int = 0,
    per_kind: int = 6,
) -> dict[str, np.ndarray]:
    """A few correct and a few wrong images with their maps (default method, predicted class): the arrays of a
    run's attributions.npz. Chosen at random (seeded) among the given images (uint8 (N, 28, 28), with their int
    labels and predicted classes (N,)); fewer when fewer exist."""
    rng = np.random.default_rng(seed)
    picks = []
    for wanted in (predicted == labels, predicted != labels):
        members = np.flatnonzero(wanted)
        picks.append(np.sort(rng.choice(members, size=min(per_kind, len(members)), replace=False)))
    chosen = np.concatenate(picks).astype(np.int64)
    result = explain(model, images[chosen])
    out = {
        "images": images[chosen],
        "labels": labels[chosen],
        "targets": result.targets,
        "probabilities": result.probabilities.astype(np.float32),
        "maps": result.maps,
        "method": np.array(result.method),
    }
    return out | ({"templates": templates(model)} if kind(model) == "linear" else {})
