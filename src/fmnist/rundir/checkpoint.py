"""Checkpoints any registry model can be trusted with: safetensors weights, a JSON manifest, atomic swaps.

Layout inside a run directory:
    checkpoint.json     kind, class names, the weights folder's name and the SHA-256 of every file in it
    model.<id>/         what the model's own `save(folder)` writes (safetensors + JSON, never pickle): the
                        weights and what inference needs with them (normalisation, hyper-parameters)

Metrics, versions and data checksums live in the run directory's own files (fmnist.rundir.layout), not here.

A save writes a fresh `model.<id>/` and only then replaces checkpoint.json (os.replace), so a kill at any
moment leaves the previous checkpoint whole. Loading checks every file's checksum before reading it, so a
truncated or edited file is named in a one-line error instead of half-loading.
"""

import secrets
import shutil
from pathlib import Path

from fmnist.data.dataset import CLASS_NAMES
from fmnist.errors import UserError
from fmnist.files import read_json, sha256_of, write_json
from fmnist.models import registry, trust

MANIFEST = "checkpoint.json"
FORMAT = "fmnist-checkpoint/2"  # 2: no copies of metrics or normalisation


def save(run_dir, kind, model):
    """Write `model` (registry name `kind`) into run_dir as a new checkpoint; return the manifest."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    folder_name = f"model.{secrets.token_hex(4)}"
    model.save(run_dir / folder_name)
    trust.save(model, run_dir / folder_name)  # the temperature and unknown rule, under the same checksums
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
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise UserError(f"{path}: format {found!r}, this fmnist reads {FORMAT} (retrain the model)")
    return manifest


def model_dirs(path):
    """The model folders `path` holds: [path] for one model's run directory, the sub-folders with a checkpoint for
    a compare run (sorted), [] for anything else."""
    path = Path(path)
    if (path / MANIFEST).exists():
        return [path]
    return sorted(p.parent for p in path.glob(f"*/{MANIFEST}")) if path.is_dir() else []


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

    calibrated: refuse a model without a temperature and unknown rule (a run of an older fmnist), naming the
    command that adds them (what predict, serve and the API ask for)."""
    run_dir = resolve(path)
    manifest = _read_manifest(run_dir)
    kind = manifest.get("kind")
    if kind not in registry.REGISTRY:
        raise UserError(
            f"{run_dir / MANIFEST}: unknown model kind {kind!r} (this version knows {', '.join(registry.REGISTRY)})"
        )
    for name, expected in (manifest.get("files") or {}).items():
        file = run_dir / name
        if not file.is_file():
            raise UserError(f"{file}: missing from the checkpoint")
        if sha256_of(file) != expected:
            raise UserError(f"{file}: checksum differs from {MANIFEST} (truncated or edited)")
    if not manifest.get("files"):
        raise UserError(f"{run_dir / MANIFEST}: lists no weight files")
    model = registry.spec(kind).load_class().load(run_dir / manifest["weights"])
    if trust.load(model, run_dir / manifest["weights"]) is None and calibrated:
        raise UserError(f"{run_dir}: not calibrated (made by an older fmnist); run `fmnist evaluate {path}` once")
    return model, manifest
