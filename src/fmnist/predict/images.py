"""People's own image files -> 28x28 the way Fashion-MNIST was made from product photos.

The dataset's README describes how each product photo became a 28x28 image: trim edges close to the corner
colour, resize the longest edge to 28, sharpen, extend the short edge to 28 centred, negate, 8-bit grayscale.
`to_fashion_mnist` repeats those steps; an image that is already light-on-dark is not negated, and a 28x28
image is taken as it is (only negated if dark-on-light), so dataset images pass through bit-exact.

Every bad input becomes an `ImageError` naming its file; `fmnist.predict.answers.predict_files` collects them and
goes on.

Hostile files meet limits before any decoding: the byte count, a whitelist of formats (Pillow never even tries
PSD, EPS or the like), the pixel count from the header, and for an ICO the size of every image inside it (Pillow
decodes the largest during `Image.open`). HEIC/HEIF (pillow-heif) and AVIF (Pillow) parse only their container
in `Image.open`, so the header's size is checked before their pixels are decoded. Float pixels must be finite.
An `ImageError` keeps nothing of the image: `detached` drops its traceback, whose frames would hold the decoded
pixels until a cycle collection.
"""

import functools
import io
import os
import struct
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from fmnist.data.dataset import SIDE
from fmnist.errors import UserError

MAX_BYTES = 50_000_000  # checked with stat before reading
MAX_PIXELS = 40_000_000  # checked on the header's size before decoding (a 40 MP RGBA image is 160 MB)
WORK_SIDE = 1024  # larger images are reduced on loading: the result is 28 pixels anyway
TRIM_TOLERANCE = 0.05  # of the largest RGB distance: the README's "close to the corner colour"
SHARPEN = ImageFilter.UnsharpMask(radius=1.0, percent=100, threshold=0)  # the README's Gaussian, radius 1
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# Pillow's names of the formats accepted (JPEG includes the MPO of many phone cameras; HEIF, iPhones' HEIC, comes
# from pillow-heif, AVIF from Pillow itself since 11.2); nothing else is tried.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO", "HEIF", "AVIF")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

ExcT = TypeVar("ExcT", bound=BaseException)


class ImageError(UserError):
    """One input that cannot be used. str() is the one-line message; `file` and `reason` are its parts."""

    def __init__(self, file: str | Path, reason: str) -> None:
        self.file = shown(file)
        self.reason = reason
        super().__init__(f"{self.file}: {reason}")


def shown(path: str | Path) -> str:
    """A path as one printable line: undecodable bytes and control characters are escaped."""
    name = str(path)
    return name if name.isprintable() else ascii(name)[1:-1]


@functools.cache
def _register_plugins():
    """pillow-heif's HEIF opener, once, on first use (never at import). Its `Image.open` reads the header only;
    the pixels are decoded by `load`, after the pixel limit has been checked."""
    try:
        import pillow_heif
    except ImportError:  # HEIC is then "not an image file Pillow can read", like any format not installed
        return
    pillow_heif.register_heif_opener(thumbnails=False)


def image_extensions() -> set[str]:
    """The file name endings Pillow can open, lower case with the dot: {'.png', '.jpg', '.heic', ...}."""
    Image.init()
    _register_plugins()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in FORMATS and fmt in Image.OPEN}


def detached(exc: ExcT) -> ExcT:
    """`exc` without its traceback, cause and context: nothing that refers to a decoded image stays alive."""
    exc.__traceback__ = exc.__context__ = exc.__cause__ = None
    return exc


def collect_inputs(paths: Iterable[str | Path]) -> tuple[list[Path], list[ImageError]]:
    """Expand the user's arguments into image files: (list of Path, list of ImageError).

    A file is taken whatever its name; a folder gives its image files by extension (sorted, not recursive,
    hidden files skipped). A missing path or a folder without images is an error. Duplicates are dropped.
    """
    extensions = image_extensions()
    files, failures, seen = [], [], set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                found = sorted(
                    (p for p in path.iterdir() if p.suffix.lower() in extensions and not p.name.startswith(".")),
                    key=lambda p: p.name,
                )
            except OSError as exc:
                failures.append(ImageError(path, f"cannot list folder ({exc.strerror})"))
                continue
            found = [p for p in found if p.is_file()]
            if not found:
                failures.append(ImageError(path, "folder holds no image files"))
        elif os.path.lexists(path):
            found = [path]
        else:
            failures.append(ImageError(path, "file not found"))
            continue
        for p in found:
            if p not in seen:
                seen.add(p)
                files.append(p)
    return files, failures


def _check_file(path, max_bytes):
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read ({exc.strerror})") from None
    if path.is_dir():
        raise ImageError(path, "is a folder, expected an image file")
    _check_size(path, size, max_bytes)


def _check_size(path, size, max_bytes):
    if size == 0:
        raise ImageError(path, "empty file")
    if size > max_bytes:
        raise ImageError(path, f"{size / 1e6:.1f} MB is over the {max_bytes / 1e6:g} MB limit for an image")


def _check_ico(path, content, max_pixels):
    """The images inside an ICO, from their headers: Pillow decodes the largest while opening the file."""
    count = struct.unpack_from("<H", content, 4)[0] if len(content) >= 6 else 0
    if not 0 < count <= 256 or len(content) < 6 + 16 * count:
        raise ImageError(path, "not an ICO file Pillow can read (bad directory)")
    for i in range(count):
        offset = struct.unpack_from("<I", content, 6 + 16 * i + 12)[0]
        head = content[offset : offset + 24]
        if head[:8] == PNG_SIGNATURE and len(head) == 24:
            width, height = struct.unpack_from(">II", head, 16)
        elif len(head) >= 12:  # a BMP's DIB header: width, then twice the height (image and mask)
            width, height = (abs(v) for v in struct.unpack_from("<ii", head, 4))
        else:
            raise ImageError(path, "not an ICO file Pillow can read (an image lies outside the file)")
        if width * height > max_pixels:
            raise ImageError(path, f"holds a {width}x{height} image, over the limit of {max_pixels:,} pixels")


def _to_8bit(path, img):
    """16-bit and 32-bit grayscale -> mode L, scaled by its range (never clipped); NaN or infinity refused."""
    if not img.mode.startswith("I;16") and img.mode not in ("I", "F"):
        return img
    values = np.asarray(img, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ImageError(path, "holds NaN or infinite pixel values")
    # 32-bit modes have no range of their own in practice (they hold 16-bit data or floats): use the data's.
    low, high = (0.0, 65535.0) if img.mode.startswith("I;16") else (float(values.min()), float(values.max()))
    scaled = (values - low) * (255.0 / max(high - low, 1e-12))
    return Image.fromarray(np.rint(np.clip(scaled, 0, 255)).astype(np.uint8), "L")


def load_image(
    path: str | Path,
    *,
    content: bytes | None = None,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    work_side: int = WORK_SIDE,
) -> Image.Image:
    """`load_photo`'s picture alone."""
    return load_photo(path, content=content, max_bytes=max_bytes, max_pixels=max_pixels, work_side=work_side)[0]


def load_photo(
    path: str | Path,
    *,
    content: bytes | None = None,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    work_side: int = WORK_SIDE,
) -> tuple[Image.Image, tuple[int, int]]:
    """(picture, the upright photo's full (width, height), which a person's box refers to). The picture: the
    first frame of any image Pillow reads, as 8-bit RGB, upright by its EXIF orientation, transparency
    on white, reduced to at most `work_side` pixels on the longest edge. Raises ImageError naming `path`.
    `content`: the image's bytes, already in memory (an upload); `path` then only names it in errors.

    Memory stays bounded: the file size is checked before reading, the format and the pixel count before
    decoding (see the module's notes). Pillow's decompression-bomb warning counts as an error here (only inside
    this call); its other warnings are not shown (the error, if any, says what is wrong).
    """
    path = Path(path)
    if content is None:
        _check_file(path, max_bytes)
        try:
            with open(path, "rb") as fh:  # the bytes checked are the bytes decoded
                content = fh.read(max_bytes + 1)
        except OSError as exc:
            raise ImageError(path, f"cannot read ({exc.strerror})") from None
    _check_size(path, len(content), max_bytes)
    if content[:4] == b"\x00\x00\x01\x00":  # the ICO signature
        _check_ico(path, content, max_pixels)
    _register_plugins()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's other warnings (truncated EXIF, odd ICO sizes) are noise here
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(content), formats=FORMATS) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(path, f"{width}x{height} pixels is over the limit of {max_pixels:,}")
                img.draft(None, (work_side, work_side))  # JPEG: decode at a reduced scale, much faster
                img.load()
                loaded = img.size
                ImageOps.exif_transpose(img, in_place=True)
                turned = img.size != loaded  # a quarter turn by the EXIF orientation
                upright = (height, width) if turned else (width, height)
                picture = _to_8bit(path, img)
                # Palettes and bilevel images are converted first: resizing them would fall back to nearest.
                mode = "RGBA" if picture.mode in ALPHA_MODES or "transparency" in picture.info else "RGB"
                if picture.mode != mode:
                    picture = picture.convert(mode)
                picture.thumbnail((work_side, work_side), Image.Resampling.BOX)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(path, f"refused as a possible decompression bomb ({exc})") from None
        except UnidentifiedImageError:
            raise ImageError(path, "not an image file Pillow can read") from None  # or not of the FORMATS
        except Exception as exc:  # Pillow's decoders raise many types on malformed data
            raise ImageError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from None
    if picture.mode != "RGB":
        picture = Image.alpha_composite(Image.new("RGBA", picture.size, "white"), picture).convert("RGB")
    return picture, upright


def _corners(array):
    """The four corner pixels of an (H, W) or (H, W, C) array, as (4,) or (4, C)."""
    return array[[0, 0, -1, -1], [0, -1, 0, -1]]


def to_fashion_mnist(img: Image.Image) -> np.ndarray:
    """A Pillow image (any mode, e.g. from `load_image`) -> uint8 (28, 28), light object on black.

    The background colour is the median of the four corners; if it is light the object is dark-on-light and
    gets negated. Trimming removes rows and columns whose every pixel is within TRIM_TOLERANCE of it; after
    negation the background level is mapped to 0 (a no-op for the white backgrounds of product photos).
    """
    rgb = np.asarray(img.convert("RGB"))
    gray = np.asarray(img.convert("L"))
    background_gray = int(np.median(_corners(gray)))
    light_background = background_gray > 127
    if img.size == (SIDE, SIDE):
        return 255 - gray if light_background else gray.copy()
    distance = np.sqrt(((rgb - np.median(_corners(rgb), axis=0)) ** 2).sum(axis=-1)) / (255 * np.sqrt(3))
    rows = np.flatnonzero((distance > TRIM_TOLERANCE).any(axis=1))
    cols = np.flatnonzero((distance > TRIM_TOLERANCE).any(axis=0))
    if rows.size:
        gray = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = gray.shape
    scale = SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = Image.fromarray(gray).resize(size, Image.Resampling.BOX).filter(SHARPEN)
    canvas = Image.new("L", (SIDE, SIDE), background_gray)
    # An odd margin puts its extra pixel above / left, as measured on the dataset's own images.
    canvas.paste(small, ((SIDE - size[0] + 1) // 2, (SIDE - size[1] + 1) // 2))
    out = np.asarray(canvas, dtype=np.float64)
    if light_background:
        out, background_gray = 255 - out, 255 - background_gray
    out = (out - background_gray) * (255 / (255 - background_gray))
    return np.rint(np.clip(out, 0, 255)).astype(np.uint8)
