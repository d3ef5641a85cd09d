"""Checkpoints any registry model can be trusted with: safetensors weights, a JSON manifest, atomic swaps.

Layout inside a run directory:
    checkpoint.json     kind, class names, the weights folder's name and the SHA-256 of every file in it
    model.<id>/         what the model's own `save(folder)` writes (safetensors + JSON, never pickle): the
                        weights and what inference needs with them (normalisation, hyper-parameters)

Metrics, versions and data checksums live in the run directory's own files (fmnist.rundir.layout), not here.

A save writes a fresh `model.<id>/` and only then replaces checkpoint.json (os.replace), so a kill at any
moment leaves the previous checkpoint whole. It then removes the previous folder, which a concurrent load may
have been reading: a load that fails while the manifest names another folder than the one it read starts again
on the new one, so a reader gets the old checkpoint or the new one, whole.

Loading trusts nothing it has not checked: the manifest against its schema; every listed path relative and
inside the run directory, with no symbolic link on the way; every file of the weights folder listed; the sizes
before any hashing; every checksum before any file is read. So a truncated, edited, added or borrowed file is
named in a one-line error instead of half-loading.
"""

import os
import re
import secrets
import shutil
import stat
from pathlib import Path, PurePosixPath

import numpy as np

from fmnist.data.dataset import CLASS_NAMES, SIDE
from fmnist.errors import UserError
from fmnist.files import Invalid, listing, mapping, read_versioned, sha256_of, shown, table, text, validated, write_json
from fmnist.models import registry, trust
from fmnist.models.contracts import Classifier

MANIFEST = "checkpoint.json"
FORMAT = "fmnist-checkpoint/2"  # 2: no copies of metrics or normalisation
MAX_MODEL_BYTES = 500_000_000  # all files of one model (the best hybrid's are ~3 MB); checked before hashing
MAX_MODEL_FILES = 1_000
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")  # one plain path component, never "." or ".."
DIGEST = re.compile(r"[0-9a-f]{64}")
SWAP_RETRIES = 5  # loads that find the checkpoint replaced under them before giving up


def _relative(value, field):
    """A relative path of plain components (checked again on disk for links)."""
    parts = value.split("/") if isinstance(value, str) else ()
    if not parts or not all(NAME.fullmatch(part) for part in parts):
        raise Invalid(field, f"is {shown(value)}, not a relative path of plain names inside the run directory")


def _folder_name(value, field):
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise Invalid(field, f"is {shown(value)}, not the name of a folder in the run directory")


def _digest(value, field):
    if not isinstance(value, str) or not DIGEST.fullmatch(value):
        raise Invalid(field, "is not a SHA-256 in hex")


def _names(value, field):
    if value != list(CLASS_NAMES):
        raise Invalid(field, "are not Fashion-MNIST's ten class names in order")


SCHEMA = mapping(
    {
        "kind": text(tuple(registry.REGISTRY)),
        "weights": _folder_name,
        "files": table(_relative, _digest, high=MAX_MODEL_FILES),
        "class_names": listing(text(), high=100),
    }
)


def save(run_dir, kind, model: Classifier):
    """Write `model` (registry name `kind`) into run_dir as a new checkpoint; return the manifest."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    folder_name = f"model.{secrets.token_hex(4)}"
    try:
        model.save(run_dir / folder_name)
        trust.save(model, run_dir / folder_name)  # the temperature and unknown rule, under the same checksums
    except BaseException:  # a full disk, a kill: no folder left that no manifest names
        shutil.rmtree(run_dir / folder_name, ignore_errors=True)
        raise
    files = sorted(p for p in (run_dir / folder_name).rglob("*") if p.is_file())
    manifest = {
        "format": FORMAT,
        "kind": kind,
        "weights": folder_name,
        "files": {str(p.relative_to(run_dir)): sha256_of(p) for p in files},
        "class_names": list(CLASS_NAMES),
    }
    previous = _read_manifest(run_dir) if (run_dir / MANIFEST).exists() else None
    write_json(run_dir / MANIFEST, manifest)
    if previous and previous.get("weights") != folder_name:
        shutil.rmtree(run_dir / previous["weights"], ignore_errors=True)
    return manifest


def _read_manifest(run_dir):
    path = run_dir / MANIFEST
    if not path.is_file():
        raise UserError(f"{run_dir}: not a model (no {MANIFEST}; give a run directory written by fmnist)")
    if path.is_symlink():
        raise UserError(f"{path}: a symbolic link; a run directory's files must be its own")
    manifest = validated(path, read_versioned(path, "format", FORMAT), SCHEMA)
    validated(path, manifest["class_names"], lambda value, _: _names(value, "class_names"))
    if not manifest["files"]:
        raise UserError(f"{path}: lists no weight files")
    return manifest


def _own_file(run_dir, name):
    """run_dir/name, stat'ed without following links at every step; UserError unless all is plain."""
    current = run_dir
    for part in PurePosixPath(name).parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            raise UserError(f"{current}: missing from the checkpoint") from None
        if stat.S_ISLNK(mode):
            raise UserError(f"{current}: a symbolic link in the checkpoint; a run directory's files must be its own")
    if not stat.S_ISREG(mode):
        raise UserError(f"{current}: not a regular file")
    return current, os.lstat(current).st_size


def _folder_files(run_dir, folder):
    """Every entry under the weights folder, as paths relative to run_dir; links and odd files refused."""
    found = set()
    for root, dirs, names in os.walk(folder):
        for entry in [*dirs, *names]:
            mode = os.lstat(Path(root) / entry).st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise UserError(f"{Path(root) / entry}: not a plain file or folder; a checkpoint holds no links")
        found.update((Path(root) / name).relative_to(run_dir).as_posix() for name in names)
        if len(found) > MAX_MODEL_FILES:
            raise UserError(f"{folder}: more than {MAX_MODEL_FILES} files, not a model folder")
    return found


def verify(run_dir, manifest):
    """Check the files of a manifest on disk: plain, all listed, within the size limit, then their checksums."""
    weights = run_dir / manifest["weights"]
    if weights.is_symlink() or not weights.is_dir():
        raise UserError(f"{weights}: the weights folder {MANIFEST} names is missing, a link or not a folder")
    unlisted = sorted(_folder_files(run_dir, weights) - set(manifest["files"]))
    if unlisted:
        raise UserError(f"{run_dir / unlisted[0]}: in the weights folder but not in {MANIFEST} (added or edited)")
    sizes = {name: _own_file(run_dir, name) for name in manifest["files"]}
    total = sum(size for _, size in sizes.values())
    if total > MAX_MODEL_BYTES:
        raise UserError(f"{run_dir / MANIFEST}: lists {total:,} bytes, more than {MAX_MODEL_BYTES:,} for a model")
    for name, (file, _) in sizes.items():
        if sha256_of(file) != manifest["files"][name]:
            raise UserError(f"{file}: checksum differs from {MANIFEST} (truncated or edited)")


def model_dirs(path):
    """The model folders `path` holds: [path] for one model's run directory, the sub-folders with a checkpoint for
    a compare run (sorted), [] for anything else."""
    path = Path(path)
    if (path / MANIFEST).exists():
        return [path]
    inner = sorted(p.parent for p in path.glob(f"*/{MANIFEST}")) if path.is_dir() else []
    for folder in inner:
        if folder.is_symlink():
            raise UserError(f"{folder}: a symbolic link; a compare run's model folders must be its own")
    return inner


def models_of(run_dir):
    """The model folders of a run, as serve and export take them: a single-model run directory -> [it]; a compare
    run -> its model folders (sorted); anything else a one-line UserError naming what is wrong."""
    return model_dirs(run_dir) or [resolve(run_dir)]


def resolve(path):
    """A run directory, its checkpoint.json, or a compare run holding exactly one model -> the run directory."""
    path = Path(path)
    if path.is_file() and path.name == MANIFEST:
        return path.parent
    if not path.exists():
        raise UserError(f"{path}: no such model (give a run directory written by fmnist train or compare)")
    if path.is_dir() and not (path / MANIFEST).exists():
        inner = model_dirs(path)
        if len(inner) == 1:
            return inner[0]
        if inner:
            names = ", ".join(p.name for p in inner)
            raise UserError(f"{path}: holds several models ({names}); name one, e.g. {inner[0]}")
    return path


def load(path, calibrated=False):
    """Verify and load the model in a run directory; return (model, manifest).

    calibrated: refuse a model without a temperature, unknown rule and prediction sets (a run of an older fmnist),
    naming the command that adds them (what predict, serve and the API ask for)."""
    run_dir = resolve(path)
    for _ in range(SWAP_RETRIES):
        manifest = _read_manifest(run_dir)
        try:
            verify(run_dir, manifest)
            model = registry.spec(manifest["kind"]).load_class().load(run_dir / manifest["weights"])
            calibration = trust.load(model, run_dir / manifest["weights"])
            if calibration is None and not (run_dir / manifest["weights"]).is_dir():  # removed, not uncalibrated
                raise FileNotFoundError(run_dir / manifest["weights"])
            break
        except (UserError, OSError):
            # A save swapped the manifest and removed the folder this one named while it was read: read the new.
            if _read_manifest(run_dir)["weights"] == manifest["weights"]:
                raise
    else:
        raise UserError(f"{run_dir}: rewritten {SWAP_RETRIES} times while loading; try again when training ends")
    try:  # a model whose parts do not fit together, or whose weights overflow, is refused now, not per request
        with np.errstate(all="ignore"):  # an overflow is reported below, as one line
            probe = model.predict_logits(np.zeros((1, SIDE, SIDE), np.uint8))
    except UserError:  # a model of feature arrays, which says so itself when given images
        probe = None
    except (ValueError, RuntimeError, TypeError, IndexError) as exc:
        raise UserError(f"{run_dir / manifest['weights']}: the model loads but cannot run ({exc})") from None
    if probe is not None and not np.isfinite(probe).all():
        raise UserError(f"{run_dir / manifest['weights']}: the model's outputs are not finite numbers")
    if calibrated and calibration is None:
        raise UserError(f"{run_dir}: not calibrated (made by an older fmnist); run `fmnist evaluate {path}` once")
    if calibrated and "sets" not in calibration:
        raise UserError(f"{run_dir}: no prediction sets (made by an older fmnist); run `fmnist evaluate {path}` once")
    return model, manifest
