"""ScratchClassifier: the model interface, training loop, determinism, weight files and the NaN guard."""

import itertools
import json

import numpy as np
import pytest

from fmnist.data import dataset
from fmnist.engine import loop
from fmnist.errors import Diverged, HparamError, UserError
from fmnist.models import registry
from fmnist.models.scratch import classifier as scratch_model
from fmnist.models.scratch.classifier import ScratchClassifier

ROW_KEYS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr"]


@pytest.fixture(scope="module")
def small_splits(splits):
    return splits.subset(3000, 1000, 500)


def blobs(n, dim=12, seed=0):
    """Ten Gaussian clusters in `dim` dimensions: features a hybrid might hand over, not images."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((dataset.NUM_CLASSES, dim)) * 3
    y = rng.integers(0, dataset.NUM_CLASSES, n)
    return (centres[y] + rng.standard_normal((n, dim))).astype(np.float32), y


@pytest.mark.parametrize("preset", list(registry.spec("scratch-mlp").presets))
def test_registry_defaults_build_a_model(preset):
    hparams = registry.spec("scratch-mlp").resolve(preset)
    model = registry.build("scratch-mlp", preset)
    assert isinstance(model, ScratchClassifier) and model.hparams == hparams
    assert all(isinstance(h, int) for h in model.hparams["hidden"])
    assert set(hparams) <= set(model.hparams)


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"hidden": (128, 0)}, "hidden"),
        ({"lr": -1.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"batch_size": 0}, "batch_size"),
        ({"schedule": "step"}, "schedule"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"patience": 0}, "patience"),
        ({"shift": 28}, "shift"),
        ({"shift_prob": 1.5}, "shift_prob"),
    ],
)
def test_bad_hyperparameters_are_refused_naming_them(bad, named):
    with pytest.raises(HparamError, match=f"scratch-mlp {named}: "):
        ScratchClassifier(**bad)


def test_training_on_real_images_beats_chance_and_keeps_the_best_epoch(small_splits, capsys):
    model = ScratchClassifier(epochs=6, batch_size=64, lr=2e-3)
    history = model.fit(small_splits, seed=0, progress=False)
    assert capsys.readouterr().err == ""  # progress=False draws no bar
    assert [list(row) for row in history] == [ROW_KEYS] * len(history)
    assert [row["epoch"] for row in history] == list(range(1, len(history) + 1))
    assert all(b["seconds"] > a["seconds"] for a, b in itertools.pairwise(history))
    assert history[-1]["loss"] < history[0]["loss"]
    best = max(history, key=lambda r: r["val_accuracy"])  # the first of the best
    assert model.best_epoch == best["epoch"]
    logits = model.predict_logits(small_splits.x_val)
    assert logits.dtype == np.float32 and logits.shape == (1000, 10)
    assert np.mean(logits.argmax(axis=1) == small_splits.y_val) == pytest.approx(best["val_accuracy"])
    assert best["val_accuracy"] > 0.75  # chance is 0.10
    assert np.mean(model.predict_logits(small_splits.x_test).argmax(1) == small_splits.y_test) > 0.75
    assert model.num_parameters() == 784 * 128 + 128 + 128 * 10 + 10


def test_progress_bar_is_drawn_when_asked(small_splits, capsys):
    ScratchClassifier(epochs=1).fit(small_splits.subset(200, 50, 0), seed=0, progress=True)
    assert "scratch-mlp" in capsys.readouterr().err


def test_same_seed_gives_identical_weights_and_another_seed_does_not(small_splits):
    subset = small_splits.subset(1000, 300, 0)

    def train(seed):
        model = ScratchClassifier(hidden=[32, 16], epochs=2, optimizer="nesterov", lr=0.05, weight_decay=1e-4)
        history = model.fit(subset, seed=seed, progress=False)
        return model.mlp.params, [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    first, again, other = train(1), train(1), train(2)
    assert first[1] == again[1]
    for a, b in zip(first[0], again[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0][0], other[0][0])


def test_save_and_load_are_bit_exact(small_splits, tmp_path):
    model = ScratchClassifier(hidden=(20, 12), epochs=1, weight_decay=1e-4)
    model.fit(small_splits.subset(500, 100, 0), seed=3, progress=False)
    model.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["model.json", "weights.safetensors"]
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["layer_sizes"] == [784, 20, 12, 10] and meta["hparams"]["hidden"] == [20, 12]

    loaded = ScratchClassifier.load(tmp_path / "model")
    assert loaded.hparams == model.hparams
    assert (loaded.mean, loaded.std, loaded.best_epoch) == (model.mean, model.std, model.best_epoch)
    for a, b in zip(model.mlp.params, loaded.mlp.params, strict=True):
        assert a.dtype == b.dtype == np.float32
        assert a.tobytes() == b.tobytes()
    images = small_splits.x_test[:50]
    assert model.predict_logits(images).tobytes() == loaded.predict_logits(images).tobytes()


def test_loading_a_bad_folder_is_a_user_error(small_splits, tmp_path):
    with pytest.raises(UserError, match=r"model\.json: file not found"):
        ScratchClassifier.load(tmp_path)
    model = ScratchClassifier(hidden=(8,), epochs=1)
    model.fit(small_splits.subset(100, 20, 0), seed=0, progress=False)
    model.save(tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match=r"weights\.safetensors"):
        ScratchClassifier.load(tmp_path)


def test_features_of_any_width_train_through_fit_features():
    x_train, y_train = blobs(2000)
    x_val, y_val = blobs(500, seed=1)
    model = ScratchClassifier(hidden=(16,), epochs=5, lr=1e-2)
    history = model.fit_features((x_train, y_train), (x_val, y_val), seed=0, progress=False)
    assert history[-1]["val_accuracy"] > 0.9
    assert model.logits_from_arrays(x_val).shape == (500, 10)
    with pytest.raises(UserError, match="feature arrays"):
        model.predict_logits(np.zeros((1, 28, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected"):
        model.logits_from_arrays(np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="flip/shift: augment images only"):
        ScratchClassifier(shift=1).fit_features((x_train, y_train), (x_val, y_val), seed=0, progress=False)
    with pytest.raises(ValueError, match="training labels"):
        ScratchClassifier().fit_features((x_train, y_train + 10), (x_val, y_val), seed=0, progress=False)


def test_augmentation_is_seeded_and_changes_what_is_learned(small_splits):
    subset = small_splits.subset(1000, 300, 0)

    def train(seed, **augmentation):
        model = ScratchClassifier(hidden=(32,), epochs=2, **augmentation)
        model.fit(subset, seed=seed, progress=False)
        return model.mlp.params[0]

    shifted = train(1, shift=1, shift_prob=0.5, flip=True)
    np.testing.assert_array_equal(shifted, train(1, shift=1, shift_prob=0.5, flip=True))
    assert not np.array_equal(shifted, train(1))


def test_early_stopping_after_patience_epochs_without_improvement():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 8)).astype(np.float32)
    labels = rng.integers(0, 10, 600)  # random labels: validation accuracy soon stops improving
    model = ScratchClassifier(hidden=(64,), epochs=40, lr=1e-2, patience=3)
    history = model.fit_features((x[:500], labels[:500]), (x[500:], labels[500:]), seed=0, progress=False)
    assert len(history) < 40
    assert history[-1]["epoch"] == model.best_epoch + 3


def test_absurd_learning_rate_raises_and_keeps_the_initial_weights(small_splits, monkeypatch):
    monkeypatch.setattr(loop, "learning_rate", lambda *_: 1e30)  # beyond the registry's range for --lr
    model = ScratchClassifier(epochs=2, optimizer="sgd", schedule="constant")
    with pytest.raises(Diverged, match=r"epoch 1, batch \d+ with lr 1e\+30 \(no epoch finished"):
        model.fit(small_splits.subset(500, 100, 0), seed=0, progress=False)
    fresh = scratch_model.MLP([784, 128, 10], rng=np.random.default_rng([0, 0]))
    for a, b in zip(model.mlp.params, fresh.params, strict=True):
        np.testing.assert_array_equal(a, b)


def test_divergence_after_good_epochs_keeps_the_best_weights(small_splits, monkeypatch):
    subset = small_splits.subset(640, 200, 0)  # 10 batches of 64 per epoch
    schedule = loop.learning_rate

    def blow_up_in_epoch_3(step, total, peak, warmup, shape):
        return 1e30 if step >= 20 else schedule(step, total, peak, warmup, "constant")

    monkeypatch.setattr(loop, "learning_rate", blow_up_in_epoch_3)
    model = ScratchClassifier(epochs=5, batch_size=64)
    with pytest.raises(Diverged, match=r"epoch 3, batch \d+ with lr 1e\+30 \(weights of epoch [12] kept"):
        model.fit(subset, seed=0, progress=False)

    reference = ScratchClassifier(epochs=2, batch_size=64, schedule="constant")
    reference.fit(subset, seed=0, progress=False)
    assert model.best_epoch == reference.best_epoch
    for a, b in zip(model.mlp.params, reference.mlp.params, strict=True):
        np.testing.assert_array_equal(a, b)
