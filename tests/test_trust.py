"""Calibration and the unknown rule as users meet them: fitted in every fit, kept in the checkpoint, shown by
`fmnist predict`, refused for an older run until `fmnist evaluate` calibrates it; and the robustness sweep."""

import itertools
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fmnist import api
from fmnist.cli.parser import main
from fmnist.data import corruptions
from fmnist.jobs import robustness
from fmnist.metrics import scores
from fmnist.models import trust
from fmnist.predict import answers
from fmnist.rundir import checkpoint
from serve_helpers import noise


def test_every_fit_calibrates_and_the_argmax_stays(splits):
    small = splits.subset(2000, 1000, 1000)
    model = api.fit(api.model("scratch-mlp", epochs=1), small, progress=False)
    record = model.classifier.trust
    assert record["temperature"] > 0 and record["method"] == trust.METHOD and np.isfinite(record["threshold"])
    raw = model.classifier.predict_logits(small.x_test)
    np.testing.assert_array_equal(api.predict(model, small.x_test), raw.argmax(1))
    result = api.evaluate(model, small)
    assert result["test_accuracy"] == scores.accuracy(raw, small.y_test)
    c = result["calibration"]
    assert c["temperature"] == record["temperature"] and c["val"]["after"]["nll"] <= c["val"]["before"]["nll"]
    assert 0 <= result["unknown"]["val_unknown_rate"] <= 0.05
    assessed = api.assess(model, small.x_test[:5])
    assert assessed.unknown.dtype == bool and assessed.ood_score.shape == (5,)
    assert api.calibration(model, small).axes


@pytest.mark.slow
def test_predict_json_and_text_say_unknown(serve_run, serve_items, tmp_path, capsys):
    images, _ = serve_items
    noise().save(tmp_path / "noise.png")
    Image.fromarray(images[0]).save(tmp_path / "item.png")
    assert (
        main(["predict", str(serve_run / "cnn"), str(tmp_path / "noise.png"), str(tmp_path / "item.png"), "--json"])
        == 0
    )
    entries = {e["file"].rsplit("/", 1)[-1]: e for e in json.loads(capsys.readouterr().out)["predictions"]}
    assert entries["noise.png"]["unknown"] is True and isinstance(entries["noise.png"]["ood_score"], float)
    assert entries["item.png"]["ood_score"] < entries["noise.png"]["ood_score"]
    assert main(["predict", str(serve_run / "cnn"), str(tmp_path / "noise.png")]) == 0
    assert answers.UNKNOWN_TEXT in capsys.readouterr().out


@pytest.mark.slow
def test_an_older_run_is_refused_until_evaluate_calibrates_it(serve_run, tmp_path, capsys):
    run = tmp_path / "old"
    shutil.copytree(serve_run, run)
    model, _ = checkpoint.load(run / "cnn")
    model.trust = None  # what an fmnist before calibration saved
    checkpoint.save(run / "cnn", "cnn", model)
    noise().save(tmp_path / "noise.png")
    assert main(["predict", str(run / "cnn"), str(tmp_path / "noise.png")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "not calibrated" in error and "fmnist evaluate" in error
    assert main(["evaluate", str(run)]) == 0
    assert "calibration" in json.loads((run / "cnn" / "metrics.json").read_text())
    assert main(["predict", str(run / "cnn"), str(tmp_path / "noise.png"), "--json"]) == 0


@pytest.mark.slow
def test_accuracy_does_not_rise_with_severity(serve_run, serve_items):
    images, labels = serve_items
    model, _ = checkpoint.load(serve_run / "cnn")
    record = robustness.sweep({"cnn": model}, images[:400], labels[:400])
    for corruption in ("gaussian-blur", "contrast", "rotation", "impulse-noise"):
        accuracy = [record["clean"]["cnn"], *record["accuracy"]["cnn"][corruption]]
        assert all(later <= earlier + 0.02 for earlier, later in itertools.pairwise(accuracy)), (corruption, accuracy)
        assert accuracy[-1] < accuracy[0] - 0.05, (corruption, accuracy)
    assert record["images"] == 400 and record["mce"]["cnn"] is None  # no linear model to compare with


def test_corruptions_are_seeded_and_grow_with_severity(splits):
    images = splits.x_test[:50]
    for name in corruptions.CORRUPTIONS:
        mild, severe = corruptions.corrupt(images, name, 1), corruptions.corrupt(images, name, 5)
        assert severe.shape == images.shape and severe.dtype == np.uint8
        np.testing.assert_array_equal(mild, corruptions.corrupt(images, name, 1))
        change = [np.abs(c.astype(int) - images).mean() for c in (mild, severe)]
        assert change[0] < change[1], name
