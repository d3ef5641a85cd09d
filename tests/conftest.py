"""Fixtures shared by the test modules: the verified dataset and its seed-0 split (loaded once per session),
and for test_serve.py / test_serve_browser.py one small compare run with one real server on it."""

import dataclasses
import os

import numpy as np
import pytest

from fmnist.data import dataset as data
from serve_helpers import SERVE_MODELS, running_server


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs one worker per CPU) every worker and what it starts trains with one
    thread unless a test says otherwise: two workers with a thread per core each would fight over the cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def dataset():
    return data.load()


@pytest.fixture(scope="session")
def splits(dataset):
    """The seed-0 train / validation / test split of the real data; tests take `.subset(...)` of it."""
    return data.split(dataset, seed=0)


@pytest.fixture(scope="session")
def serve_run(tmp_path_factory):
    """A compare run of a small CNN and the scratch MLP, trained for seconds on a subset (about 80 % test)."""
    from fmnist.cli.parser import main

    out = tmp_path_factory.mktemp("serve") / "compare"
    argv = ["compare", "--models", ",".join(SERVE_MODELS), "--subset", "4000", "--epochs", "3", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def serve_items(serve_run):
    """(images, labels): test items of the run, to make product photos from."""
    test = np.load(serve_run / "test_images.npz")
    return test["images"], test["labels"]


@dataclasses.dataclass(frozen=True)
class Server:
    url: str
    tmpdir: object  # the server's TMPDIR: uploads must never appear there


@pytest.fixture(scope="session")
def server(serve_run, tmp_path_factory):
    """A real server on the compare run, shared by every serve test."""
    folder = tmp_path_factory.mktemp("server")
    (folder / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(folder / "tmp")}
    with running_server(serve_run, folder / "server.log", env=env) as url:
        yield Server(url, folder / "tmp")
