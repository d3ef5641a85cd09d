import itertools

import numpy as np
import pytest
import torch

from fmnist.data import dataset
from fmnist.engine import loop
from fmnist.engine.torch_backend import TorchBackend
from fmnist.errors import Diverged, HparamError, UserError
from fmnist.models import registry
from fmnist.models.classifiers import CNNClassifier, LinearClassifier, MLPClassifier

ADAMW = {"optimizer": "adamw", "weight_decay": 1e-4, "label_smoothing": 0.0, "momentum": 0, "bias_lr": 1}
ADAMW |= {"lookahead": 0}

TINY_CNN = {"widths": (8, 16, 32), "batch_size": 64}
PLAIN_CNN = registry.spec("cnn").presets["best"]


@pytest.fixture(scope="module")
def small(splits):
    return splits.subset(2000, 1000, 1000)


def accuracy(model, images, labels):
    return float((model.predict_logits(images, tta=0).argmax(1) == labels).mean())


@pytest.mark.parametrize(
    ("cls", "hparams"),
    [
        (LinearClassifier, {"epochs": 3}),
        (MLPClassifier, {"epochs": 3, "hidden": (128,)}),
        (CNNClassifier, {"epochs": 3, **TINY_CNN}),
        (CNNClassifier, {**PLAIN_CNN, "epochs": 3, "widths": (8, 16, 16, 32, 32), "batch_size": 64}),
    ],
)
def test_short_run_on_real_subset_learns_far_above_chance(small, cls, hparams):
    model = cls(**hparams)
    history = model.fit(small, seed=0, progress=False)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert set(history[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr"}
    assert all(a["seconds"] < b["seconds"] for a, b in itertools.pairwise(history))
    assert history[-1]["loss"] < history[0]["loss"]
    assert accuracy(model, small.x_test, small.y_test) > 0.6  # chance is 0.1
    # the best-on-validation weights are the ones kept
    best = max(row["val_accuracy"] for row in history)
    assert accuracy(model, small.x_val, small.y_val) == pytest.approx(best, abs=1e-9)


def test_same_seed_same_weights_other_seed_other_weights(small):
    tiny = small.subset(512, 256, 0)

    def weights(seed):
        model = CNNClassifier(epochs=1, **TINY_CNN)
        model.fit(tiny, seed=seed, progress=False)
        return model.module.state_dict()

    a, b, c = weights(3), weights(3), weights(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_tta_averages_the_logits_of_mirrored_and_moved_images(small):
    model = CNNClassifier(epochs=1, **TINY_CNN)
    model.fit(small.subset(512, 256, 0), seed=0, progress=False)
    images = small.x_test[:50]

    def plain(x):
        return model.predict_logits(x, tta=0)

    def pair(x):
        return (plain(x) + plain(x[:, :, ::-1].copy())) / 2

    down, up = np.zeros_like(images), np.zeros_like(images)
    down[:, 1:, 1:], up[:, :-1, :-1] = images[:, :-1, :-1], images[:, 1:, 1:]
    np.testing.assert_allclose(model.predict_logits(images), pair(images), rtol=1e-5, atol=1e-5)  # the preset's
    level_2 = (pair(images) + (pair(down) + pair(up)) / 2) / 2
    np.testing.assert_allclose(model.predict_logits(images, tta=2), level_2, rtol=1e-5, atol=1e-5)


class Saboteur(torch.nn.Module):
    """A linear model whose training forward pass turns to NaN from call `bad_from` on."""

    def __init__(self, bad_from=None, frozen=False):
        super().__init__()
        self.fc = torch.nn.Linear(784, 10)
        self.bad_from, self.frozen, self.calls = bad_from, frozen, 0

    def forward(self, x):
        out = self.fc(x.flatten(1))
        if self.frozen:  # constant predictions: validation never improves
            return out * 0
        if self.training:
            self.calls += 1
            if self.bad_from is not None and self.calls >= self.bad_from:
                return out * float("nan")
        return out


def tensors(splits):
    x = torch.from_numpy(dataset.normalise_flat(splits.x_train, splits.mean, splits.std)).reshape(-1, 1, 28, 28)
    xv = torch.from_numpy(dataset.normalise_flat(splits.x_val, splits.mean, splits.std)).reshape(-1, 1, 28, 28)
    return (x, torch.from_numpy(splits.y_train)), (xv, splits.y_val)


def config(**settings):
    return loop.LoopConfig(
        **{"name": "t", "batch_size": 100, "lr": 0.01, "patience": 10, "drop_last": True} | settings, progress=False
    )


def test_nan_loss_stops_with_diverged_and_keeps_best_weights(small):
    train, val = tensors(small)
    steps = len(train[0]) // 100
    module = Saboteur(bad_from=steps + 5)  # breaks during the second epoch
    after_epoch_1 = {}
    backend = TorchBackend(module, ADAMW, seed=0, fill=0.0, total_steps=100)
    with pytest.raises(Diverged, match=r"linear-test: training loss became nan at epoch 2, batch 5 with lr"):
        loop.fit(
            backend,
            train,
            val,
            config(name="linear-test", epochs=5),
            on_epoch=lambda epoch: after_epoch_1.update({k: v.clone() for k, v in module.state_dict().items()}),
        )
    state = module.state_dict()
    assert all(torch.isfinite(v).all() for v in state.values())
    assert all(torch.equal(state[k], after_epoch_1[k]) for k in state)


def test_early_stopping_after_patience_epochs_without_improvement(small):
    train, val = tensors(small.subset(500, 200, 0))
    backend = TorchBackend(Saboteur(frozen=True), ADAMW, seed=0, fill=0.0, total_steps=100)
    history = loop.fit(backend, train, val, config(epochs=20, patience=2))
    assert len(history) == 3


@pytest.mark.parametrize(
    ("hparams", "message"),
    [
        ({"epochs": 0}, r"linear epochs: 0 is outside \[1, 10000\]"),
        ({"lr": -1.0}, r"linear lr: -1.0 is outside"),
        ({"optimizer": "lbfgs"}, "linear optimizer: 'lbfgs': choose one of sgd, adamw"),
        ({"label_smoothing": 1.5}, r"linear label_smoothing: 1.5 is outside \[0, 1\]"),
        ({"hidden": (8,)}, "linear hidden: not a hyper-parameter of this model"),
    ],
)
def test_bad_training_settings_are_refused_by_the_registry(hparams, message):
    with pytest.raises(HparamError, match=message):
        LinearClassifier(**hparams)


@pytest.mark.parametrize(
    ("cls", "hparams"), [(LinearClassifier, {}), (MLPClassifier, {"hidden": (16, 8)}), (CNNClassifier, TINY_CNN)]
)
def test_save_load_round_trip(small, tmp_path, cls, hparams):
    model = cls(epochs=1, **hparams)
    model.fit(small.subset(256, 128, 0), seed=0, progress=False)
    model.save(tmp_path / "m")
    loaded = cls.load(tmp_path / "m")
    assert loaded.hparams == model.hparams
    images = small.x_test[:64]
    np.testing.assert_array_equal(loaded.predict_logits(images), model.predict_logits(images))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "weights.safetensors"]


def test_load_refuses_missing_or_foreign_folders(tmp_path):
    with pytest.raises(UserError, match=r"model\.json: file not found"):
        CNNClassifier.load(tmp_path)
    LinearClassifier().save(tmp_path / "linear")
    with pytest.raises(UserError, match=r"expected fmnist\.models\.classifiers:CNNClassifier"):
        CNNClassifier.load(tmp_path / "linear")
    (tmp_path / "linear" / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="cannot read weights"):
        LinearClassifier.load(tmp_path / "linear")
