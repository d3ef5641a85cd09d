import numpy as np
import pytest
import torch

from fmnist import registry
from fmnist.errors import HparamError, UserError
from fmnist.models import nets as models
from fmnist.models.classifiers import CNNClassifier, LinearClassifier, MLPClassifier


@pytest.mark.parametrize(
    ("module", "params"),
    [
        (models.Linear(), 784 * 10 + 10),
        (models.MLP((64, 32), 0.1), 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10),
        (models.CNN((4, 8, 8, 16, 16), 24, 0.1), None),
        (models.CNN((4, 8, 8, 16, 16), 24, 0.1, pools=(2, 4, 5)), None),
        (models.CNN((4, 8, 8, 16, 16), 24, 0.1, pools=(1, 2, 3, 4, 5)), None),
    ],
)
def test_networks_map_images_to_ten_logits(module, params):
    x = torch.randn(5, 1, 28, 28)
    assert module(x).shape == (5, 10)
    if params is not None:
        assert sum(p.numel() for p in module.parameters()) == params


def test_cnn_has_five_convolutions_and_a_feature_layer():
    cnn = models.CNN((4, 8, 8, 16, 16), feature_dim=24)
    convs = [m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5
    cnn.eval()
    features = cnn.features(torch.randn(3, 1, 28, 28))
    assert features.shape == (3, 24)
    assert (features >= 0).all()  # after ReLU
    with pytest.raises(ValueError, match="5 convolution widths"):
        models.CNN((4, 8, 8))


def test_sides_follow_the_pools():
    assert models.sides((1, 2, 3, 4, 5)) == ([28, 14, 7, 4, 2], 1)
    assert models.sides((2, 4, 5)) == ([28, 28, 14, 14, 7], 4)


@pytest.mark.parametrize(
    ("cls", "hparams"),
    [(LinearClassifier, {}), (MLPClassifier, {"hidden": (32,)}), (CNNClassifier, {"widths": (4, 8, 8, 16, 16)})],
)
def test_classifiers_return_float32_logits_for_uint8_images(cls, hparams):
    model = cls(**hparams)
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    logits = model.predict_logits(images)
    assert logits.shape == (7, 10) and logits.dtype == np.float32
    assert model.predict_logits(images, tta=True).shape == (7, 10)
    assert model.num_parameters() == sum(p.numel() for p in model.module.parameters())
    assert model.predict_logits(images[:0]).shape == (0, 10)


def test_cnn_classifier_features_have_feature_dim_columns():
    model = CNNClassifier(widths=(4, 8, 8, 16, 16), feature_dim=20)
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    features = model.features(images)
    assert features.shape == (3, 20) and features.dtype == np.float32


def test_classifiers_refuse_bad_input():
    with pytest.raises(HparamError, match="mlp depth: not a hyper-parameter"):
        MLPClassifier(depth=3)
    with pytest.raises(HparamError, match=r"cnn widths: \(8, 8\): expected 5 whole numbers"):
        CNNClassifier(widths=(8, 8))
    with pytest.raises(UserError, match="expected uint8"):
        LinearClassifier().predict_logits(np.zeros((2, 784), dtype=np.float32))


def test_registry_entries_build_their_classes_with_help_for_every_hparam():
    for name, cls in (("linear", LinearClassifier), ("mlp", MLPClassifier), ("cnn", CNNClassifier)):
        spec = registry.spec(name)
        assert spec.load_class() is cls
        assert {"epochs", "batch_size", "lr"} <= set(spec.hparams)
        assert all(isinstance(h.help, str) and h.help for h in spec.hparams.values())
        assert set(spec.presets) == {"fast", "best"}
        for preset in spec.presets:
            assert set(spec.resolve(preset)) == set(spec.hparams)
