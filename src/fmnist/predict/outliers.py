"""Images that are not clothing, and clothing photographed the way shops show it: to measure "unknown".

Every image is made at photo size and passed through `fmnist.predict.segment.convert`, the conversion
people's own files get, so a detector is judged on what it will really see. Sources are things that ship with
installed packages or are drawn here: scikit-learn's handwritten digits (upscaled, dark-on-light and
light-on-dark), crops of scikit-learn's two sample photographs, drawn shapes, printed text and noise.

Two disjoint parts, so that what chooses a method or a threshold is never what reports it: "dev" uses the
first half of the digits, the left half of each photograph and even-numbered seeds of the drawn kinds; "report"
the second half, the right halves and odd seeds.
"""

import string
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from fmnist.predict.segment import convert

KINDS = ("digits", "photo-crops", "shapes", "text", "noise")
PARTS = ("dev", "report")
WORDS = ("SALE", "hello", "Fashion", "42", "MNIST", "Zürich", "ok?", "abc xyz", "2026", "TEXT", "menu", "#tag")


def _half(part, n):
    """The index range of `part` in something of length n: dev the first half, report the second."""
    return (0, n // 2) if part == "dev" else (n // 2, n)


def _digit(rng, part, digits):
    lo, hi = _half(part, len(digits))
    glyph = digits[rng.integers(lo, hi)] / 16.0  # 8x8, 0..1, ink high
    side = int(rng.integers(48, 200))
    big = Image.fromarray(np.rint(glyph * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
    pad = int(rng.integers(0, side // 3 + 1))
    canvas = Image.new("L", (side + 2 * pad, side + 2 * pad), 0)
    canvas.paste(big, (pad, pad))
    return canvas if rng.random() < 0.5 else Image.eval(canvas, lambda v: 255 - v)  # both polarities


def _photo_crop(rng, part, photos):
    photo = photos[rng.integers(len(photos))]
    height, width = photo.shape[:2]
    lo, hi = _half(part, width)
    side = int(rng.integers(40, min(height, hi - lo)))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(lo, hi - side + 1))
    return Image.fromarray(photo[top : top + side, left : left + side])


def _colour(rng):
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _shape(rng):
    side = int(rng.integers(64, 240))
    background = (255, 255, 255) if rng.random() < 0.6 else _colour(rng)
    img = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        box = sorted(rng.integers(0, side, 2)), sorted(rng.integers(0, side, 2))
        xy = [box[0][0], box[1][0], max(box[0][1], box[0][0] + 4), max(box[1][1], box[1][0] + 4)]
        kind = rng.integers(5)
        if kind == 0:
            draw.ellipse(xy, fill=_colour(rng))
        elif kind == 1:
            draw.rectangle(xy, outline=_colour(rng), width=int(rng.integers(2, 10)))
        elif kind == 2:
            points = [tuple(int(v) for v in rng.integers(0, side, 2)) for _ in range(int(rng.integers(3, 8)))]
            draw.polygon(points, fill=_colour(rng))
        elif kind == 3:
            draw.line([tuple(int(v) for v in rng.integers(0, side, 2)) for _ in range(4)], fill=_colour(rng), width=6)
        else:
            draw.regular_polygon((side / 2, side / 2, side / 3), int(rng.integers(3, 9)), fill=_colour(rng))
    return img


def _text(rng):
    word = (
        WORDS[rng.integers(len(WORDS))]
        if rng.random() < 0.6
        else "".join(rng.choice(list(string.ascii_letters + string.digits), size=int(rng.integers(1, 9))))
    )
    font = ImageFont.load_default(size=int(rng.integers(16, 72)))
    left, top, right, bottom = font.getbbox(word)
    margin = int(rng.integers(4, 30))
    img = Image.new("L", (int(right - left + 2 * margin), int(bottom - top + 2 * margin)), 255)
    ImageDraw.Draw(img).text((margin - left, margin - top), word, fill=int(rng.integers(0, 120)), font=font)
    return img if rng.random() < 0.7 else Image.eval(img, lambda v: 255 - v)


def _noise(rng):
    side = int(rng.integers(28, 160))
    kind = rng.integers(4)
    if kind == 0:
        array = rng.integers(0, 256, (side, side))
    elif kind == 1:
        array = np.clip(rng.normal(rng.uniform(60, 200), rng.uniform(20, 80), (side, side)), 0, 255)
    elif kind == 2:
        array = np.where(rng.random((side, side)) < rng.uniform(0.05, 0.5), 255, 0)
    else:
        blob = Image.fromarray(rng.integers(0, 256, (side, side)).astype(np.uint8))
        return blob.filter(ImageFilter.GaussianBlur(rng.uniform(2, 8))).convert("RGB")
    return Image.fromarray(array.astype(np.uint8))


def non_clothing(count: int, part: str = "dev", kinds: Sequence[str] = KINDS) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (count, 28, 28), kind per image (count,) str): non-clothing images, spread evenly over `kinds`."""
    images, _, names = non_clothing_photos(count, part, kinds)
    return images, names


def non_clothing_photos(
    count: int, part: str = "dev", kinds: Sequence[str] = KINDS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`non_clothing` with, per image, whether it was segmented (bool (count,)): what
    `fmnist.predict.photo_trust.judged` needs to judge them as people's photos are judged."""
    if part not in PARTS:
        raise ValueError(f"part {part!r}: one of {', '.join(PARTS)}")
    from sklearn.datasets import load_digits, load_sample_images  # only here: scikit-learn loads slowly

    digits, photos = load_digits().images, load_sample_images().images
    rng = np.random.default_rng([PARTS.index(part), 19])
    makers = {
        "digits": lambda: _digit(rng, part, digits),
        "photo-crops": lambda: _photo_crop(rng, part, photos),
        "shapes": lambda: _shape(rng),
        "text": lambda: _text(rng),
        "noise": lambda: _noise(rng),
    }
    names = [kinds[i % len(kinds)] for i in range(count)]
    seen = [convert(makers[name]()) for name in names]
    segmented = np.array([one.cutout is not None for one in seen], bool)
    return np.stack([one.image for one in seen]), segmented, np.array(names)


def product_photo(item: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A uint8 (28, 28) item the way a shop shows it: dark object on white, upscaled 4-10x, uneven margins (mode L)."""
    factor = int(rng.integers(4, 11))
    side = 28 * factor
    left, top, right, bottom = rng.integers(factor, 10 * factor, size=4)
    photo = Image.new("L", (side + left + right, side + top + bottom), 255)
    photo.paste(Image.fromarray(255 - item).resize((side, side), Image.Resampling.BICUBIC), (int(left), int(top)))
    return photo


def product_photos(items: Iterable[np.ndarray], seed: int = 0) -> np.ndarray:
    """Clothing items, uint8 (28, 28) each, re-rendered as product photos and converted back to 28x28, as a
    user's upload would be: uint8 (N, 28, 28)."""
    rng = np.random.default_rng(seed)
    return np.stack([convert(product_photo(item, rng)).image for item in items])
