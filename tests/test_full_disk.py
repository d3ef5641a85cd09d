"""A disk that fills up during `fmnist train`: one line naming the file, exit 2, nothing half-written left.

A tmpfs of a few kB is a real full disk (ENOSPC) where this runs as root with mount allowed; elsewhere a file
size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so writes fail with EFBIG instead of killing the process) makes
the same writes fail the same way.
"""

import contextlib
import os
import resource
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # one short training in a subprocess


@contextlib.contextmanager
def small_disk(folder):
    """(where to write, preexec_fn for the subprocess): a 12 kB tmpfs, or a 4 kB file size limit."""
    folder.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield None if mounted else limit_file_size
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


def limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4_000, 4_000))


def test_full_disk_during_train_is_one_line_and_exit_2(tmp_path):
    with small_disk(tmp_path / "disk") as preexec:
        out = tmp_path / "disk" / "run"
        argv = ["train", "linear", "--subset", "1000", "--epochs", "1", "--out", str(out), "--no-progress"]
        done = subprocess.run(
            [sys.executable, "-m", "fmnist", *argv], capture_output=True, text=True, preexec_fn=preexec, timeout=300
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, done.stderr
        assert len(lines) == 1 and lines[0].startswith(f"fmnist: error: {out}/"), done.stderr
        assert "cannot write" in lines[0] and "Traceback" not in done.stderr
        left = sorted(p.name for p in out.rglob("*"))
        assert not [name for name in left if name.endswith(".tmp") or name.startswith("model.")], left
        assert "checkpoint.json" not in left
