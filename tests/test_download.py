import shutil

import pytest

from fmnist.data import dataset, download
from fmnist.errors import UserError


@pytest.fixture(scope="module")
def source():
    return dataset.find()["train_images"].parent


def test_download_verifies_and_names_files(source, tmp_path):
    dest = download.download(tmp_path / "cache", mirrors=(source.as_uri() + "/",))
    loaded = dataset.load(dest, environ={})
    assert loaded.verified and loaded.paths["train_images"] == dest / "train-images-idx3-ubyte.gz"


def test_bad_mirror_falls_back_to_the_next(source, tmp_path):
    dead = tmp_path / "dead"
    dead.mkdir()
    dest = download.download(tmp_path / "cache", mirrors=(dead.as_uri() + "/", source.as_uri() + "/"))
    assert dataset.load(dest, environ={}).verified


def test_wrong_file_never_lands_under_the_final_name(source, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, _, _ in dataset.FILES.values():
        shutil.copy(source / f"{name}.gz", mirror / f"{name}.gz")
    # the train labels served in place of the test labels: well-formed, wrong checksum
    shutil.copy(source / "train-labels-idx1-ubyte.gz", mirror / "t10k-labels-idx1-ubyte.gz")
    dest = tmp_path / "cache"
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte\.gz: download failed"):
        download.download(dest, mirrors=(mirror.as_uri() + "/",))
    assert not (dest / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list(dest.glob("*.tmp")) and not list(dest.glob(".*.tmp"))
