"""Batched, seeded image augmentation on tensors (N, C, H, W): whole batches at once, no per-sample loop.

Every random draw comes from the `torch.Generator` passed in, so one seed fixes the augmented stream.
`fill` is the value of an empty pixel in the tensor's own scale (for normalised images: -mean / std).
The draws and the work happen on the batch's device (the generator must live there too).
"""

import numpy as np
import torch
import torch.nn.functional as F


def random_shift(x, pad, fill, generator):
    """Pad by `pad` pixels with `fill`, then crop back at a random offset per image: shifts of up to ±pad."""
    if pad <= 0:
        return x
    n, _, height, width = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), value=fill)
    device = x.device
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    rows = (dy[:, None] + torch.arange(height, device=device))[:, :, None]  # (N, H, 1)
    cols = (dx[:, None] + torch.arange(width, device=device))[:, None, :]  # (N, 1, W)
    # Advanced indices around a slice put their broadcast shape first: (N, H, W, C).
    crops = padded[torch.arange(n, device=device)[:, None, None], :, rows, cols]
    return crops.permute(0, 3, 1, 2).contiguous(memory_format=torch.contiguous_format)


def random_flip(x, generator):
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_erase(x, probability, fill, generator, area=(0.02, 0.25), aspect=(0.3, 3.3)):
    """With `probability` per image, set a random rectangle (area and aspect ratio drawn in the given ranges,
    log-uniform aspect) to `fill`. Rectangles are clipped at the border, which only makes them smaller."""
    if probability <= 0:
        return x
    n, _, height, width = x.shape
    u = torch.rand(n, 5, generator=generator, device=x.device)
    erase = u[:, 0] < probability
    frac = area[0] + (area[1] - area[0]) * u[:, 1]
    log_lo, log_hi = torch.log(torch.tensor(aspect[0])), torch.log(torch.tensor(aspect[1]))
    ratio = torch.exp(log_lo + (log_hi - log_lo) * u[:, 2])
    h = (torch.sqrt(frac * height * width * ratio)).round().clamp(1, height)
    w = (torch.sqrt(frac * height * width / ratio)).round().clamp(1, width)
    top = (u[:, 3] * (height - h + 1)).floor()
    left = (u[:, 4] * (width - w + 1)).floor()
    ys = torch.arange(height, device=x.device)[None, :]
    xs = torch.arange(width, device=x.device)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < (top + h)[:, None])  # (N, H)
    in_cols = (xs >= left[:, None]) & (xs < (left + w)[:, None])  # (N, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None])[:, None]  # (N, 1, H, W)
    return x.masked_fill(mask, fill)


# Photometric draws, each log-uniform or uniform per image: how photos of garments differ from the dataset's
# (a light garment is dim after negation, a flat one low in contrast, a camera's curve bends the levels).
GAIN = (0.3, 1.0)  # the garment's intensity scaled (lighter garments)
GAMMA = (0.5, 2.0)  # levels bent
CONTRAST = (0.3, 1.0)  # remaining contrast around the image's mean
BRIGHTNESS = (0.0, 0.3)  # added to every pixel


def _uniform(u, low, high, log=False):
    if log:
        return torch.exp(np.log(low) + (np.log(high) - np.log(low)) * u)
    return low + (high - low) * u


def random_photometric(x, probability, mean, std, generator):
    """With `probability` per image, change its levels as photos do: garment gain, gamma, contrast, brightness
    (ranges above), on the [0, 1] intensities behind the normalised tensor (x * std + mean)."""
    if probability <= 0:
        return x
    n = x.shape[0]
    u = torch.rand(n, 5, generator=generator, device=x.device)[:, :, None, None, None]
    p = (x * std + mean).clamp(0, 1)
    p = p * _uniform(u[:, 1], *GAIN, log=True)
    p = p ** _uniform(u[:, 2], *GAMMA, log=True)
    means = p.mean(dim=(1, 2, 3), keepdim=True)
    p = (p - means) * _uniform(u[:, 3], *CONTRAST) + means + _uniform(u[:, 4], *BRIGHTNESS)
    changed = (p.clamp(0, 1) - mean) / std
    return torch.where(u[:, 0] < probability, changed.to(x.dtype), x)


def augment_batch(x, *, flip, shift, erase, fill, generator):
    """Apply the configured augmentations to a batch (N, C, H, W); returns a new tensor, same shape."""
    if shift:
        x = random_shift(x, shift, fill, generator)
    if flip:
        x = random_flip(x, generator)
    if erase:
        x = random_erase(x, erase, fill, generator)
    return x


def tta_logits(logits_of, images, level):
    """Test-time augmentation of uint8 images (N, H, W): logits_of(images) -> (N, C) averaged over views.

    level 0: the images alone; 1: with their mirror images; 2: half that, half the same for the images moved
    one pixel up-left and one down-right (background-filled): six passes.
    """

    def flip_pair(x):
        return (logits_of(x) + logits_of(np.ascontiguousarray(x[:, :, ::-1]))) / 2

    if not level:
        return logits_of(images)
    if level == 1:
        return flip_pair(images)
    moved = (flip_pair(_moved(images, 1)) + flip_pair(_moved(images, -1))) / 2
    return (flip_pair(images) + moved) / 2


def _moved(images, d):
    """uint8 images (N, H, W) moved d pixels down and right (up and left if d < 0), the gap filled with 0."""
    out = np.zeros_like(images)
    if d > 0:
        out[:, d:, d:] = images[:, :-d, :-d]
    else:
        out[:, :d, :d] = images[:, -d:, -d:]
    return out
