"""--refit (fmnist.jobs.refit): the refit trains only once every choice is made on validation, keeps the selection
run's held-out values, trains on train + validation for the chosen epochs, and resumes; intervals over seeds;
the leaderboard's machinery (bench/bench_leaderboard.py --quick, its verdict)."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist.data.dataset import pixel_stats
from fmnist.jobs import compare, refit, settings, train
from fmnist.models import registry
from fmnist.report import seeds as seeds_report
from fmnist.rundir import checkpoint, layout

ROOT = Path(__file__).resolve().parents[1]


def _watch_fits(monkeypatch, out):
    """Record, for every training that starts, its training images and whether the selection was complete."""
    calls, real = [], train.fit_model

    def watched(model, setup, **kwargs):
        manifest = out / checkpoint.MANIFEST
        trust_file = next(out.glob("model.*/trust.json"), None)
        complete = (out / layout.METRICS).is_file() and manifest.is_file() and trust_file is not None
        calls.append({"images": len(setup.splits.x_train), "epochs": model.hparams["epochs"], "complete": complete})
        return real(model, setup, **kwargs)

    monkeypatch.setattr(train, "fit_model", watched)
    return calls


@pytest.fixture(scope="module")
def setup(dataset):
    return settings.build(dataset, seed=0, subset=400, threads=1, progress=False, refit=True)


def test_refit_starts_after_every_choice_and_keeps_the_held_out_values(setup, tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = _watch_fits(monkeypatch, out)
    hparams = registry.spec("linear").resolve("fast", {"epochs": 4})
    chosen, refitted = train.selection_then_refit("linear", hparams, setup, out)

    n_train, n_val = len(setup.splits.x_train), len(setup.splits.x_val)
    assert [c["images"] for c in calls] == [n_train, n_train + n_val]
    assert calls[1]["complete"] and not calls[0]["complete"]  # the refit began after the selection was written
    assert calls[1]["epochs"] == chosen["best_epoch"]  # the epoch count chosen on validation
    assert refitted["epochs"] == chosen["best_epoch"]  # every chosen epoch ran: no early stopping

    selection, _ = checkpoint.load(out)
    model, _ = checkpoint.load(out / refit.FOLDER)
    held_out = [k for k in selection.trust if k not in refit.TRAINING_FACTS]
    assert {"temperature", "threshold", "standardise", "rate", "method"} <= set(held_out)
    assert "sets" in held_out  # the prediction sets' calibration scores, too
    for key in held_out:
        assert same(model.trust[key], selection.trust[key]), key
    both = np.concatenate([setup.splits.x_train, setup.splits.x_val])
    assert model.trust["pixel_stats"] == pytest.approx(pixel_stats(both))  # a training fact: the refit's own

    config = json.loads((out / refit.FOLDER / layout.CONFIG).read_text())
    assert config["hparams"]["keep"] == "last" and config["hparams"]["epochs"] == chosen["best_epoch"]
    assert config["refit_of"]["train_images"] == n_train + n_val
    assert sorted(config["refit_of"]["kept_from_selection"]) == sorted(held_out)
    assert json.loads((out / layout.CONFIG).read_text())["refit"] is True
    assert refitted["unknown"]["threshold"] == selection.trust["threshold"]  # measured on test at the kept value


def test_resume_skips_a_finished_selection_and_continues_the_refit(setup, tmp_path, monkeypatch):
    out = tmp_path / "run"
    hparams = registry.spec("linear").resolve("fast", {"epochs": 2})
    train.selection_then_refit("linear", hparams, setup, out)
    first = json.loads((out / refit.FOLDER / layout.METRICS).read_text())
    (out / refit.FOLDER / layout.METRICS).unlink()  # as if stopped before its end
    calls = _watch_fits(monkeypatch, out)
    _, again = train.selection_then_refit("linear", hparams, setup, out, resume=True)
    assert [c["complete"] for c in calls] == [True]  # only the refit trained
    assert again["test_accuracy"] == first["test_accuracy"]  # the same seed, the same choices: the same model


def test_compare_over_seeds_with_refit_has_intervals(dataset, tmp_path):
    plan = {"models": ["linear"], "seeds": [0, 1], "seed": 0, "preset": "fast", "subset": 300, "epochs": 2}
    plan |= {"data": dataset.provenance(), "refit": True}

    def setup_for(seed):
        return settings.build(dataset, seed=seed, subset=300, threads=1, progress=False, refit=True)

    summary = compare.run_compare(plan, tmp_path, setup_for, report=False)
    refitted = summary["linear"][compare.REFIT_MEASURE]
    assert len(refitted["values"]) == 2 and refitted["interval"][0] < refitted["mean"] < refitted["interval"][1]
    seed_record = json.loads((tmp_path / "seed-1" / layout.COMPARE).read_text())
    assert seed_record["results"]["linear"]["refit"]["refit"]["test_accuracy"] == refitted["values"][1]
    header, _ = seeds_report.seeds_table(summary)
    assert any("refit test" in cell for cell in header)
    assert (tmp_path / "seed-0" / "linear" / refit.FOLDER / layout.METRICS).is_file()


def test_spread_gives_a_student_t_interval():
    s = compare.spread([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 degrees of freedom) * sd 1 / sqrt(3)
    assert s["interval"] == pytest.approx([2 - half, 2 + half]) and s["std"] == pytest.approx(1.0)
    assert compare.spread([0.9])["interval"] is None


def test_refit_splits_train_on_everything_and_keep_test(splits):
    small = splits.subset(200, 50, 30)
    both = refit.splits_for_refit(small)
    assert len(both.x_train) == 250 and np.array_equal(both.x_test, small.x_test)
    assert np.array_equal(both.x_train[200:], small.x_val) and np.array_equal(both.y_train[200:], small.y_val)
    assert (both.mean, both.std) == pytest.approx(pixel_stats(both.x_train))
    assert np.array_equal(both.x_val, small.x_val[: refit.MONITOR])  # watched only


@pytest.fixture(scope="module")
def leaderboard():
    spec = importlib.util.spec_from_file_location("bench_leaderboard", ROOT / "bench" / "bench_leaderboard.py")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return module


def _row(kind, accuracy, seconds):
    return {
        "recipe": f"{kind} {accuracy}",
        "kind": kind,
        "test_accuracy": {"mean": accuracy},
        "train_seconds": {"mean": seconds},
    }


def test_the_verdict_names_a_peer_above_fmnist_at_its_time(leaderboard):
    rows = [_row("fmnist", 0.90, 10), _row("fmnist", 0.93, 100), _row("peer", 0.92, 50), _row("peer", 0.92, 200)]
    assert [b["peer"] for b in leaderboard.verdict(rows)] == ["peer 0.92"]  # the 50 s one: fmnist has 0.90 by then
    assert leaderboard.verdict(rows)[0]["seconds"] == 50
    assert leaderboard.verdict([_row("fmnist", 0.9, 10), _row("peer", 0.5, 1)])[0]["fmnist_best_at_or_below"] is None


@pytest.mark.slow
def test_leaderboard_quick_runs_every_part(tmp_path):
    out, png = tmp_path / "lb.json", tmp_path / "lb.png"
    command = [
        sys.executable,
        str(ROOT / "bench" / "bench_leaderboard.py"),
        "--quick",
        "--peers",
        "logistic,hog-svm,pytorch-examples",
    ]
    command += ["--fmnist", "linear@0", "--work", str(tmp_path / "work"), "--out", str(out), "--plot", str(png)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    doc = json.loads(out.read_text())
    recipes = [r["recipe"] for r in doc["rows"]]
    assert len(recipes) == 5 and "fmnist linear (fast) + refit" in recipes
    for r in doc["rows"]:
        assert 0 <= r["test_accuracy"]["mean"] <= 1 and r["train_seconds"]["mean"] > 0 and r["parameters"] > 0
    assert png.stat().st_size > 10_000 and doc["header"]["cpu"]
    for beaten in doc["beaten"]:  # a failure is loud and names the peer; which peers fail is not asserted here
        assert done.returncode == 1 and f"LEADERBOARD FAIL: {beaten['peer']}" in done.stderr


@pytest.mark.slow
def test_train_refit_on_the_command_line(tmp_path):
    out = tmp_path / "run"
    fmnist = [sys.executable, "-m", "fmnist", "train", "linear"]
    quick = ["--subset", "300", "--epochs", "2", "--no-progress", "--no-report"]
    done = subprocess.run([*fmnist, "--refit", *quick, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refit on train + validation" in done.stdout and (out / refit.FOLDER / layout.METRICS).is_file()
    again = subprocess.run([*fmnist, "--resume", str(out), "--refit"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "drop --refit" in again.stderr
    again = subprocess.run([*fmnist, "--resume", str(out)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "nothing to resume" in again.stderr and "Traceback" not in again.stderr


def same(a, b):
    """Equal values, arrays and dicts of arrays alike."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(same, a, b))
    return np.array_equal(np.asarray(a), np.asarray(b))
