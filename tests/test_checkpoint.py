import json
import threading

import numpy as np
import pytest

from fmnist.errors import UserError
from fmnist.models.scratch.classifier import ScratchClassifier
from fmnist.rundir import checkpoint


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 20)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    model = ScratchClassifier(hidden=(8,), epochs=2, batch_size=32, lr=1e-2)
    model.fit_features((x[:150], y[:150]), (x[150:], y[150:]), seed=0, progress=False)
    return model, x


def test_round_trip_is_bit_exact(trained, tmp_path):
    model, x = trained
    checkpoint.save(tmp_path, "scratch-mlp", model)
    loaded, manifest = checkpoint.load(tmp_path)
    np.testing.assert_array_equal(loaded.logits_from_arrays(x), model.logits_from_arrays(x))
    assert manifest["kind"] == "scratch-mlp" and len(manifest["class_names"]) == 10
    # metrics live in metrics.json and normalisation in the model's own files: nothing here to go stale
    assert set(manifest) == {"format", "kind", "weights", "files", "class_names"}


def test_second_save_replaces_the_first(trained, tmp_path):
    model, _ = trained
    first = checkpoint.save(tmp_path, "scratch-mlp", model)
    second = checkpoint.save(tmp_path, "scratch-mlp", model)
    assert not (tmp_path / first["weights"]).exists() and (tmp_path / second["weights"]).is_dir()


def test_failed_save_keeps_the_previous_checkpoint(trained, tmp_path, monkeypatch):
    model, x = trained
    checkpoint.save(tmp_path, "scratch-mlp", model)

    def killed(folder):
        (folder).mkdir(parents=True)
        (folder / "weights.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, "scratch-mlp", model)
    monkeypatch.undo()
    loaded, _ = checkpoint.load(tmp_path)
    np.testing.assert_array_equal(loaded.logits_from_arrays(x), model.logits_from_arrays(x))


def test_loads_during_rewrites_see_one_checkpoint_whole(trained, tmp_path):
    """A save removes the folder the previous manifest named, maybe while a load reads it: the load reads again."""
    model, x = trained
    checkpoint.save(tmp_path, "scratch-mlp", model)
    stop, saves = threading.Event(), []

    def rewrite():
        while not stop.is_set():
            saves.append(checkpoint.save(tmp_path, "scratch-mlp", model))

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(300):
            loaded, _ = checkpoint.load(tmp_path)
            np.testing.assert_array_equal(loaded.logits_from_arrays(x[:5]), model.logits_from_arrays(x[:5]))
    finally:
        stop.set()
        writer.join()
    assert len(saves) > 10  # the loads did overlap with rewrites


def weights_file(run_dir):
    manifest = json.loads((run_dir / "checkpoint.json").read_text())
    return run_dir / manifest["weights"] / "weights.safetensors", run_dir / manifest["weights"] / "model.json"


def test_truncated_weights(trained, tmp_path):
    checkpoint.save(tmp_path, "scratch-mlp", trained[0])
    weights, _ = weights_file(tmp_path)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UserError, match=r"weights.safetensors: checksum differs"):
        checkpoint.load(tmp_path)


def test_edited_metadata(trained, tmp_path):
    checkpoint.save(tmp_path, "scratch-mlp", trained[0])
    _, meta = weights_file(tmp_path)
    meta.write_text(meta.read_text().replace('"hidden"', '"hidden" '))
    with pytest.raises(UserError, match=r"model.json: checksum differs"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "fmnist-checkpoint/2",
            "fmnist-checkpoint/1",
            r"format 'fmnist-checkpoint/1', this fmnist reads fmnist-checkpoint/2",
        ),
        ('"scratch-mlp"', '"resnet"', r"kind is 'resnet', expected one of linear"),
        ('"scratch-mlp"', '"cnn"', r"model.json"),  # another architecture's loader refuses the files
    ],
    ids=["older format", "unknown kind", "other architecture"],
)
def test_an_edited_manifest_is_refused_naming_what_is_wrong(trained, tmp_path, old, new, message):
    checkpoint.save(tmp_path, "scratch-mlp", trained[0])
    manifest = tmp_path / "checkpoint.json"
    manifest.write_text(manifest.read_text().replace(old, new))
    with pytest.raises(UserError, match=message):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize("make", ["missing", "empty_dir", "text_file", "garbage_manifest"])
def test_not_a_model(tmp_path, make):
    target = tmp_path / "thing"
    if make == "empty_dir":
        target.mkdir()
    elif make == "text_file":
        target.write_text("hello")
    elif make == "garbage_manifest":
        target.mkdir()
        (target / "checkpoint.json").write_text("{not json")
    with pytest.raises(UserError, match="thing"):
        checkpoint.load(target)
