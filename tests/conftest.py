"""Fixtures shared by the test modules: the verified dataset and its seed-0 split, loaded once per session."""

import pytest

from fmnist import data


@pytest.fixture(scope="session")
def dataset():
    return data.load()


@pytest.fixture(scope="session")
def splits(dataset):
    """The seed-0 train / validation / test split of the real data; tests take `.subset(...)` of it."""
    return data.split(dataset, seed=0)
