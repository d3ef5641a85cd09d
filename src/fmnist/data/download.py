"""`fmnist data download`: fetch the four files from the official mirror, verified, atomically."""

import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from fmnist.data.dataset import FILES, SHA256, read_idx, user_cache_dir
from fmnist.errors import UserError
from fmnist.files import atomic_path

MIRRORS = (
    "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)


def _fetch(url, dest, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, leave=False) as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                bar.update(len(chunk))


def download(folder, mirrors=MIRRORS, timeout=30.0):
    """Download any of the four files missing from `folder`; verify each before it gets its final name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for role, (name, magic, _) in FILES.items():
        final = folder / f"{name}.gz"
        if final.exists():
            continue
        errors = []
        for mirror in mirrors:
            try:
                with atomic_path(final) as tmp:
                    _fetch(mirror + f"{name}.gz", tmp, timeout)
                    _, digest = read_idx(tmp, magic)
                    if digest != SHA256[role]:
                        raise UserError(f"{mirror}{name}.gz: checksum mismatch")
                break
            except (OSError, urllib.error.URLError, UserError) as exc:
                errors.append(f"{mirror}: {getattr(exc, 'reason', exc)}")
        else:
            raise UserError(f"{final}: download failed ({'; '.join(str(e) for e in errors)})")
    return folder


def default_folder(environ=None):
    return user_cache_dir(os.environ if environ is None else environ)
