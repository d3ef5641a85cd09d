"""The garment cut from its background before the dataset's steps, for photos that are not product shots.

`convert` decides by a rule on the image's border: a border of one near-white or near-black colour (a product
shot, a dataset image, a scan) keeps today's exact pipeline (`fmnist.predict.images.to_fashion_mnist`), so
dataset images stay bit-exact. Any other photo is segmented on a copy of at most SEG_SIDE pixels: OpenCV's
GrabCut, its background model seeded from a band along the border and the rest left "probably garment"; the
largest connected parts are kept; the garment goes on white; its gray levels are normalised (see `on_white`)
and the published steps follow. docs/photos.md gives the measurements behind each choice.

A box (x0, y0, x1, y1 in the photo's pixels) from the person narrows the search: the photo is cropped to it
with a margin, and the band outside the box seeds the background.
"""

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from fmnist.data.dataset import SIDE
from fmnist.errors import UserError
from fmnist.files import shown
from fmnist.predict.images import MAX_BYTES, MAX_PIXELS, TRIM_TOLERANCE, ImageError, load_photo, to_fashion_mnist

SEG_SIDE = 80  # GrabCut's working size: the result is 28 pixels; GrabCut's cost grows fast with size (docs/photos.md)
BORDER = 0.04  # the seeded band, as a share of the working copy's longest side
PLAIN_SHARE = 0.98  # of border pixels within TRIM_TOLERANCE of the corner colour: a plain background
PLAIN_LEVEL = 40  # a plain background this close to white or black (gray levels) is a product shot or scan
BOX_MARGIN = 0.5  # around a box, this share of its size is cropped with it: the background's colours to learn
BOX_EDGE = 0.08  # inside a box, a band this share of its size starts as "probably background"
ALIKE = 0.03  # of the largest RGB distance: a garment pixel this close to a background colour is "alike"
MAX_ALIKE = 0.5  # a cut-out more alike than this is no object apart from its background: not segmented
EDGE_KEEP = 0.5  # the rim is taken off a mask only if at least this share of it stays
KEEP_SHARE = 0.15  # connected parts at least this share of the largest are kept (a pair of sandals)
ITERATIONS = 3
SHADOW_CHROMA = 0.04  # L1 distance of chromaticities (r, g, b shares) within which a pixel may be a shadow
SHADOW_SHARE = 0.4  # shade-like pixels are dropped from the garment only if they are fewer than this share
# The garment's levels after negation: a typical training image's garment pixels have a mean of 161 and a
# spread of 51 (median over images); the spread and the floor were chosen on training-split composites
# (docs/photos.md).
LEVEL_MEAN, LEVEL_SPREAD, LEVEL_FLOOR = 160.0, 35.0, 40.0
MIN_SPREAD = 8.0  # a flat garment's spread is not blown up from JPEG noise
Box = tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class Seen:
    """What the model saw: uint8 (28, 28), and the garment cut out on white (None: no segmentation was needed)."""

    image: np.ndarray
    cutout: Image.Image | None = None


def border_pixels(rgb: np.ndarray, width: int) -> np.ndarray:
    """The pixels of a band `width` wide along the four edges of (H, W, 3): (N, 3)."""
    sides = (rgb[:width], rgb[-width:], rgb[:, :width], rgb[:, -width:])
    return np.concatenate([side.reshape(-1, 3) for side in sides])


def is_plain(rgb: np.ndarray) -> bool:
    """True for a product shot or scan: the outermost pixels nearly all of the corner colour, itself near white
    or near black. (H, W, 3) uint8."""
    edge = border_pixels(rgb, 1).astype(np.float64)
    corner = np.median(rgb[[0, 0, -1, -1], [0, -1, 0, -1]].astype(np.float64), axis=0)
    close = np.sqrt(((edge - corner) ** 2).sum(axis=1)) / (255 * np.sqrt(3)) <= TRIM_TOLERANCE
    return bool(close.mean() >= PLAIN_SHARE and (corner.min() >= 255 - PLAIN_LEVEL or corner.max() <= PLAIN_LEVEL))


def garment_mask(rgb: np.ndarray, seed_box: Box | None = None) -> np.ndarray:
    """Bool (H, W) garment mask of a uint8 (H, W, 3) image by GrabCut. `seed_box`: only inside it can the garment
    be (the rest is background for sure); None: a band along the border is the background's seed."""
    import cv2  # only here: OpenCV loads in ~0.1 s and plain photos never need it

    height, width = rgb.shape[:2]
    band = max(2, round(BORDER * max(height, width)))
    sure = np.ones((height, width), bool)  # the seed: certainly background
    likely = np.zeros((height, width), bool)  # probably background: the edge just inside a person's box
    if seed_box is None:
        sure[band:-band, band:-band] = False
    else:
        x0, y0, x1, y1 = seed_box
        sure[y0:y1, x0:x1] = False
        likely[y0:y1, x0:x1] = True
        inner = max(band, round(BOX_EDGE * max(x1 - x0, y1 - y0)))
        likely[y0 + inner : y1 - inner, x0 + inner : x1 - inner] = False
    mask = np.where(sure, cv2.GC_BGD, cv2.GC_PR_FGD).astype(np.uint8)
    mask[likely] = cv2.GC_PR_BGD
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's generator: the same photo, the same mask
    # (the rectangle is not used when GrabCut starts from a mask)
    cv2.grabCut(rgb, mask, (0, 0, 1, 1), background, foreground, ITERATIONS, cv2.GC_INIT_WITH_MASK)
    garment = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    shadow = garment & shadow_like(rgb, rgb[sure | likely])
    if shadow.sum() < SHADOW_SHARE * garment.sum():  # a rim of shade, not a garment of the background's hue
        garment &= ~shadow
    garment = cv2.morphologyEx(garment.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    garment = largest_parts(garment)
    if alike_share(rgb[garment], rgb[sure | likely]) > MAX_ALIKE:
        garment[:] = False  # the "garment" is made of the background's colours: noise, a pattern, no object
    return garment


def alike_share(inside: np.ndarray, seed: np.ndarray, samples: int = 128) -> float:
    """The share of the garment's pixels (N, 3) within ALIKE of one of `samples` background colours (seed)."""
    if not len(inside) or not len(seed):
        return 1.0
    colours = seed.astype(np.float32)[np.linspace(0, len(seed) - 1, samples).astype(int)]
    pixels = inside.astype(np.float32)
    nearest = np.full(len(pixels), np.inf, np.float32)
    for colour in colours:
        nearest = np.minimum(nearest, ((pixels - colour) ** 2).sum(axis=1))
    return float((nearest <= (ALIKE * 255 * np.sqrt(3)) ** 2).mean())


def shadow_like(rgb: np.ndarray, seed: np.ndarray, samples: int = 24) -> np.ndarray:
    """Bool (H, W): pixels that look like a background colour (`seed`, (N, 3)) in shade: nearly its
    chromaticity, 40-97 % of its brightness: a garment's shadow is not part of the garment."""
    values = rgb.astype(np.float64) + 1
    border = seed.astype(np.float64)[np.linspace(0, len(seed) - 1, samples).astype(int)] + 1
    total, border_total = values.sum(axis=-1), border.sum(axis=-1)
    chroma, border_chroma = values / total[..., None], border / border_total[:, None]
    found = np.zeros(rgb.shape[:2], bool)
    for colour, brightness in zip(border_chroma, border_total, strict=True):
        ratio = total / brightness
        found |= (np.abs(chroma - colour).sum(axis=-1) < SHADOW_CHROMA) & (ratio > 0.4) & (ratio < 0.97)
    return found


def largest_parts(mask: np.ndarray) -> np.ndarray:
    """Keep the connected parts of a 0/1 uint8 mask at least KEEP_SHARE of the largest: bool, same shape."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return mask.astype(bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= KEEP_SHARE * areas.max()) + 1
    return np.isin(labels, keep)


def edge_free(mask: np.ndarray) -> np.ndarray:
    """The mask less its outermost pixels, which blend garment and background (a dark or light rim), where that
    leaves most of it."""
    import cv2

    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return inner if inner.sum() >= EDGE_KEEP * mask.sum() else mask


def on_white(gray: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The garment's gray levels on white (mode L), normalised: once negated, the garment's mean and spread are
    the training images' typical ones (LEVEL_MEAN, LEVEL_SPREAD), and no part of it is darker than LEVEL_FLOOR,
    so a light or flat garment is not a dim or broken shape; outside the mask, white."""
    values = 255.0 - gray.astype(np.float64)  # negated, as the model will see them
    inside = values[mask]
    if inside.size == 0:
        return Image.new("L", gray.shape[::-1], 255)
    spread = max(float(inside.std()), MIN_SPREAD)
    levels = np.clip((values - inside.mean()) / spread * LEVEL_SPREAD + LEVEL_MEAN, LEVEL_FLOOR, 255)
    return Image.fromarray(np.rint(np.where(mask, 255 - levels, 255)).astype(np.uint8), "L")


def _working_copy(img, box):
    """(the RGB copy segmented, the box inside it or None): the box's crop with a margin, at most SEG_SIDE."""
    seed = None
    if box is not None:
        x0, y0, x1, y1 = box
        margin = round(BOX_MARGIN * max(x1 - x0, y1 - y0)) + 2
        crop = (max(0, x0 - margin), max(0, y0 - margin), min(img.width, x1 + margin), min(img.height, y1 + margin))
        img = img.crop(crop)
        seed = (x0 - crop[0], y0 - crop[1], x1 - crop[0], y1 - crop[1])
    scale = min(1.0, SEG_SIDE / max(img.size))
    small = img.convert("RGB")
    if scale < 1:
        small = small.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BOX
        )
    if seed is not None:
        x0, y0, x1, y1 = (round(v * scale) for v in seed)
        seed = (max(0, x0), max(0, y0), max(x0 + 1, x1), max(y0 + 1, y1))
    return np.asarray(small), seed


BOX_PATTERN = "^ *[0-9]{1,9} *, *[0-9]{1,9} *, *[0-9]{1,9} *, *[0-9]{1,9} *$"  # the form parse_box reads


def parse_box(text: str) -> Box:
    """ "X0,Y0,X1,Y1" (whole pixels of the photo as shown, left top right bottom) -> Box; UserError if not that."""
    # Spaces around the numbers; ASCII digits, at most 9 (str.isdigit takes '²', which int() refuses, and any
    # number of digits): what BOX_PATTERN (the server's schema) says
    parts = [part.strip(" ") for part in str(text).split(",")]
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 9 for p in parts):
        raise UserError(f"box {shown(text)}: expected X0,Y0,X1,Y1, four whole pixel numbers (left, top, right, bottom)")
    x0, y0, x1, y1 = (int(p) for p in parts)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise UserError(f"box {shown(text)}: right must exceed left and bottom exceed top by at least 2 pixels")
    return x0, y0, x1, y1


def scaled_box(box: Box, full: tuple[int, int], picture: tuple[int, int], name: str) -> Box:
    """A box in the full photo's pixels -> the same box in the loaded (reduced) picture's; ImageError naming the
    file if the box is not inside the photo."""
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= full[0] and 0 <= y0 < y1 <= full[1]):
        raise ImageError(name, f"box {x0},{y0},{x1},{y1} is not inside the {full[0]}x{full[1]} photo")
    sx, sy = picture[0] / full[0], picture[1] / full[1]
    out = (int(x0 * sx), int(y0 * sy), max(int(x0 * sx) + 1, round(x1 * sx)), max(int(y0 * sy) + 1, round(y1 * sy)))
    return out[0], out[1], min(out[2], picture[0]), min(out[3], picture[1])


def convert_file(
    path: str | Path,
    *,
    content: bytes | None = None,
    box: Box | None = None,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Seen:
    """An image file (or its bytes, `content`) -> what the model sees (`convert`), a box given in the photo's
    own pixels. Raises ImageError naming `path`."""
    picture, full = load_photo(path, content=content, max_bytes=max_bytes, max_pixels=max_pixels)
    return convert(picture, None if box is None else scaled_box(box, full, picture.size, str(path)))


def convert(img: Image.Image, box: Box | None = None) -> Seen:
    """A photo (RGB, e.g. from `fmnist.predict.images.load_image`) -> what the model sees. Product shots, scans
    and 28x28 images without a box keep the dataset's exact steps; anything else is segmented first (and if no
    part of it stands apart from its background, the dataset's steps are all it gets)."""
    rgb = np.asarray(img.convert("RGB"))
    tiny = img.size[0] <= SIDE and img.size[1] <= SIDE
    if box is None and (tiny or is_plain(rgb)):
        return Seen(to_fashion_mnist(img))
    small, seed = _working_copy(img, box)
    mask = garment_mask(small, seed)
    if not mask.any():  # nothing stands apart from the background: the dataset's steps, whatever they make of it
        return Seen(to_fashion_mnist(img if box is None else img.crop(box)))
    gray = np.asarray(Image.fromarray(small).convert("L"))
    cutout = on_white(gray, edge_free(mask))
    return Seen(to_fashion_mnist(cutout), cutout)
