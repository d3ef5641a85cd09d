"""Corrupted copies of 28x28 images, in the spirit of MNIST-C (Mu & Gilmer 2019) and ImageNet-C (Hendrycks &
Dietterich 2019): 13 corruptions at 5 severities, made locally with scipy.ndimage and Pillow from one seed.

`corrupt(images, name, severity, seed)` takes uint8 (N, 28, 28) light-on-black images and returns the same
shape; severity 1 is mild, 5 severe. Every random draw (noise, angles, directions, displacement fields) comes
from a generator seeded by (seed, corruption, severity), so a sweep is the same on every machine.
"""

import io

import numpy as np
from PIL import Image
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)
# The parameter of each corruption per severity (on pixels scaled to [0, 1]; geometry in pixels or degrees).
LEVELS = {
    "gaussian-noise": (0.08, 0.14, 0.2, 0.28, 0.38),  # standard deviation
    "shot-noise": (60, 25, 12, 6, 3),  # photons at full brightness (fewer: noisier)
    "impulse-noise": (0.03, 0.07, 0.12, 0.18, 0.27),  # share of pixels set to 0 or 1
    "gaussian-blur": (0.5, 0.8, 1.1, 1.5, 2.0),  # sigma
    "motion-blur": (3, 5, 7, 9, 11),  # length of the streak
    "contrast": (0.6, 0.45, 0.3, 0.2, 0.12),  # remaining contrast
    "brightness": (0.15, 0.3, 0.45, 0.6, 0.75),  # added to every pixel
    "rotation": (8, 16, 24, 32, 45),  # degrees, either way
    "shear": (0.1, 0.2, 0.3, 0.45, 0.6),  # horizontal shear factor, either way
    "scale": (0.9, 0.8, 0.7, 0.6, 0.5),  # zoom out about the centre
    "translation": (1, 2, 3, 4, 6),  # pixels in a random direction
    "elastic": (1.0, 1.6, 2.2, 2.8, 3.5),  # mean displacement (pixels) of a field smoothed with sigma 3
    "jpeg": (50, 30, 18, 10, 5),  # JPEG quality
}
CORRUPTIONS = tuple(LEVELS)


def _noise(x, name, level, rng):
    if name == "gaussian-noise":
        return x + rng.normal(0, level, x.shape)
    if name == "shot-noise":
        return rng.poisson(x * level) / level
    out = x.copy()
    hit = rng.random(x.shape) < level
    out[hit] = rng.integers(0, 2, int(hit.sum()))
    return out


def _motion_kernel(length, angle):
    kernel = np.zeros((length, length))
    centre = (length - 1) / 2
    for t in np.linspace(-centre, centre, 4 * length):
        kernel[round(centre + t * np.sin(angle)), round(centre + t * np.cos(angle))] = 1.0
    return kernel / kernel.sum()


def _affine(image, matrix, offset_from=None):
    """Map output pixel p from input matrix @ (p - c) + c (c: the centre), bilinear, black outside."""
    centre = np.array(image.shape) / 2 - 0.5 if offset_from is None else offset_from
    return ndimage.affine_transform(image, matrix, offset=centre - matrix @ centre, order=1, cval=0.0)


def _geometric(x, name, level, rng):
    out = np.empty_like(x)
    for i, image in enumerate(x):
        sign = rng.choice((-1, 1))
        if name == "rotation":
            angle = np.deg2rad(sign * level)
            matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        elif name == "shear":
            matrix = np.array([[1.0, 0.0], [sign * level, 1.0]])
        elif name == "scale":
            matrix = np.eye(2) / level
        else:
            out[i] = _other_geometric(image, name, level, rng)
            continue
        out[i] = _affine(image, matrix)
    return out


def _other_geometric(image, name, level, rng):
    if name == "translation":
        angle = rng.uniform(0, 2 * np.pi)
        return ndimage.shift(image, (level * np.sin(angle), level * np.cos(angle)), order=1, cval=0.0)
    field = [ndimage.gaussian_filter(rng.uniform(-1, 1, image.shape), 3.0, mode="constant") for _ in range(2)]
    scale = level / max(np.mean(np.hypot(*field)), 1e-9)
    rows, cols = np.meshgrid(np.arange(image.shape[0]), np.arange(image.shape[1]), indexing="ij")
    return ndimage.map_coordinates(image, [rows + scale * field[0], cols + scale * field[1]], order=1, cval=0.0)


def _jpeg(x, quality):
    out = np.empty((len(x), *x.shape[1:]), np.uint8)
    for i, image in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
        out[i] = np.asarray(Image.open(buffer))
    return out


def corrupt(images, name, severity, seed=0):
    """uint8 (N, 28, 28) -> the same images under corruption `name` at `severity` (1-5), uint8."""
    if name not in LEVELS:
        raise ValueError(f"corruption {name!r}: one of {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r}: one of {SEVERITIES}")
    images = np.asarray(images, dtype=np.uint8)
    level = LEVELS[name][severity - 1]
    rng = np.random.default_rng([seed, CORRUPTIONS.index(name), severity])
    if name == "jpeg":
        return _jpeg(images, level)
    x = images.astype(np.float64) / 255.0
    if name.endswith("noise"):
        x = _noise(x, name, level, rng)
    elif name == "gaussian-blur":
        x = ndimage.gaussian_filter(x, (0, level, level))
    elif name == "motion-blur":
        kernels = [_motion_kernel(level, rng.uniform(0, np.pi)) for _ in range(len(x))]
        x = np.stack([ndimage.convolve(image, k, mode="constant") for image, k in zip(x, kernels, strict=True)])
    elif name == "contrast":
        means = x.mean(axis=(1, 2), keepdims=True)
        x = (x - means) * level + means
    elif name == "brightness":
        x = x + level
    else:
        x = _geometric(x, name, level, rng)
    return np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)
