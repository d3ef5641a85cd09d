"""Attribution maps (fmnist.predict.explain): the pixel modules repeat each model's prediction, the scratch MLP's
hand-written input gradient agrees with torch and Captum, every method gives a map of the right kind, and on
small trained models the maps pass the deletion and randomisation checks."""

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from torch import nn

from fmnist.errors import UserError
from fmnist.models.classifiers import CNNClassifier, LinearClassifier, MLPClassifier
from fmnist.models.hybrid import HybridClassifier
from fmnist.models.scratch.classifier import ScratchClassifier
from fmnist.models.scratch.mlp import MLP
from fmnist.predict import explain
from fmnist.predict.explain import attribute, evidence, pixel


def untrained(name, **hparams):
    """A model with random weights and made-up normalisation, ready to predict (no training needed)."""
    rng = np.random.default_rng(0)
    if name == "scratch-mlp":
        model = ScratchClassifier(**hparams)
        model.mlp, model.mean, model.std = MLP([784, 32, 10], rng=rng), 0.29, 0.35
        return model
    if name == "hybrid":
        cnn = untrained("cnn", widths=(8, 8, 16))
        model = HybridClassifier(cnn=cnn, hidden=(16,), **hparams)
        model.mlp.mlp = MLP([16, 16, 10], rng=rng)
        model.feature_mean = rng.random(16).astype(np.float32)
        model.feature_std = (0.5 + rng.random(16)).astype(np.float32)
        return model
    classes = {"linear": LinearClassifier, "mlp": MLPClassifier, "cnn": CNNClassifier}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = classes[name](**hparams)
    model.mean, model.std = 0.29, 0.35
    model.module.eval()
    return model


CASES = [
    ("linear", {}),
    ("mlp", {"hidden": (32,)}),
    ("cnn", {"widths": (8, 8, 16)}),
    ("cnn", {"widths": (8, 8, 16), "tta": 2}),
    ("cnn", {"arch": "plain", "widths": (4, 4, 8, 8, 8), "pools": (2, 4, 5), "feature_dim": 16, "tta": 0}),
    ("scratch-mlp", {}),
    ("hybrid", {}),
]


@pytest.fixture(scope="module")
def images(splits):
    return splits.x_test[:6]


@pytest.mark.parametrize(("name", "hparams"), CASES)
def test_pixel_module_predicts_what_the_model_predicts(name, hparams, images):
    model = untrained(name, **hparams)
    with torch.inference_mode():
        logits = pixel.pixel_module(model)(pixel.to_pixels(images)).numpy()
    np.testing.assert_allclose(logits, model.predict_logits(images), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("name", "hparams"), CASES)
def test_every_method_gives_one_finite_map_per_image(name, hparams, images):
    model = untrained(name, **hparams)
    for method in attribute.methods_for(model):
        result = attribute.explain(model, images, method)
        assert result.maps.shape == (len(images), 28, 28) and result.maps.dtype == np.float32
        assert np.isfinite(result.maps).all() and np.abs(result.maps).max() > 0
        np.testing.assert_array_equal(result.targets, model.predict_logits(images).argmax(1))
    assert ("grad-cam" in attribute.methods_for(model)) == (name in ("cnn", "hybrid"))


def test_integrated_gradients_add_up_to_the_logit_change(images):
    model = untrained("cnn", widths=(8, 8, 16))
    result = attribute.explain(model, images, "integrated-gradients", target=4)
    logits = model.predict_logits(np.concatenate([images, np.zeros_like(images[:1])]))[:, 4]
    change = logits[:-1] - logits[-1]
    np.testing.assert_allclose(result.maps.sum(axis=(1, 2)) - change, -result.delta, atol=1e-4)
    assert np.abs(result.delta).max() < 0.05 * np.abs(change).max()


def test_targets_and_bad_requests(images):
    model = untrained("linear")
    assert (attribute.explain(model, images, target="Coat").targets == 4).all()
    assert (attribute.explain(model, images, target="7").targets == 7).all()
    for bad in ({"target": "hat"}, {"target": 10}, {"method": "grad-cam"}, {"method": "lime"}):
        with pytest.raises(UserError):
            attribute.explain(model, images, **bad)
    with pytest.raises(UserError, match="uint8"):
        attribute.explain(model, images.astype(np.float32))


def test_linear_templates_are_its_saliency_maps(images):
    model = untrained("linear")
    templates = attribute.templates(model)
    result = attribute.explain(model, images, "saliency")
    np.testing.assert_allclose(result.maps, templates[result.targets], rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError):
        attribute.templates(untrained("mlp", hidden=(8,)))


def torch_twin(mlp):
    """The scratch MLP's weights in a plain torch network (nn.Linear keeps weights as (out, in))."""
    layers = []
    for w, b in zip(mlp.weights, mlp.biases, strict=True):
        linear = nn.Linear(*w.shape)
        linear.weight.data, linear.bias.data = torch.from_numpy(w.T.copy()), torch.from_numpy(b.copy())
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def test_scratch_input_gradient_agrees_with_torch_and_captum(splits):
    mlp = MLP([784, 64, 32, 10], rng=np.random.default_rng(3))
    x = ((splits.x_test[:8].reshape(8, -1) / 255.0 - 0.29) / 0.35).astype(np.float32)
    dlogits = np.random.default_rng(4).standard_normal((8, 10)).astype(np.float32)
    twin = torch_twin(mlp)
    xt = torch.from_numpy(x).requires_grad_(True)
    twin(xt).backward(torch.from_numpy(dlogits))
    np.testing.assert_allclose(mlp.input_gradient(x, dlogits), xt.grad.numpy(), rtol=1e-5, atol=1e-5)

    scratch = pixel.ScratchNet(mlp)
    targets = torch.arange(8) % 10
    for method, kwargs in ((Saliency, {"abs": False}), (IntegratedGradients, {"n_steps": 16})):
        ours = method(scratch).attribute(torch.from_numpy(x), target=targets, **kwargs)
        theirs = method(twin).attribute(torch.from_numpy(x), target=targets, **kwargs)
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_deletion_and_randomisation_tell_a_model_from_noise(splits):
    """Unit-level: a linear model whose weights are one class template; the checks' plumbing, not the bench."""
    model = untrained("linear")
    template = splits.x_train[splits.y_train == 1][:200].mean(axis=0) / 255.0 - 0.2
    with torch.no_grad():
        model.module.fc.weight.zero_()
        # d logit / d pixel = template * 0.02: a logit of about 2 on a trouser, so the probability is not saturated
        model.module.fc.weight[1] = torch.from_numpy(template.ravel().astype(np.float32)) * model.std * 0.02
        model.module.fc.bias.zero_()
    images = splits.x_test[splits.y_test == 1][:50]
    result = attribute.explain(model, images, "integrated-gradients", target=1)
    top, random = evidence.deletion(model, images, result.maps, result.targets)
    assert (top > random).mean() > 0.9
    noise = evidence.randomised(model, seed=1)
    other = attribute.explain(noise, images, "saliency", target=1)
    same = attribute.explain(model, images, "saliency", target=1)
    assert np.median(evidence.rank_correlations(same.maps, other.maps)) < 0.3
    assert np.median(evidence.rank_correlations(same.maps, same.maps)) == pytest.approx(1.0)


# -- on a small trained run (the serve tests' compare run: a CNN and the scratch MLP, 4,000 images, 3 epochs) ----


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn", "scratch-mlp"])
def test_default_maps_pass_deletion_and_randomisation(serve_run, serve_items, name):
    from fmnist.rundir import checkpoint

    model = checkpoint.load(serve_run / name)[0]
    images = serve_items[0][:300]
    result = attribute.explain(model, images)
    top, random = evidence.deletion(model, images, result.maps, result.targets)
    assert (top > random).mean() >= 0.8
    noise = attribute.explain(evidence.randomised(model), images, target=result.targets)
    assert np.median(evidence.rank_correlations(result.maps, noise.maps)) <= 0.3


@pytest.mark.slow
def test_the_explain_command_writes_maps_and_overlays(serve_run, serve_items, tmp_path, capsys):
    import json

    from PIL import Image

    from fmnist.cli.parser import main
    from fmnist.predict import images as image_files
    from serve_helpers import product_photo

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        product_photo(serve_items[0][i]).save(folder / f"item {i}.jpg")
    (folder / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "maps"
    status = main(["explain", str(serve_run / "cnn"), str(folder), "--out", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert status == 2 and [e["file"] for e in doc["errors"]] == [str(folder / "broken.png")]
    assert len(doc["predictions"]) == 3 and doc["method"] == explain.DEFAULT_METHOD
    from fmnist.rundir import checkpoint

    model = checkpoint.load(serve_run / "cnn")[0]
    for entry in doc["predictions"]:
        saved = np.load(entry["map"])
        assert saved.shape == (28, 28) and saved.dtype == np.float32
        seen = image_files.to_fashion_mnist(image_files.load_image(entry["file"]))
        np.testing.assert_allclose(saved, attribute.explain(model, seen[None]).maps[0], rtol=1e-4, atol=1e-6)
        assert entry["target_index"] == entry["class_index"]
        assert Image.open(entry["overlay"]).size == (2 * 28 * 8 + 4, 28 * 8)
    assert main(["explain", str(serve_run / "scratch-mlp"), str(folder / "item 0.jpg"), "--method", "grad-cam"]) == 2
    assert main(["explain", str(serve_run), str(folder / "item 0.jpg")]) == 2  # two models: name one
    assert main(["explain", str(serve_run / "cnn"), str(tmp_path / "missing.png"), "--out", str(out)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("fmnist: error: ") for line in errors)


def test_explain_json_is_i_json_for_long_and_undecodable_names(serve_run, serve_items, tmp_path, capsys):
    """A 255-byte name and one with bytes that are not UTF-8: maps written, every name in the JSON encodable."""
    import json
    import os

    from fmnist.cli.parser import main
    from serve_helpers import product_photo

    folder = tmp_path / "photos"
    folder.mkdir()
    names = [b"y" * 251 + b".png", b"caf\xe9.png"]  # the second is latin-1, not UTF-8
    for i, name in enumerate(names):
        product_photo(serve_items[0][i]).save(os.path.join(os.fsencode(folder), name), format="PNG")
    status = main(["explain", str(serve_run / "cnn"), str(folder), "--out", str(tmp_path / "maps"), "--json"])
    text = capsys.readouterr().out
    text.encode("utf-8")  # no lone surrogates (I-JSON, RFC 7493)
    doc = json.loads(text)
    assert status == 0 and len(doc["predictions"]) == 2 and not doc["errors"]
    assert len(list((tmp_path / "maps").iterdir())) == 4
