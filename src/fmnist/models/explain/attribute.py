"""Attribution maps over the 28x28 pixels, for all five models; a run's gallery of them; the linear templates.

    result = explain(model, images)                # uint8 (N, 28, 28); the model's default method, its predictions
    result.maps                                    # float32 (N, 28, 28): positive = evidence for result.targets
    explain(model, images, "integrated-gradients", target=3).delta   # Captum's convergence delta per image

A map explains what the model computes on the image's pixels (in [0, 1] units): its normalisation, its network
and its test-time augmentation (`fmnist.models.explain.pixel`). The methods are Captum's (`methods`); the
from-scratch MLP and the hybrid's MLP supply their input gradients from their own backward pass.
"""

import dataclasses

import numpy as np
import torch

from fmnist.data.dataset import CLASS_NAMES, NUM_CLASSES, SIDE
from fmnist.errors import UserError
from fmnist.metrics.scores import softmax
from fmnist.models.explain import CNN_ONLY, DEFAULT_METHOD, METHODS
from fmnist.models.explain import methods as methods_module
from fmnist.models.explain.pixel import kind, pixel_module, to_pixels

BATCH = 100  # images per call into Captum: bounds the memory of integrated gradients' path points


@dataclasses.dataclass(frozen=True)
class Explanation:
    method: str
    maps: np.ndarray  # float32 (N, 28, 28): attribution to the target class, positive = evidence for it
    targets: np.ndarray  # int64 (N,): the class each map explains
    probabilities: np.ndarray  # float64 (N, 10): the model's prediction
    delta: np.ndarray | None  # float32 (N,): integrated gradients' convergence delta, else None

    @property
    def predicted(self):
        return self.probabilities.argmax(axis=1)


def methods_for(model):
    """The methods that apply to a model: grad-cam needs a CNN (the cnn itself or the hybrid's)."""
    name = kind(model)
    return tuple(m for m in METHODS if m not in CNN_ONLY or name in ("cnn", "hybrid"))


def default_method(model):
    return DEFAULT_METHOD


def _targets(target, predicted):
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


def explain(model, images, method=None, target=None):
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
    maps, deltas = [], []
    for start in range(0, len(x), BATCH):
        part, delta = run(module, x[start : start + BATCH], torch.from_numpy(targets[start : start + BATCH]))
        maps.append(part.detach().float().numpy())
        deltas.append(None if delta is None else delta.detach().float().numpy())
    maps = np.concatenate(maps) if maps else np.empty((0, SIDE, SIDE), np.float32)
    delta = np.concatenate(deltas) if deltas and deltas[0] is not None else None
    return Explanation(method, maps.astype(np.float32), targets, probs, delta)


def templates(model):
    """The linear model's ten class templates: float32 (10, 28, 28), each class's weight per pixel (in [0, 1]
    pixel units, so a template is exactly that class's saliency map on any image)."""
    if kind(model) != "linear":
        raise UserError(f"templates: only the linear model has class templates, not {kind(model)}")
    weight = model.module.fc.weight.detach().numpy() / model.std
    return weight.reshape(NUM_CLASSES, SIDE, SIDE).astype(np.float32)


def gallery(model, images, labels, predicted, seed=0, per_kind=6):
    """A few correct and a few wrong images with their maps (default method, predicted class): the arrays of a
    run's attributions.npz. Chosen at random (seeded) among the given images; fewer when fewer exist."""
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
