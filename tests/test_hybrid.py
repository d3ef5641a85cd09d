import dataclasses

import numpy as np
import pytest
import torch

from fmnist.errors import UserError
from fmnist.models import registry
from fmnist.models.classifiers import CNNClassifier
from fmnist.models.hybrid import HybridClassifier

TINY_CNN = {"widths": (8, 16, 32), "batch_size": 64, "epochs": 2}
MLP = {"hidden": (32,), "epochs": 3, "lr": 0.01, "batch_size": 32}


@pytest.fixture(scope="module")
def small(splits):
    return splits.subset(1500, 500, 500)


@pytest.fixture(scope="module")
def cnn(small):
    model = CNNClassifier(**TINY_CNN)
    model.fit(small, seed=0, progress=False)
    return model


def test_hybrid_on_a_trained_cnn_trains_only_the_mlp(small, cnn):
    before = {k: v.clone() for k, v in cnn.module.state_dict().items()}
    hybrid = HybridClassifier(cnn=cnn, **MLP)
    history = hybrid.fit(small, seed=0, progress=False)
    assert hybrid.cnn is cnn and hybrid.cnn_history == []
    assert all(torch.equal(v, cnn.module.state_dict()[k]) for k, v in before.items())
    assert len(history) == 3 and history[0]["seconds"] > 0

    features = hybrid.features(small.x_train)
    assert features.shape == (1500, 32) and features.dtype == np.float32
    # standardised with train statistics (constant features stay at 0)
    assert np.abs(features.mean(axis=0)).max() < 1e-4
    assert np.all((np.abs(features.std(axis=0) - 1) < 1e-3) | (features.std(axis=0) < 1e-6))

    logits = hybrid.predict_logits(small.x_test)
    assert logits.shape == (500, 10) and logits.dtype == np.float32
    assert (logits.argmax(1) == small.y_test).mean() > 0.6
    assert hybrid.predict_logits(small.x_test[:5], tta=True).shape == (5, 10)
    assert hybrid.num_parameters() == cnn.num_parameters() + hybrid.mlp.num_parameters()


def test_hybrid_trains_its_own_cnn_from_the_named_preset(small, monkeypatch):
    cnn_spec = registry.spec("cnn")
    tiny = dataclasses.replace(cnn_spec, presets={"fast": TINY_CNN})
    monkeypatch.setitem(registry.REGISTRY, "cnn", tiny)
    hybrid = HybridClassifier(**MLP)
    history = hybrid.fit(small.subset(600, 200, 0), seed=1, progress=False)
    assert isinstance(hybrid.cnn, CNNClassifier) and len(hybrid.cnn_history) == 2
    assert history[0]["seconds"] > hybrid.cnn_history[-1]["seconds"]  # the CNN's training time is counted


def test_hybrid_save_load_round_trip(small, cnn, tmp_path):
    hybrid = HybridClassifier(cnn=cnn, **MLP)
    hybrid.fit(small, seed=0, progress=False)
    hybrid.save(tmp_path / "h")
    loaded = HybridClassifier.load(tmp_path / "h")
    np.testing.assert_array_equal(loaded.predict_logits(small.x_test), hybrid.predict_logits(small.x_test))
    assert loaded.hparams == hybrid.hparams
    with pytest.raises(UserError, match="not been trained"):
        HybridClassifier().predict_logits(small.x_test)
    with pytest.raises(UserError, match="file not found"):
        HybridClassifier.load(tmp_path / "missing")


def test_registry_entry_reuses_the_cnn():
    spec = registry.spec("hybrid")
    assert spec.load_class() is HybridClassifier
    assert spec.reuses == ("cnn",)
    assert spec.resolve("best")["cnn_preset"] == "best"
