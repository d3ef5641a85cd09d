"""The prediction sets inside the exported graph (fmnist.rundir.export): class-conditional thresholds at the default
level, and the unknown-input score (fmnist.models.trust.scores) as torch modules, so that the sets widen for
atypical images the way fmnist's do (fmnist.models.sets: widening).

The score's parts, as fmnist.metrics.ood computes them: the energy −T · logsumexp(logits / T) of the calibrated logits;
the Mahalanobis distance to the nearest class mean of the feature vector (the CNN's and the hybrid's) and of the
standardised pixels; "combined": their mean after each is standardised on validation clothing.
"""

import numpy as np
import torch
from torch import nn

from fmnist.models import trust


def _buffer(values):
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


class Mahalanobis(nn.Module):
    """Vectors (N, D) -> the distance to the nearest class mean under a shared whitening (fit_gaussian's)."""

    def __init__(self, gaussian):
        super().__init__()
        whiten = np.asarray(gaussian["whiten"], np.float32)
        self.register_buffer("whiten", _buffer(whiten))
        means = np.asarray(gaussian["means"], np.float32).astype(np.float64) @ whiten.astype(np.float64)
        self.register_buffer("means", _buffer(means))

    def forward(self, vectors):
        squared = ((vectors @ self.whiten).unsqueeze(1) - self.means.unsqueeze(0)).square().sum(-1)
        return squared.min(dim=1).values.clamp_min(0.0).sqrt()


class Pixels(nn.Module):
    """Pixels 0..255 (N, 1, 28, 28) -> standardised flat pixels (N, 784), as fmnist.data.dataset.normalise_flat."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = float(np.float32(mean)), float(np.float32(std))

    def forward(self, x):
        return (x.flatten(1) * float(np.float32(1 / 255.0)) - self.mean) / self.std


class Standardised(nn.Module):
    """The hybrid's feature vector as its MLP reads it and its unknown-input rule measures it (of a HybridNet)."""

    def __init__(self, hybrid_net):
        super().__init__()
        self.hybrid = hybrid_net

    def forward(self, x):
        return (self.hybrid.features(x) - self.hybrid.feature_mean) / self.hybrid.feature_std


class Unknown(nn.Module):
    """(pixels 0..255 (N, 1, 28, 28), calibrated logits (N, 10)) -> the model's unknown-input score (N,).
    features: a module giving the model's feature vector from pixels (None for a model without one)."""

    def __init__(self, record, names, features=None):
        super().__init__()
        self.names, self.temperature = tuple(names), float(record["temperature"])
        self.features, self.pixels = features, Pixels(*record["pixel_stats"])
        gaussians = record.get("gaussians", {})
        self.distances = nn.ModuleDict({p: Mahalanobis(gaussians[p]) for p in ("features", "pixels") if p in names})
        standard = record.get("standardise") if record["method"] == "combined" else None
        self.standard = {p: tuple(map(float, standard[p])) for p in names} if standard else None

    def part(self, name, x, logits):
        if name == "max-probability":
            return 1.0 - torch.softmax(logits, dim=1).max(dim=1).values
        if name == "energy":
            return -self.temperature * torch.logsumexp(logits, dim=1)
        vectors = self.features(x) if name == "features" else self.pixels(x)
        return self.distances[name](vectors)

    def forward(self, x, logits):
        each = [self.part(p, x, logits) for p in self.names]
        if self.standard is None:
            return each[0]
        return sum(
            (s - self.standard[p][0]) / self.standard[p][1] for p, s in zip(self.names, each, strict=True)
        ) / len(each)


class SetRule(nn.Module):
    """(pixels, calibrated logits, probabilities) -> the sets, bool (N, 10): class y is in when 1 − p_y, lowered by
    rate · max(0, u − from) where the model's sets widen (u: Unknown), is at most y's threshold."""

    def __init__(self, thresholds, unknown=None, widen=None):
        super().__init__()
        self.register_buffer("thresholds", _buffer(thresholds))
        self.unknown = unknown if widen is not None else None
        self.start, self.rate = (float(widen["from"]), float(widen["rate"])) if widen is not None else (0.0, 0.0)

    def forward(self, x, logits, probs):
        scores = 1.0 - probs
        if self.unknown is not None:
            scores = scores - self.rate * torch.relu(self.unknown(x, logits) - self.start).unsqueeze(1)
        return scores <= self.thresholds


def rule(model, thresholds, features=None):
    """The SetRule of a model: its thresholds, widened by its unknown-input score where its sets record says so
    (features: a module giving the model's feature vector from pixels, None for a model without one)."""
    record = trust.of(model) or {}
    widen = (record.get("sets") or {}).get("widen")
    if widen is None:
        return SetRule(thresholds)
    return SetRule(thresholds, Unknown(record, trust.parts(model, record["method"]), features), widen)
