import gzip
import os
import struct

import numpy as np
import pytest

from fmnist.cli.parser import main
from fmnist.data import dataset as data
from fmnist.errors import UserError


def idx_bytes(magic, array):
    header = struct.pack(">II", magic, len(array))
    if magic == 2051:
        header += struct.pack(">II", *array.shape[1:])
    return header + array.astype(np.uint8).tobytes()


def write_dataset(folder, n_train=20, n_test=10, seed=0, compress=True):
    """A small well-formed dataset (unknown checksums) in `folder`; returns {role: path}."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": np.arange(n_train) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": np.arange(n_test) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, (name, magic, _) in data.FILES.items():
        payload = idx_bytes(magic, arrays[role])
        path = folder / (f"{name}.gz" if compress else name)
        path.write_bytes(gzip.compress(payload) if compress else payload)
        paths[role] = path
    return paths


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(capsys, folder, fragment, name_in_message):
    code, _, err = run_cli(["data", "info", "--data-dir", str(folder), "--allow-unverified"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert name_in_message in lines[0]
    assert fragment in lines[0]


# --- real data -------------------------------------------------------------------------------------------


def mnist_reader(path, kind):
    """The dataset authors' reader (utils/mnist_reader.py): gzip + np.frombuffer with fixed offsets."""
    with gzip.open(f"{path}/{kind}-labels-idx1-ubyte.gz", "rb") as lbpath:
        labels = np.frombuffer(lbpath.read(), dtype=np.uint8, offset=8)
    with gzip.open(f"{path}/{kind}-images-idx3-ubyte.gz", "rb") as imgpath:
        images = np.frombuffer(imgpath.read(), dtype=np.uint8, offset=16).reshape(len(labels), 784)
    return images, labels


@pytest.fixture(scope="session")
def real(dataset):
    return dataset


def test_real_data_equals_authors_reader(real):
    folder = real.paths["train_images"].parent
    for split, images, labels in (
        ("train", real.train_images, real.train_labels),
        ("t10k", real.test_images, real.test_labels),
    ):
        ref_images, ref_labels = mnist_reader(folder, split)
        np.testing.assert_array_equal(images.reshape(len(images), 784), ref_images)
        np.testing.assert_array_equal(labels, ref_labels)
    assert real.verified
    assert real.sha256 == data.SHA256


def test_real_split_is_stratified_and_seeded(real):
    splits = data.split(real, seed=0)
    assert len(splits.y_train) == 48_000 and len(splits.y_val) == 12_000 and len(splits.y_test) == 10_000
    assert (data.class_counts(splits.y_train) == 4_800).all()
    assert (data.class_counts(splits.y_val) == 1_200).all()
    again = data.split(real, seed=0)
    np.testing.assert_array_equal(splits.x_val, again.x_val)
    other = data.split(real, seed=1)
    assert not np.array_equal(splits.x_val, other.x_val)
    # normalisation statistics come from the train part only
    assert splits.mean == pytest.approx(splits.x_train.mean() / 255, rel=1e-9)
    assert splits.mean != pytest.approx(real.train_images.mean() / 255, rel=1e-9)


# --- split on synthetic labels ---------------------------------------------------------------------------


def test_stratified_split_disjoint_complete_and_balanced():
    labels = np.repeat(np.arange(10), 50)
    train_idx, val_idx = data.stratified_split(labels, seed=3)
    assert len(np.intersect1d(train_idx, val_idx)) == 0
    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(500))
    assert (np.bincount(labels[val_idx], minlength=10) == 10).all()
    np.testing.assert_array_equal(val_idx, data.stratified_split(labels, seed=3)[1])
    assert not np.array_equal(val_idx, data.stratified_split(labels, seed=4)[1])


def test_pixel_stats_match_numpy():
    # more pixels than one of the slices pixel_stats counts at a time, and not a whole number of them
    images = np.random.default_rng(0).integers(0, 256, (1500, 28, 28)).astype(np.uint8)
    assert images.size > data.STATS_SLICE and images.size % data.STATS_SLICE
    mean, std = data.pixel_stats(images)
    assert mean == pytest.approx((images / 255).mean())
    assert std == pytest.approx((images / 255).std())


def test_normalise_flat_uses_given_stats():
    images = np.full((2, 28, 28), 255, np.uint8)
    out = data.normalise_flat(images, mean=0.5, std=0.25)
    assert out.shape == (2, 784) and out.dtype == np.float32
    np.testing.assert_allclose(out, 2.0)


# --- finding files ---------------------------------------------------------------------------------------


def test_find_prefers_explicit_dir_then_env(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_dataset(a)
    write_dataset(b)
    assert data.find(a, environ={"FMNIST_DATA_DIR": str(b)})["train_images"].parent == a
    assert data.find(None, environ={"FMNIST_DATA_DIR": str(b)})["train_images"].parent == b


def test_find_falls_back_to_user_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "nowhere")
    write_dataset(tmp_path / "cache" / "fmnist")
    found = data.find(None, environ={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert found["test_labels"].parent == tmp_path / "cache" / "fmnist"


def test_nothing_found_says_how_to_provide(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        data.find(None, environ={"XDG_CACHE_HOME": str(tmp_path)})


def test_uncompressed_and_torchvision_layout(tmp_path):
    plain = write_dataset(tmp_path / "plain", compress=False)
    gz = write_dataset(tmp_path / "tv" / "FashionMNIST" / "raw")
    a = data.load(tmp_path / "plain", allow_unverified=True, environ={})
    b = data.load(tmp_path / "tv", allow_unverified=True, environ={})
    np.testing.assert_array_equal(a.train_images, b.train_images)
    assert a.paths == plain and b.paths == gz
    assert not a.verified


def test_unknown_checksum_refused_unless_allowed(tmp_path):
    write_dataset(tmp_path)
    with pytest.raises(UserError, match="--allow-unverified"):
        data.load(tmp_path, environ={})
    assert data.load(tmp_path, allow_unverified=True, environ={}).provenance()["verified"] is False


# --- bad input: each a one-line error naming the file ----------------------------------------------------


def corrupt(paths, role, payload):
    paths[role].write_bytes(payload)
    return paths[role]


def test_missing_file(tmp_path, capsys):
    paths = write_dataset(tmp_path)
    paths["test_labels"].unlink()
    assert_one_line_error(capsys, tmp_path, "not found", "t10k-labels-idx1-ubyte")


def test_directory_in_place_of_file(tmp_path, capsys):
    paths = write_dataset(tmp_path)
    paths["train_labels"].unlink()
    paths["train_labels"].mkdir()
    assert_one_line_error(capsys, tmp_path, "directory", str(paths["train_labels"]))


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "/dev/urandom"])
def test_special_file_refused_without_reading(tmp_path, capsys, special):
    """A FIFO would block the open forever and a link to a device never ends: both refused before reading."""
    paths = write_dataset(tmp_path)
    path = paths["train_images"]
    path.unlink()
    if special == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(special)
    assert_one_line_error(capsys, tmp_path, "not a regular file", str(path))


def test_huge_regular_file_read_bounded(tmp_path, capsys):
    """A sparse 64 GB file named like a data file is read only up to the largest valid size."""
    paths = write_dataset(tmp_path, compress=False)
    with open(paths["train_labels"], "r+b") as fh:
        fh.truncate(64 * 2**30)
    assert_one_line_error(capsys, tmp_path, "trailing bytes", str(paths["train_labels"]))


def test_zero_byte_file(tmp_path, capsys):
    path = corrupt(write_dataset(tmp_path), "train_images", b"")
    assert_one_line_error(capsys, tmp_path, "empty", str(path))


def test_html_named_gz(tmp_path, capsys):
    path = corrupt(write_dataset(tmp_path), "train_images", b"<!DOCTYPE html><html>404 Not Found</html>\n")
    assert_one_line_error(capsys, tmp_path, "not a gzip file", str(path))


def test_truncated_gzip(tmp_path, capsys):
    paths = write_dataset(tmp_path)
    blob = paths["train_images"].read_bytes()
    path = corrupt(paths, "train_images", blob[: len(blob) // 2])
    assert_one_line_error(capsys, tmp_path, "truncated", str(path))


def test_corrupt_gzip_stream(tmp_path, capsys):
    paths = write_dataset(tmp_path)
    blob = bytearray(paths["train_images"].read_bytes())
    blob[20:60] = b"\xff" * 40
    path = corrupt(paths, "train_images", bytes(blob))
    assert_one_line_error(capsys, tmp_path, "corrupt gzip", str(path))


def test_wrong_magic_labels_as_images(tmp_path, capsys):
    paths = write_dataset(tmp_path)
    path = corrupt(paths, "train_images", paths["train_labels"].read_bytes())
    assert_one_line_error(capsys, tmp_path, "magic 2049", str(path))


def test_rows_cols_not_28(tmp_path, capsys):
    payload = struct.pack(">IIII", 2051, 20, 32, 32) + bytes(20 * 32 * 32)
    path = corrupt(write_dataset(tmp_path), "train_images", gzip.compress(payload))
    assert_one_line_error(capsys, tmp_path, "32x32", str(path))


def test_declared_count_larger_than_payload(tmp_path, capsys):
    payload = struct.pack(">IIII", 2051, 25, 28, 28) + bytes(20 * 784)
    path = corrupt(write_dataset(tmp_path), "train_images", gzip.compress(payload))
    assert_one_line_error(capsys, tmp_path, "declares 25 images", str(path))


def test_trailing_bytes(tmp_path, capsys):
    payload = struct.pack(">II", 2049, 20) + bytes(20) + b"extra"
    path = corrupt(write_dataset(tmp_path), "train_labels", gzip.compress(payload))
    assert_one_line_error(capsys, tmp_path, "trailing bytes", str(path))


def test_train_images_with_test_labels(tmp_path, capsys):
    paths = write_dataset(tmp_path)
    path = corrupt(paths, "train_labels", paths["test_labels"].read_bytes())
    assert_one_line_error(capsys, tmp_path, "10 labels for the 20 images", str(path))


def test_label_above_9(tmp_path, capsys):
    labels = np.arange(20) % 10
    labels[7] = 12
    path = corrupt(write_dataset(tmp_path), "train_labels", gzip.compress(idx_bytes(2049, labels)))
    assert_one_line_error(capsys, tmp_path, "label 12 at index 7", str(path))


def test_huge_header_count_refused_before_allocating(tmp_path, capsys):
    payload = struct.pack(">IIII", 2051, 0xFFFFFFFF, 28, 28) + bytes(784)
    path = corrupt(write_dataset(tmp_path), "test_images", gzip.compress(payload))
    assert_one_line_error(capsys, tmp_path, "declares 4294967295 images", str(path))


def test_gzip_bomb_is_bounded(tmp_path):
    # 200 MB of zeros compresses to ~200 KB; reading stops one byte past the largest valid file.
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", 2051, 60_000, 28, 28) + bytes(200_000_000)))
    with pytest.raises(UserError, match="trailing bytes"):
        data.read_idx(path, 2051)


def test_wrong_checksum_without_flag(tmp_path, capsys):
    write_dataset(tmp_path)
    code, _, err = run_cli(["data", "info", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "train-images-idx3-ubyte.gz: SHA-256" in err and "not the official" in err


def test_real_file_with_one_changed_label_is_refused(real, tmp_path):
    for role, path in real.paths.items():
        if role != "test_labels":
            (tmp_path / path.name).symlink_to(path)
    labels = real.test_labels.copy()
    labels[0] = (labels[0] + 1) % 10
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(2049, labels)))
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte.gz: SHA-256"):
        data.load(tmp_path, environ={})
