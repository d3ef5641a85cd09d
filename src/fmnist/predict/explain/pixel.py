"""Every model as a torch module on pixels: (N, 1, 28, 28) float32 in [0, 1] -> the logits it predicts with.

An attribution has to explain what the model computes, so each module repeats the model's own prediction path:
the scaling by 1/255 is the only step left out (the maps are per pixel of the 28x28 image in [0, 1] units),
then the model's normalisation, its network and its test-time augmentation (mirror averaging and 1-pixel moves,
as `fmnist.engine.augment.tta_logits` does on uint8 images, here on tensors so gradients pass through them).

The from-scratch MLP stays NumPy: `ScratchLogits` runs its forward pass and, for the backward pass, its own
hand-written input gradient (`MLP.input_gradient`); torch only carries that gradient on (through the CNN's
features for the hybrid).
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmnist.data.dataset import SIDE
from fmnist.models.contracts import Classifier

if TYPE_CHECKING:
    from fmnist.models.scratch.mlp import MLP

View = Callable[[torch.Tensor], torch.Tensor]  # (N, 1, H, W) -> (N, 1, H, W)


def tta_views(level: int) -> list[tuple[float, View]]:
    """[(weight, view)] of a test-time augmentation level; each view maps (N, 1, H, W) -> (N, 1, H, W).

    The weights are those of `tta_logits`: level 1 averages the image and its mirror image; level 2 gives that
    pair half the weight and the images moved one pixel down-right and up-left (with their mirrors) the rest."""
    if not level:
        return [(1.0, _same)]
    if level == 1:
        return [(0.5, _same), (0.5, _mirror)]
    moved = [(0.125, _moved(d, mirror)) for d in (1, -1) for mirror in (False, True)]
    return [(0.25, _same), (0.25, _mirror), *moved]


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _mirror(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


def _moved(d: int, mirror: bool) -> View:
    """x moved d pixels down and right (up and left if d < 0), the gap left black; then mirrored if asked."""

    def view(x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (d, 0, d, 0) if d > 0 else (0, -d, 0, -d))
        out = padded[..., :SIDE, :SIDE] if d > 0 else padded[..., -d:, -d:]
        return out.flip(-1) if mirror else out

    return view


class Averaged(nn.Module):
    """sum over views of weight * logits_of(view(x)): one model's test-time augmentation, differentiable."""

    def __init__(self, logits_of: nn.Module, level: int) -> None:
        super().__init__()
        self.logits_of = logits_of
        self.views = tta_views(level)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(weight * self.logits_of(view(x)) for weight, view in self.views)


class Normalised(nn.Module):
    """A torch network behind its normalisation: pixels in [0, 1] -> (x - mean) / std -> net."""

    def __init__(self, net: nn.Module, mean: float, std: float, method: str | None = None) -> None:
        super().__init__()
        self.net = net
        self.mean, self.std = float(mean), float(std)
        self.method = method  # e.g. "features": call net.features instead of net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        return getattr(self.net, self.method)(z) if self.method else self.net(z)


class ScratchLogits(torch.autograd.Function):
    """The NumPy MLP as a torch function: logits from its forward pass, input gradients from its own backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mlp: "MLP") -> torch.Tensor:
        ctx.mlp = mlp
        ctx.save_for_backward(x)
        return torch.from_numpy(mlp.logits(x.detach().cpu().numpy()))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        dx = ctx.mlp.input_gradient(x.detach().numpy(), grad.detach().numpy())
        return torch.from_numpy(np.ascontiguousarray(dx, dtype=np.float32)), None


class ScratchNet(nn.Module):
    """(N, D) -> the scratch MLP's logits, after an optional standardisation (x - shift) / scale."""

    shift: torch.Tensor  # buffers
    scale: torch.Tensor

    def __init__(self, mlp: "MLP", shift: float | np.ndarray = 0.0, scale: float | np.ndarray = 1.0) -> None:
        super().__init__()
        self.mlp = mlp
        self.register_buffer("shift", torch.as_tensor(np.asarray(shift, np.float32)))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale, np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ScratchLogits.apply(((x.flatten(1) - self.shift) / self.scale).contiguous(), self.mlp)


def kind(model: Classifier) -> str:
    """The registry name of a trained model object (linear, mlp, cnn, scratch-mlp, hybrid)."""
    name = getattr(model, "registry_name", None) or getattr(model, "NAME", None)
    if name is None:
        from fmnist.models import hybrid
        from fmnist.models.scratch import classifier

        name = {hybrid.HybridClassifier: "hybrid", classifier.ScratchClassifier: "scratch-mlp"}.get(type(model))
    if name is None:
        raise TypeError(f"cannot explain a {type(model).__name__}: not one of fmnist's models")
    return name


def pixel_module(model: Classifier) -> nn.Module:
    """The model as a torch module on pixels in [0, 1] (N, 1, 28, 28) -> logits (N, 10), in eval mode."""
    name = kind(model)
    # Each kind's own parts (networks, statistics), beyond the Classifier protocol; None until trained or loaded.
    impl: Any = model
    if name == "scratch-mlp":
        if impl.mlp is None or impl.mean is None:
            raise ValueError("scratch-mlp: the model has not been trained or loaded on images")
        return ScratchNet(impl.mlp, impl.mean, impl.std).eval()
    if name == "hybrid":
        impl._ready()
        features = Normalised(impl.cnn.module.eval(), impl.cnn.mean, impl.cnn.std, method="features")
        head = ScratchNet(impl.mlp.mlp, impl.feature_mean, impl.feature_std)
        return Averaged(nn.Sequential(features, head), impl.hparams["tta"]).eval()
    return Averaged(Normalised(impl.module.eval(), impl.mean, impl.std), impl.hparams.get("tta", 0)).eval()


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 tensor (N, 1, 28, 28) in [0, 1]."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
        raise ValueError(f"images: expected uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
