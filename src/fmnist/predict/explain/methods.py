"""The attribution methods, from Captum, on a model's pixel module (`fmnist.predict.explain.pixel`).

Each method maps pixels x (N, 1, 28, 28) in [0, 1] and target classes (N,) to a map (N, 28, 28) in the same
units as the target logit: positive where the pixel is evidence for the class.

- integrated-gradients: (x - black) times the gradient averaged on the straight path from a black image (the
  background) to x (Gauss-Legendre, `IG_STEPS` points); the maps of an image sum to logit(x) - logit(black) up
  to the convergence delta Captum reports.
- saliency: the gradient of the target logit itself (signed: how the logit moves as the pixel brightens).
- smoothgrad: saliency averaged over noisy copies of the image (Smilkov et al. 2017).
- occlusion: how much the logit falls when a `OCCLUSION_WINDOW`-pixel square is blacked out, averaged over the
  squares (stride `OCCLUSION_STRIDE`) that cover the pixel.
- grad-cam (the cnn and the hybrid's CNN): LayerGradCam on the output of the last convolution's block
  (after its batch norm and activation), upsampled bilinearly to 28x28; computed per test-time view and mapped
  back onto the image, so it covers the mirror image the model also looks at.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerGradCam, Occlusion, Saliency
from torch import nn

from fmnist.data.dataset import SIDE

if TYPE_CHECKING:
    from fmnist.predict.explain.pixel import Averaged, Normalised, View

IG_STEPS = 32
SMOOTH_SAMPLES, SMOOTH_SD = 16, 0.1  # screened on validation images (bench/bench_explain.py --split val)
OCCLUSION_WINDOW, OCCLUSION_STRIDE = 4, 2
INTERNAL_BATCH = 1024  # images per forward pass inside Captum (IG's path points, occlusion's perturbations)
# (pixel module, pixels x (N, 1, 28, 28), targets (N,)) -> (maps (N, 28, 28), convergence delta (N,) or None)
Method = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def integrated_gradients(
    module: nn.Module, x: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(maps (N, 28, 28), convergence delta (N,)): |delta| is how far the maps' sum is from the logit change."""
    ig = IntegratedGradients(module)
    maps, delta = ig.attribute(
        x.clone().requires_grad_(),
        baselines=torch.zeros_like(x),
        target=targets,
        n_steps=IG_STEPS,
        internal_batch_size=max(len(x), INTERNAL_BATCH),
        return_convergence_delta=True,
    )
    return maps[:, 0], delta


def saliency(module: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    return Saliency(module).attribute(x.clone().requires_grad_(), target=targets, abs=False)[:, 0], None


def smoothgrad(module: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Saliency averaged over SMOOTH_SAMPLES noisy copies of the image (Gaussian, sd SMOOTH_SD in pixel units;
    Smilkov et al. 2017). The same noise patterns (seed 0) serve every image, so a map depends on its image alone,
    not on the batch it came in (Captum's NoiseTunnel draws new noise per batch)."""
    noise = torch.randn((SMOOTH_SAMPLES, *x.shape[1:]), generator=torch.Generator().manual_seed(0)) * SMOOTH_SD
    noisy = (x[:, None] + noise[None]).flatten(0, 1).requires_grad_()
    grads = Saliency(module).attribute(noisy, target=targets.repeat_interleave(SMOOTH_SAMPLES), abs=False)
    return grads.reshape(len(x), SMOOTH_SAMPLES, *x.shape[1:]).mean(dim=1)[:, 0], None


def occlusion(module: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    window = (1, OCCLUSION_WINDOW, OCCLUSION_WINDOW)
    positions = ((SIDE - OCCLUSION_WINDOW) // OCCLUSION_STRIDE + 1) ** 2
    maps = Occlusion(module).attribute(
        x,
        sliding_window_shapes=window,
        strides=(1, OCCLUSION_STRIDE, OCCLUSION_STRIDE),
        baselines=0.0,
        target=targets,
        perturbations_per_eval=max(1, min(positions, INTERNAL_BATCH // max(len(x), 1))),
    )
    return maps[:, 0], None


def last_block(net: nn.Module) -> nn.Module:
    """The module whose output Grad-CAM weighs: the activation after the last convolution of a CNN's body."""
    found: str | nn.Module | None = None  # "conv" once a convolution is passed, then its activation
    body = cast(nn.Module, net.body)  # the layers of a CNN of fmnist.models.nets, in order
    for module in body.modules():
        if isinstance(module, nn.Linear):  # the plain CNN's feature layer: past the convolutions
            break
        if isinstance(module, nn.Conv2d):
            found = "conv"
        elif found is not None and isinstance(module, nn.ReLU | nn.GELU):
            found = module
    if not isinstance(found, nn.Module):
        raise ValueError("grad-cam: the network has no convolution followed by an activation")
    return found


def grad_cam(module: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Grad-CAM of a pixel module built on a CNN (Averaged(Normalised(cnn)) or the hybrid's), summed over the
    test-time views; negative evidence kept (no ReLU), so the map is signed like the others."""
    averaged = cast("Averaged", module)  # grad-cam applies to the cnn and the hybrid: pixel_module averages both
    logits_of, views = averaged.logits_of, averaged.views
    normalised = cast("Normalised", logits_of[0] if isinstance(logits_of, nn.Sequential) else logits_of)
    layer = last_block(normalised.net)
    total = torch.zeros(len(x), SIDE, SIDE)
    for weight, view in views:
        one = nn.Sequential(_View(view), logits_of)
        cam = LayerGradCam(one, layer).attribute(x.clone().requires_grad_(), target=targets, relu_attributions=False)
        cam = F.interpolate(cam, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
        total += weight * _unview(view, cam)[:, 0]
    return total, None


class _View(nn.Module):
    def __init__(self, view: "View") -> None:
        super().__init__()
        self.view = view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.view(x)


def _unview(view: "View", cam: torch.Tensor) -> torch.Tensor:
    """A map on a view's pixels -> on the image's: views are mirrors and 1-pixel moves, undone the same way."""
    probe = torch.arange(SIDE * SIDE, dtype=torch.float32).reshape(1, 1, SIDE, SIDE) + 1
    where = view(probe).long() - 1  # each view pixel's source pixel, -1 where the view shows black
    out = torch.zeros_like(cam).flatten(1)
    flat, source = cam.flatten(1), where.flatten()
    kept = source >= 0
    out[:, source[kept]] = flat[:, kept]
    return out.reshape(cam.shape)


BY_NAME: dict[str, Method] = {  # the names fmnist.predict.explain.METHODS lists, in its order
    "integrated-gradients": integrated_gradients,
    "saliency": saliency,
    "smoothgrad": smoothgrad,
    "occlusion": occlusion,
    "grad-cam": grad_cam,
}
