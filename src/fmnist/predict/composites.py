"""Photos of garments the way people take them, made from 28x28 items: for measuring and testing segmentation.

Each composite is a coloured, textured garment (the item's intensities mapped to a colour) scaled up to photo
size, tilted slightly, placed off centre with a soft shadow on one of five background kinds, and saved as JPEG.
The garment's mask is known, so a segmentation can be scored by IoU. Everything comes from one seed.

The kinds are the issue's: a plain light or dark sheet, a colour gradient, a texture (stripes or a weave) and
clutter (many shapes on a table). bench/bench_photos.py builds a second, differently made family on top.
"""

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = ("plain-light", "plain-dark", "gradient", "texture", "clutter")
Background = Callable[[np.random.Generator, tuple[int, int]], Image.Image]


def colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> np.ndarray:
    """A random RGB colour, float (3,), each channel in [low, high)."""
    return rng.uniform(low, high, 3)


def _plain(rng, size, light):
    base = colour(rng, 170, 256) if light else colour(rng, 0, 90)
    return Image.new("RGB", size, tuple(int(v) for v in base))


def gradient(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Two random colours blended linearly along a random direction."""
    width, height = size
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width] / max(size)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    t = ((t - t.min()) / max(np.ptp(t), 1e-9))[..., None]
    array = colour(rng) * (1 - t) + colour(rng) * t
    return Image.fromarray(array.astype(np.uint8))


def texture(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Stripes at a random angle and period, or a weave (two crossed sine patterns), in two random colours."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    period = rng.uniform(8, 40) * max(size) / 800
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    if rng.random() < 0.5:
        t = (np.sin(2 * np.pi * u / period) > rng.uniform(-0.5, 0.5)).astype(np.float64)
    else:
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        t = 0.5 + 0.25 * (np.sin(2 * np.pi * u / period) + np.sin(2 * np.pi * v / period))
    a, b = colour(rng), colour(rng)
    array = a * (1 - t[..., None]) + b * t[..., None]
    return Image.fromarray(array.astype(np.uint8))


def clutter(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A table top with many random shapes in random colours (boxes, discs, lines, polygons)."""
    width, height = size
    img = Image.new("RGB", size, tuple(int(v) for v in colour(rng)))
    draw = ImageDraw.Draw(img)
    scale = max(size)
    for _ in range(int(rng.integers(15, 40))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.02, 0.12) * scale
        fill = tuple(int(v) for v in colour(rng))
        kind = rng.integers(4)
        if kind == 0:
            draw.ellipse([x - r, y - r * rng.uniform(0.4, 1), x + r, y + r], fill=fill)
        elif kind == 1:
            draw.rectangle([x - r, y - r * rng.uniform(0.3, 1), x + r, y + r], fill=fill)
        elif kind == 2:
            end = (x + rng.uniform(-3, 3) * r, y + rng.uniform(-3, 3) * r)
            draw.line([(x, y), end], fill=fill, width=int(rng.uniform(0.1, 0.4) * r) + 2)
        else:
            points = [(x + rng.uniform(-r, r), y + rng.uniform(-r, r)) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(points, fill=fill)
    return img


BACKGROUNDS: dict[str, Background] = {
    "plain-light": lambda rng, size: _plain(rng, size, True),
    "plain-dark": lambda rng, size: _plain(rng, size, False),
    "gradient": gradient,
    "texture": texture,
    "clutter": clutter,
}


def garment(item: np.ndarray, rng: np.random.Generator, side: int) -> tuple[Image.Image, Image.Image]:
    """A uint8 (28, 28) item -> (RGB garment, L mask), `side` pixels square.

    The item's intensity is how dark the product photo was (the dataset negated it), so it darkens one random
    colour by up to 35-80 % (folds and seams stay visible), sometimes with a fine pattern printed on; the mask
    is where the item is not background (intensity above a few levels).
    """
    big = np.asarray(Image.fromarray(item).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64) / 255
    mask = np.clip((big - 0.03) * 12, 0, 1)
    base = colour(rng)
    shade = 1 - rng.uniform(0.35, 0.8) * big / max(big.max(), 1e-9)
    if rng.random() < 0.3:  # a printed pattern: stripes or dots of a second colour
        yy, xx = np.mgrid[0:side, 0:side]
        period = rng.uniform(0.03, 0.1) * side
        pattern = (np.sin(2 * np.pi * (xx + yy * rng.uniform(-1, 1)) / period) > 0.3)[..., None]
        base = np.where(pattern, colour(rng), base)
    rgb = np.clip(base * shade[..., None], 0, 255)
    return Image.fromarray(rgb.astype(np.uint8)), Image.fromarray((mask * 255).astype(np.uint8), "L")


def place(
    background: Image.Image,
    item: np.ndarray,
    rng: np.random.Generator,
    fill: tuple[float, float] = (0.45, 0.8),
    tilt: float = 8.0,
) -> tuple[Image.Image, np.ndarray]:
    """The item as a garment on `background`: tilted up to `tilt` degrees, off centre, with a soft shadow.
    Returns (RGB photo, bool mask of the garment, same size)."""
    width, height = background.size
    side = int(min(width, height) * rng.uniform(*fill))
    cloth, mask = garment(item, rng, side)
    angle = rng.uniform(-tilt, tilt)
    cloth = cloth.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    mask = mask.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    left = int(rng.uniform(0.02, 0.98) * (width - cloth.width))
    top = int(rng.uniform(0.02, 0.98) * (height - cloth.height))
    full = Image.new("L", background.size, 0)
    full.paste(mask, (max(left, 0), max(top, 0)))
    blurred = np.asarray(full.filter(ImageFilter.GaussianBlur(side * 0.03)), dtype=np.float64) / 255
    dx, dy = (int(v * side) for v in rng.uniform(-0.04, 0.04, 2))
    shadow = np.roll(blurred, (dy, dx), axis=(0, 1))
    photo = np.asarray(background, dtype=np.float64) * (1 - rng.uniform(0.15, 0.45) * shadow[..., None])
    out = Image.fromarray(photo.astype(np.uint8))
    out.paste(cloth, (max(left, 0), max(top, 0)), mask)
    return out, np.asarray(full) > 127


def jpeg(img: Image.Image, rng: np.random.Generator) -> bytes:
    """The photo as a JPEG file's bytes, quality 70-95 as phones and messengers save them."""
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=int(rng.integers(70, 96)))
    return buffer.getvalue()


def composite(item: np.ndarray, kind: str, rng: np.random.Generator, long_side: int = 800) -> tuple[bytes, np.ndarray]:
    """One photo of `item` on a background of `kind` (one of KINDS): (JPEG bytes, bool garment mask)."""
    aspect = rng.uniform(0.65, 1.0)
    size = (long_side, int(long_side * aspect)) if rng.random() < 0.5 else (int(long_side * aspect), long_side)
    photo, mask = place(BACKGROUNDS[kind](rng, size), item, rng)
    return jpeg(photo, rng), mask
