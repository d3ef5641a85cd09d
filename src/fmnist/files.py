"""Files: atomic writes (a file appears complete under its final name, or not at all), JSON, checksums."""

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from fmnist.errors import UserError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success move it into place with `os.replace`.

    A crash or exception leaves any previous file at `path` untouched and removes the temporary one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; a result should be as readable as any file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path, missing="file not found"):
    """Parse a JSON file; a missing or unreadable one is a UserError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"{path}: {missing}") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: unreadable JSON ({exc})") from exc


def sha256_of(path):
    """The SHA-256 of a file's bytes, as hex."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
