import numpy as np
import pytest
import torch

from fmnist.errors import HparamError, UserError
from fmnist.models import nets as models
from fmnist.models import registry
from fmnist.models.classifiers import CNNClassifier, LinearClassifier, MLPClassifier


@pytest.mark.parametrize(
    ("module", "params"),
    [
        (models.Linear(), 784 * 10 + 10),
        (models.MLP((64, 32), 0.1), 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10),
        (models.CNN((4, 8, 8, 16, 16), 24, 0.1), None),
        (models.CNN((4, 8, 8, 16, 16), 24, 0.1, pools=(2, 4, 5)), None),
        (models.CNN((4, 8, 8, 16, 16), 24, 0.1, pools=(1, 2, 3, 4, 5)), None),
        (models.WhitenedCNN((4, 8, 16)), None),
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


def test_whitened_cnn_whitens_the_patches_with_a_frozen_first_layer():
    torch.manual_seed(0)
    x = torch.randn(64, 1, 28, 28).cumsum(-1) / 5  # correlated neighbours, like an image's
    cnn = models.WhitenedCNN((4, 8, 16))
    cnn.prepare(x)
    out = cnn.stem(x) - cnn.stem.bias[:, None, None]  # (64, 18, 14, 14): 9 whitened channels and their negatives
    assert out.shape == (64, 18, 14, 14)
    torch.testing.assert_close(out[:, :9], -out[:, 9:])
    inside = out[:, :9, 1:, 1:]  # the outputs whose 3x3 patch lies inside the image (no zero padding)
    patches = inside.permute(0, 2, 3, 1).reshape(-1, 9).double()
    # the stride-2 patches are a quarter of those the covariance was taken over: white up to sampling error
    torch.testing.assert_close(patches.T @ patches / len(patches), torch.eye(9, dtype=torch.double), atol=0.1, rtol=0)
    trained = {n for n, p in cnn.named_parameters() if p.requires_grad}
    assert "stem.weight" not in trained and "stem.bias" in trained
    assert not any(n.endswith("weight") and p.ndim == 1 for n, p in cnn.named_parameters() if n in trained)
    features = cnn.features(x[:3])
    assert features.shape == (3, 16)
    with pytest.raises(ValueError, match="3 group widths"):
        models.WhitenedCNN((4, 8))


def test_sides_follow_the_pools():
    assert models.sides((1, 2, 3, 4, 5)) == ([28, 14, 7, 4, 2], 1)
    assert models.sides((2, 4, 5)) == ([28, 28, 14, 14, 7], 4)


@pytest.mark.parametrize(
    ("cls", "hparams"),
    [
        (LinearClassifier, {}),
        (MLPClassifier, {"hidden": (32,)}),
        (CNNClassifier, {"widths": (4, 8, 16)}),
        (CNNClassifier, {"arch": "plain", "widths": (4, 8, 8, 16, 16)}),
    ],
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
    model = CNNClassifier(arch="plain", widths=(4, 8, 8, 16, 16), feature_dim=20)
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    features = model.features(images)
    assert features.shape == (3, 20) and features.dtype == np.float32
    assert CNNClassifier(widths=(4, 8, 12)).features(images).shape == (3, 12)


def test_classifiers_refuse_bad_input():
    with pytest.raises(HparamError, match="mlp depth: not a hyper-parameter"):
        MLPClassifier(depth=3)
    with pytest.raises(HparamError, match=r"cnn widths: \(8, 8\): the whitened CNN takes 3 widths"):
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


def test_every_registry_model_satisfies_the_classifier_protocol():
    from fmnist.models import registry
    from fmnist.models.contracts import Classifier, FeatureClassifier

    for name in registry.REGISTRY:
        model = registry.build(name)
        assert type(model).registry_name == name
        assert isinstance(model, Classifier), name
        assert isinstance(model, FeatureClassifier) == (name in ("cnn", "hybrid")), name
