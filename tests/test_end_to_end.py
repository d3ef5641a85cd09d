"""End to end on a small real subset: compare all five models, then evaluate, report and predict from the run."""

import json

import numpy as np
import pytest
from PIL import Image

from fmnist.cli.parser import main
from fmnist.metrics import scores
from fmnist.models.registry import REGISTRY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "compare"
    argv = ["compare", "--subset", "3000", "--epochs", "3", "--seed", "3", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    return out


def test_compare_writes_every_model(compare_run):
    summary = json.loads((compare_run / "compare.json").read_text())
    assert summary["models"] == list(REGISTRY)
    for name in REGISTRY:
        metrics = json.loads((compare_run / name / "metrics.json").read_text())
        assert metrics["test_accuracy"] > 0.3, name  # chance is 0.1
        config = json.loads((compare_run / name / "config.json").read_text())
        assert config["seed"] == 3 and config["data"]["verified"] and config["subset"] == 3000
        assert (compare_run / name / "history.csv").read_text().startswith("epoch,loss,accuracy,val_loss")
    html = (compare_run / "report.html").read_text()
    assert all(name in html for name in REGISTRY)


def test_evaluate_reproduces_the_saved_predictions_computing_metrics_once(compare_run, capsys, monkeypatch):
    before = {n: np.load(compare_run / n / "predictions.npz")["test_logits"] for n in REGISTRY}
    metrics_before = {n: json.loads((compare_run / n / "metrics.json").read_text()) for n in REGISTRY}
    calls = []
    counted = scores.metrics_from_logits
    monkeypatch.setattr(scores, "metrics_from_logits", lambda *a, **k: calls.append(1) or counted(*a, **k))
    assert main(["evaluate", str(compare_run), "--split", "val"]) == 0
    assert len(calls) == 2 * len(REGISTRY)  # validation and test of each model, once: the report reads them
    for name in REGISTRY:
        after = np.load(compare_run / name / "predictions.npz")["test_logits"]
        np.testing.assert_allclose(after, before[name], rtol=1e-4, atol=1e-4)
        now = json.loads((compare_run / name / "metrics.json").read_text())
        assert now["test_accuracy"] == pytest.approx(metrics_before[name]["test_accuracy"], abs=2e-3)
        assert now["train_seconds"] == metrics_before[name]["train_seconds"]
    assert "val split" in capsys.readouterr().out


def test_report_rebuilds(compare_run, capsys):
    (compare_run / "report.html").unlink()
    assert main(["report", str(compare_run)]) == 0
    assert (compare_run / "report.html").stat().st_size > 10_000


def test_predict_every_kind_on_product_style_photos(compare_run, tmp_path, capsys):
    test = np.load(compare_run / "test_images.npz")
    photo = tmp_path / "a coat ü.jpg"
    Image.fromarray(255 - test["images"][0]).resize((140, 140)).save(photo)
    for name in REGISTRY:
        assert main(["predict", str(compare_run / name), str(photo), "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["predictions"][0]["file"].endswith("a coat ü.jpg")
        assert len(doc["predictions"][0]["top_k"]) == 3


def test_predict_reports_bad_files_and_goes_on(compare_run, tmp_path, capsys):
    good = tmp_path / "good.png"
    Image.fromarray(np.load(compare_run / "test_images.npz")["images"][1]).save(good)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    code = main(["predict", str(compare_run / "linear"), str(bad), str(good), str(tmp_path / "missing.png")])
    captured = capsys.readouterr()
    assert code == 2
    assert "good.png" in captured.out
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2 and any("bad.png" in e for e in errors) and any("missing.png" in e for e in errors)


def test_predict_refuses_a_path_that_is_not_a_model(tmp_path, capsys):
    assert main(["predict", str(tmp_path), str(tmp_path)]) == 2
    assert "not a model" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["missing", "empty", "half-written"])
def test_report_on_a_bad_run_dir_is_one_line(compare_run, tmp_path, capsys, damage):
    target = tmp_path / "run"
    if damage == "empty":
        target.mkdir()
    elif damage == "half-written":
        import shutil

        shutil.copytree(compare_run, target)
        (target / "cnn" / "predictions.npz").unlink()
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(target) in err[0]
