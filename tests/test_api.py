"""fmnist.api on a small real subset: it trains exactly as `fmnist train` does, evaluates into the report's metrics,
returns figures that render, and refuses bad input with one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from fmnist import api
from fmnist.cli.parser import main
from fmnist.errors import UserError

SUBSET, EPOCHS = 1000, 2


@pytest.fixture(scope="module")
def splits():
    return api.load_splits(seed=0, subset=SUBSET)


@pytest.fixture(scope="module")
def trained(splits):
    return api.compare("linear,cnn,hybrid", splits, epochs=EPOCHS, progress=False)


FRESH_FIT = """
import json, sys
import numpy as np, torch
from fmnist import api
splits = api.load_splits(seed=1, subset=2000)
model = api.fit(api.model("cnn", epochs=1, widths=[8, 16, 16]), splits, seed=1, progress=False)
facts = {"threads": torch.get_num_threads(), "precision": model.classifier.hparams["precision"]}
cli = api.load(sys.argv[1])
np.savez(sys.argv[2], api=api.probabilities(model, splits.x_test), cli=api.probabilities(cli, splits.x_test))
print(json.dumps(facts))
"""


@pytest.mark.slow
def test_fit_in_a_fresh_process_trains_with_the_threads_and_precision_of_fmnist_train(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    argv = ["train", "cnn", "--seed", "1", "--subset", "2000", "--epochs", "1", "--widths", "8", "16", "16"]
    run = tmp_path / "run"
    argv += ["--no-progress", "--no-report", "--out", str(run)]
    subprocess.run([sys.executable, "-m", "fmnist", *argv], check=True, env=env)
    out = subprocess.run(
        [sys.executable, "-c", FRESH_FIT, str(run), str(tmp_path / "probs.npz")],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    config = json.loads((run / "config.json").read_text())
    assert json.loads(out.splitlines()[-1]) == {
        "threads": config["threads"],
        "precision": config["hparams"]["precision"],
    }
    probs = np.load(tmp_path / "probs.npz")
    np.testing.assert_array_equal(probs["api"], probs["cli"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["linear", "scratch-mlp"])
def test_fit_gives_the_same_model_as_fmnist_train(name, splits, tmp_path):
    argv = ["train", name, "--subset", str(SUBSET), "--epochs", str(EPOCHS), "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    fitted = api.fit(api.model(name, epochs=EPOCHS), splits, progress=False)
    loaded = api.load(tmp_path)
    assert (loaded.name, loaded.seed, loaded.hparams) == (name, 0, fitted.hparams)
    np.testing.assert_array_equal(api.probabilities(fitted, splits.x_test), api.probabilities(loaded, splits.x_test))
    np.testing.assert_array_equal(fitted.history["val_accuracy"], loaded.history["val_accuracy"])


def test_compare_reuses_the_cnn_in_the_hybrid(trained):
    assert list(trained) == ["linear", "cnn", "hybrid"]
    assert trained["hybrid"].classifier.cnn is trained["cnn"].classifier
    assert all(len(m.history["epoch"]) <= EPOCHS for m in trained.values())


def test_evaluate_gives_the_report_metrics(trained, splits):
    result = api.evaluate(trained["linear"], splits)
    assert result["test_accuracy"] == result["test"]["accuracy"]
    assert result["test_accuracy"] == np.mean(api.predict(trained["linear"], splits.x_test) == splits.y_test)
    assert np.sum(result["val"]["confusion_matrix"]) == len(splits.y_val)
    assert api.table({"linear": result}).splitlines()[1].startswith("linear")


def test_figures_are_returned_and_render(trained, splits, tmp_path):
    path = tmp_path / "boot.png"
    Image.fromarray(255 - splits.x_test[0]).resize((140, 140)).save(path)
    prediction = api.predict_image(trained["cnn"], path, top_k=2)
    assert prediction.image.shape == (28, 28) and len(prediction.top) == 2
    figures = [
        api.examples(splits, per_class=2),
        api.learning_curves(trained["cnn"]),
        api.convergence(trained),
        api.confusion_matrix(api.evaluate(trained["cnn"], splits), split="val"),
        api.misclassified(trained["linear"], splits, count=4),
        api.feature_space(trained["hybrid"], splits, sample=50),
        api.prediction_figure(prediction),
    ]
    for figure in figures:
        assert isinstance(figure, Figure)
        assert figure._repr_png_().startswith(b"\x89PNG")  # what Jupyter shows inline


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t, s: api.model("resnet"), "model 'resnet': choose one of"),
        (lambda t, s: api.model("mlp", widths=(3,)), "mlp: unknown hyper-parameter 'widths'"),
        (lambda t, s: api.model("mlp", preset="huge"), "preset 'huge'"),
        (lambda t, s: api.model("hybrid", cnn=t["linear"]), "hybrid cnn=: expected a trained 'cnn' Model"),
        (lambda t, s: api.evaluate(api.model("mlp"), s), "mlp: not trained yet"),
        (lambda t, s: api.compare(["linear"], s, epoch=1), "compare: no model among linear has a hyper-parameter"),
        (lambda t, s: api.fit(api.model("mlp"), s.x_train), "splits: expected the result of api.load_splits()"),
        (lambda t, s: api.predict(t["linear"], s.x_test[:2] / 255), "images: expected uint8 (N, 28, 28)"),
        (lambda t, s: api.feature_space(t["linear"], s), "linear: has no feature layer"),
        (lambda t, s: api.confusion_matrix({"model": "x"}, split="train"), "split 'train'"),
    ],
)
def test_bad_input_is_a_one_line_user_error(trained, splits, call, message):
    with pytest.raises(UserError) as error:
        call(trained, splits)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_load_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="not a model"):
        api.load(tmp_path)
