"""The README's commands, run as a new user would after `make run`: each exits 0, on a small subset.

Every command line of the README's `sh` blocks is accounted for: `make run` is the Makefile's `fmnist compare
--out runs/latest`, which the shared `serve_run` fixture ran on a subset (so `runs/latest` here is that run);
training commands get `--subset` and `--epochs 1` (and a compare two quick models) appended; `fmnist serve` is
started on a free port and must answer; `make test` is this suite.
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from serve_helpers import product_photo, running_server

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"train": ["--subset", "1000", "--epochs", "1"]}
QUICK["compare"] = [*QUICK["train"], "--models", "linear,scratch-mlp", "--no-report", "--no-progress"]
NOT_RUN_HERE = {"make test"}  # this very suite


def readme_commands():
    """Every command line of the README's sh blocks, comments dropped, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M) for line in block.splitlines()]
    return [line.split("  #")[0].strip() for line in lines if line.strip()]


def test_the_readme_names_its_commands():
    commands = readme_commands()
    assert commands[:2] == ["make run", "make test"]
    assert any(" predict " in f" {c} " for c in commands) and any(" serve " in f" {c} " for c in commands)


def test_make_run_is_a_compare_into_runs_latest():
    recipe = re.search(r"^run:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert recipe == "$(FMNIST) compare --out $(OUT)"
    assert re.search(r"^OUT \?= runs/latest$", (ROOT / "Makefile").read_text(), re.M)


@pytest.mark.slow
def test_every_readme_command_exits_0(serve_run, serve_items, tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest").symlink_to(serve_run)  # what `make run` wrote (on a subset)
    images, _ = serve_items
    product_photo(images[0]).save(tmp_path / "my-photo.jpg")
    ran = []
    for line in readme_commands():
        if line in NOT_RUN_HERE or line == "make run":
            continue
        words = shlex.split(line)
        assert words[0] == ".venv/bin/fmnist", line
        argv = [sys.executable, "-m", "fmnist", *words[1:], *QUICK.get(words[1], [])]
        if words[1] == "serve":
            assert words[2:] == ["runs/latest"], line
            with running_server(tmp_path / "runs" / "latest", tmp_path / "serve.log") as url:
                assert httpx.get(f"{url}/models", timeout=30).status_code == 200
        else:
            done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{line}: {done.stderr[-2000:]}"
        ran.append(words[1])
    assert sorted(ran) == ["compare", "predict", "serve", "train"]
    assert (tmp_path / "runs" / "scratch" / "MODEL_CARD.md").is_file()  # fmnist train writes its model's card
