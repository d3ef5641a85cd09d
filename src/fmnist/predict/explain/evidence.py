"""Do the maps mean something? Two checks, used by bench/bench_explain.py and the tests.

- Deletion (faithfulness): black out (the background value) the `fraction` most-attributed pixels of an image
  and, separately, as many pixels drawn at random; a faithful map lowers the target class's probability more
  with its own pixels. `deletion` returns both drops per image.
- Model randomisation (sanity; Adebayo et al. 2018, "Sanity checks for saliency maps"): the same network with
  every trained weight drawn again from its initialisation should not give the same maps. `randomised` builds that
  network; `rank_correlations` is each image's Spearman correlation between the absolute maps of the two.
"""

from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from fmnist.metrics.scores import softmax
from fmnist.models.contracts import Classifier
from fmnist.predict.explain.pixel import kind, pixel_module

BACKGROUND = 0.0  # a blank pixel of a Fashion-MNIST image (black), in [0, 1] units


def probabilities_of_pixels(model: Classifier, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """float pixels (N, 28, 28) in [0, 1] -> the model's probabilities float64 (N, 10)."""
    module = pixel_module(model)
    pixels = torch.as_tensor(np.asarray(x, np.float32)).unsqueeze(1)
    with torch.inference_mode():
        logits = torch.cat([module(pixels[s : s + batch]) for s in range(0, len(pixels), batch)])
    return softmax(logits.double().numpy())


def deletion(
    model: Classifier,
    images: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray,
    fraction: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(drop with the top pixels, drop with random pixels), float64 (N,) each: the target probability on the
    image minus the probability with the pixels blacked out. Top: the highest map values (ties by position)."""
    pixels = np.asarray(images, np.float32).reshape(len(images), -1) / 255.0
    count = round(fraction * pixels.shape[1])
    top = np.argsort(-np.asarray(maps).reshape(len(maps), -1), axis=1, kind="stable")[:, :count]
    rng = np.random.default_rng(seed)
    random = np.argsort(rng.random(pixels.shape), axis=1)[:, :count]
    rows = np.arange(len(pixels))[:, None]
    variants = [pixels]
    for chosen in (top, random):
        blanked = pixels.copy()
        blanked[rows, chosen] = BACKGROUND
        variants.append(blanked)
    probs = probabilities_of_pixels(model, np.concatenate(variants).reshape(-1, 28, 28))
    target_probs = probs[np.arange(len(probs)), np.tile(targets, 3)].reshape(3, len(pixels))
    return target_probs[0] - target_probs[1], target_probs[0] - target_probs[2]


def rank_correlations(maps_a: np.ndarray, maps_b: np.ndarray) -> np.ndarray:
    """Per image, Spearman's rank correlation of |a| and |b| over the pixels (0 where one map is constant)."""
    out = np.zeros(len(maps_a))
    for i, (a, b) in enumerate(zip(maps_a, maps_b, strict=True)):
        a, b = np.abs(a).ravel(), np.abs(b).ravel()
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            out[i] = spearmanr(a, b).statistic
    return out


def randomised(model: Classifier, seed: int = 1) -> Classifier:
    """A copy of a trained model with every weight it got from the data drawn at random again (seeded):
    PyTorch's default initialisation of each layer (`reset_parameters`; batch norms back to scale 1, shift 0
    and fresh running statistics), the whitened CNN's stem too (computed from the training images), the scratch
    MLP's He initialisation. Not the networks' own start (the whitened CNN starts its convolutions as identities,
    which is not random). Kept: the pixel normalisation and test-time augmentation. The hybrid has both its CNN
    and its MLP redrawn."""
    name = kind(model)
    impl: Any = model  # its kind's own parts (networks, statistics), beyond the Classifier protocol
    copy: Any  # a new instance of the same class (fmnist.models)
    if name == "scratch-mlp":
        return _random_scratch(impl, seed)
    if name == "hybrid":
        from fmnist.models.hybrid import HybridClassifier

        copy = HybridClassifier(cnn=randomised(impl.cnn, seed), **impl.hparams)
        copy.mlp = _random_scratch(impl.mlp, seed)
        copy.feature_mean, copy.feature_std = impl.feature_mean, impl.feature_std
        return copy
    copy = type(impl)(**impl.hparams)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(10_000 + seed)  # not the training seed: its initial weights would come back
        for layer in copy.module.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
    copy.mean, copy.std = impl.mean, impl.std
    return copy


def _random_scratch(model, seed):
    from fmnist.models.scratch.classifier import ScratchClassifier
    from fmnist.models.scratch.mlp import MLP

    copy = ScratchClassifier(**model.hparams)
    copy.mlp = MLP(model.mlp.layer_sizes, rng=np.random.default_rng([10_000 + seed, 0]))
    copy.mean, copy.std = model.mean, model.std
    return copy


def summary(model: Classifier, images: np.ndarray, method: str | None = None, seed: int = 0) -> dict[str, str | float]:
    """The two checks for one model and method on uint8 images: {"deletion_wins": share of images where the
    top pixels beat random ones, "randomisation_spearman": median correlation with a re-initialised network}."""
    from fmnist.predict.explain import attribute

    result = attribute.explain(model, images, method)
    top, random = deletion(model, images, result.maps, result.targets, seed=seed)
    noise = attribute.explain(randomised(model, seed), images, method, target=result.targets)
    correlation = float(np.median(rank_correlations(result.maps, noise.maps)))
    return {
        "method": result.method,
        "deletion_wins": float((top > random).mean()),
        "randomisation_spearman": correlation,
    }
