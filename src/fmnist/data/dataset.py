"""Find, verify, parse and split the Fashion-MNIST IDX files.

Every file is checked before use: IDX structure, exact payload size, label range, and the SHA-256 of the
*decompressed* bytes against the official dataset (Debian recompresses the `.gz` files, so their own
checksums differ). NumPy only: importing this module never imports torch.
"""

import dataclasses
import hashlib
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from fmnist.errors import UserError

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
SIDE = 28

# role -> (file name without .gz, IDX magic, number of items)
FILES = {
    "train_images": ("train-images-idx3-ubyte", 2051, 60_000),
    "train_labels": ("train-labels-idx1-ubyte", 2049, 60_000),
    "test_images": ("t10k-images-idx3-ubyte", 2051, 10_000),
    "test_labels": ("t10k-labels-idx1-ubyte", 2049, 10_000),
}
# SHA-256 of the decompressed official files (zalandoresearch/fashion-mnist, data/fashion/*.gz).
SHA256 = {
    "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
MAX_ITEMS = 60_000  # the largest legitimate file; a larger header count is refused before reading on
GZIP_MAGIC = b"\x1f\x8b"
# Deflate stores incompressible data with ~5 bytes per 32 kB block: a gzip file is never this much larger than
# what it holds, so reading `limit` + this bounds memory without cutting off a valid file.
MAX_GZIP_OVERHEAD = 1_000_000


def header_size(magic):
    return 16 if magic == 2051 else 8


def item_size(magic):
    return SIDE * SIDE if magic == 2051 else 1


def user_cache_dir(environ):
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fmnist"


def candidate_dirs(data_dir, environ):
    """The folders searched, in order: --data-dir, $FMNIST_DATA_DIR, the system copy, the user cache."""
    chosen = data_dir or environ.get("FMNIST_DATA_DIR")
    if chosen:
        return [Path(chosen)]
    return [SYSTEM_DIR, user_cache_dir(environ)]


def _file_in(folder):
    """Map role -> existing path inside `folder` (plain, .gz, or torchvision's FashionMNIST/raw/)."""
    found = {}
    for role, (name, _, _) in FILES.items():
        for sub in (folder, folder / "FashionMNIST" / "raw"):
            for candidate in (sub / f"{name}.gz", sub / name):
                if os.path.lexists(candidate):
                    found[role] = candidate
                    break
            if role in found:
                break
    return found


def find(data_dir=None, environ=None):
    """Return {role: path} for the four files, from the first folder that holds any of them.

    With an explicit folder (--data-dir or $FMNIST_DATA_DIR) a missing file is an error naming it; otherwise
    the error says how to provide the data.
    """
    environ = os.environ if environ is None else environ
    folders = candidate_dirs(data_dir, environ)
    for folder in folders:
        found = _file_in(folder)
        if found:
            missing = [FILES[r][0] for r in FILES if r not in found]
            if missing:
                raise UserError(
                    f"{folder / (missing[0] + '.gz')}: file not found (the folder has only some of the four files)"
                )
            return found
    if data_dir or environ.get("FMNIST_DATA_DIR"):
        raise UserError(f"{folders[0] / (FILES['train_images'][0] + '.gz')}: file not found")
    raise UserError(
        "Fashion-MNIST not found in "
        + ", ".join(str(f) for f in folders)
        + ": install the Debian package dataset-fashion-mnist, run `fmnist data download`, or pass --data-dir"
    )


def _read_regular(path, limit):
    """At most `limit` bytes of a regular file (a link is followed to one). A FIFO would block the open and a
    device such as /dev/zero never ends, so anything else is refused before it is opened."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UserError(f"{path}: not a regular file (a FIFO, device or socket), expected an IDX file")
        with open(path, "rb") as fh:
            return fh.read(limit)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found (a broken link)") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from exc


def _read_bytes(path, limit):
    """Return the decompressed bytes of `path` (gzip or raw), reading at most `limit` of them."""
    if not os.path.lexists(path):
        raise UserError(f"{path}: file not found")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, expected an IDX file")
    raw = _read_regular(path, limit + MAX_GZIP_OVERHEAD)
    if not raw:
        raise UserError(f"{path}: empty file")
    if not raw.startswith(GZIP_MAGIC):
        if str(path).endswith(".gz"):
            raise UserError(f"{path}: not a gzip file (starts with {raw[:16]!r})")
        return raw[:limit]
    out = []
    size = 0
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        # max_length bounds memory: a file that inflates past `limit` is cut off, then refused by size.
        out.append(stream.decompress(raw, limit))
        size = len(out[0])
        while size < limit and stream.unconsumed_tail:
            chunk = stream.decompress(stream.unconsumed_tail, limit - size)
            out.append(chunk)
            size += len(chunk)
        if size < limit and not stream.eof:
            raise UserError(f"{path}: truncated gzip file (stream ends early)")
    except zlib.error as exc:
        raise UserError(f"{path}: corrupt gzip data ({exc})") from exc
    return b"".join(out)


def read_idx(path, magic, max_items=MAX_ITEMS):
    """Parse and check one IDX file; return (array, sha256 of the decompressed bytes).

    Images come back as uint8 (N, 28, 28), labels as uint8 (N,).
    """
    kind = "images" if magic == 2051 else "labels"
    hsize, isize = header_size(magic), item_size(magic)
    limit = hsize + max_items * isize + 1  # one byte more than any valid file, to see trailing bytes
    data = _read_bytes(path, limit)
    if len(data) < hsize:
        raise UserError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    found_magic, count = struct.unpack(">II", data[:8])
    if found_magic != magic:
        other = {2051: "an images file", 2049: "a labels file"}.get(found_magic, "not an IDX file")
        raise UserError(f"{path}: IDX magic {found_magic} ({other}), expected {magic} for {kind}")
    if count > max_items:
        raise UserError(f"{path}: header declares {count} {kind}, more than the {max_items} of any Fashion-MNIST file")
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        if (rows, cols) != (SIDE, SIDE):
            raise UserError(f"{path}: images are {rows}x{cols}, expected {SIDE}x{SIDE}")
    expected = hsize + count * isize
    if len(data) < expected:
        raise UserError(f"{path}: header declares {count} {kind} but the payload holds only {len(data) - hsize} bytes")
    if len(data) > expected:
        raise UserError(f"{path}: trailing bytes after the {count} {kind} the header declares")
    digest = hashlib.sha256(data).hexdigest()
    array = np.frombuffer(data, dtype=np.uint8, offset=hsize)
    if magic == 2051:
        array = array.reshape(count, SIDE, SIDE)
    elif count and array.max() >= NUM_CLASSES:
        bad = int(np.argmax(array >= NUM_CLASSES))
        raise UserError(f"{path}: label {array[bad]} at index {bad} is outside 0-9")
    return array, digest


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The four arrays, where they came from, and whether they are the official bytes."""

    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8
    paths: dict
    sha256: dict
    verified: bool

    def provenance(self):
        """What a run records about its data: paths, checksums, and whether they were verified."""
        return {
            "paths": {r: str(p) for r, p in self.paths.items()},
            "sha256": dict(self.sha256),
            "verified": self.verified,
        }


def load(data_dir=None, allow_unverified=False, environ=None):
    """Find, verify and parse the four files. Unknown checksums are refused unless `allow_unverified`."""
    paths = find(data_dir, environ)
    arrays, digests = {}, {}
    for role, (_, magic, _) in FILES.items():
        arrays[role], digests[role] = read_idx(paths[role], magic)
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise UserError(
                f"{paths[f'{split}_labels']}: {n_lab} labels for the {n_img} images of {paths[f'{split}_images']}"
            )
    mismatched = [r for r in FILES if digests[r] != SHA256[r]]
    if mismatched and not allow_unverified:
        role = mismatched[0]
        raise UserError(
            f"{paths[role]}: SHA-256 {digests[role][:16]}... is not the official Fashion-MNIST file "
            "(MNIST or KMNIST have the same format); pass --allow-unverified to use it anyway"
        )
    return Dataset(**arrays, paths=paths, sha256=digests, verified=not mismatched)


def stratified_split(labels, seed, val_fraction=0.2):
    """Seeded, stratified train/validation indices: (train_idx, val_idx), each sorted.

    Each class gives round(val_fraction * class size) items to validation, so 60,000 balanced labels give
    48,000 / 12,000 with 1,200 validation items per class.
    """
    rng = np.random.default_rng(seed)
    val = []
    for c in range(NUM_CLASSES):
        members = np.flatnonzero(labels == c)
        take = round(val_fraction * len(members))
        val.append(rng.permutation(members)[:take])
    val_idx = np.sort(np.concatenate(val))
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


@dataclasses.dataclass(frozen=True)
class Splits:
    """uint8 images (N, 28, 28) and int64 labels (N,) per split, plus train-only pixel statistics."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: float  # of train pixels scaled to [0, 1]
    std: float
    seed: int

    def subset(self, n_train, n_val, n_test):
        """The first items of each split (already shuffled by class), for quick runs and tests."""
        return dataclasses.replace(
            self,
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            x_val=self.x_val[:n_val],
            y_val=self.y_val[:n_val],
            x_test=self.x_test[:n_test],
            y_test=self.y_test[:n_test],
        )

    def quick(self, n_train):
        """The `--subset N` rule, shared by training and re-evaluation: N train, N/4 (at least 10) val and test."""
        if n_train < 10:
            raise UserError(f"--subset {n_train}: need at least 10 images")
        quarter = max(n_train // 4, 10)
        return self.subset(n_train, quarter, quarter)


STATS_SLICE = 1 << 20  # pixels per bincount in pixel_stats


def pixel_stats(images):
    """Mean and standard deviation of uint8 images scaled to [0, 1], in float64.

    From the histogram of the 256 pixel values: exact counts (the float32 pass it replaces was 5e-9 off in the
    deviation), which every run's split pays. Counted a million pixels at a time: bincount widens its input to
    int64, and all 37.6 M training pixels at once would be 300 MB of fresh pages (bench/NOTES.md, "The suite's
    time")."""
    flat = np.asarray(images, dtype=np.uint8).ravel()
    slices = (np.bincount(flat[i : i + STATS_SLICE], minlength=256) for i in range(0, flat.size, STATS_SLICE))
    counts = sum(slices, np.zeros(256, np.int64)).astype(np.float64)
    values = np.arange(256) / 255.0
    mean = float(counts @ values / counts.sum())
    var = float(counts @ (values - mean) ** 2 / counts.sum())
    return mean, float(np.sqrt(var))


def split_positions(labels, seed, val_fraction=0.2):
    """(train, validation) positions in the training IDX file, in the order `split` puts the images."""
    train_idx, val_idx = stratified_split(labels, seed, val_fraction)
    # A seeded order within train so that `subset` takes a class-mixed sample.
    train_idx = np.random.default_rng([seed, 1]).permutation(train_idx)
    return train_idx, np.random.default_rng([seed, 2]).permutation(val_idx)


def split(dataset, seed, val_fraction=0.2):
    """Split the 60,000 training images into train / validation; the test set is kept whole."""
    train_idx, val_idx = split_positions(dataset.train_labels, seed, val_fraction)
    x_train = dataset.train_images[train_idx]
    mean, std = pixel_stats(x_train)
    return Splits(
        x_train=x_train,
        y_train=dataset.train_labels[train_idx].astype(np.int64),
        x_val=dataset.train_images[val_idx],
        y_val=dataset.train_labels[val_idx].astype(np.int64),
        x_test=dataset.test_images,
        y_test=dataset.test_labels.astype(np.int64),
        mean=mean,
        std=std,
        seed=seed,
    )


def normalise_flat(images, mean, std):
    """uint8 (N, 28, 28) -> float32 (N, 784), standardised with the train statistics."""
    x = images.reshape(len(images), -1).astype(np.float32)
    return (x * np.float32(1 / 255.0) - np.float32(mean)) / np.float32(std)


def class_counts(labels):
    return np.bincount(labels, minlength=NUM_CLASSES)
