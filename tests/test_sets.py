"""Prediction sets: the finite-sample threshold on scores of known distribution, the class-conditional variant,
agreement with crepes, storage under the checkpoint, and the set in every answer (CLI, JSON, HTTP, ONNX graph)."""

import itertools
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from fmnist.cli.parser import main
from fmnist.data.dataset import CLASS_NAMES
from fmnist.errors import UserError
from fmnist.jobs import robustness
from fmnist.metrics import conformal
from fmnist.models import sets, trust
from fmnist.predict import sets as answer_sets
from fmnist.rundir import checkpoint, export


def test_the_threshold_is_the_ceil_n_plus_1_rank_and_covers_as_promised():
    """Uniform scores: the k-th smallest of n covers a fresh one with probability exactly k / (n + 1)."""
    n, level = 99, 0.95
    k = conformal.rank(n, level)
    assert k == 95  # ⌈100 · 0.95⌉
    rng = np.random.default_rng(0)
    trials = rng.random((4000, n))
    thresholds = np.array([conformal.marginal_threshold(t, level) for t in trials])
    np.testing.assert_array_equal(thresholds, np.sort(trials, axis=1)[:, k - 1])
    covered = rng.random(4000) <= thresholds
    assert abs(covered.mean() - k / (n + 1)) < 3 * np.sqrt(0.05 * 0.95 / 4000)  # 0.95 ± 3 standard errors
    # n = 19 allows at most 19 / 20: a higher level has no finite threshold, the set is every class
    assert conformal.marginal_threshold(np.arange(19.0), 0.95) == 18.0
    assert conformal.marginal_threshold(np.arange(19.0), 0.96) == np.inf
    assert conformal.rank(9, 0.9) == 9  # (n + 1)(1 − α) an integer: no rounding up past it


def test_training_conditional_thresholds_fall_short_for_at_most_delta_of_calibration_draws():
    """Uniform scores: the threshold is its own coverage. With δ, the share of calibration draws whose threshold
    covers less than the level is at most δ (and near it: the rank is the smallest that keeps the promise)."""
    n, level, delta = 200, 0.9, 0.1
    k = conformal.rank(n, level, delta)
    beta = pytest.importorskip("scipy.stats").beta
    assert beta.cdf(level, k, n + 1 - k) <= delta < beta.cdf(level, k - 1, n + 2 - k)
    assert conformal.rank(n, level) < k < conformal.rank(n, level, 0.01)
    rng = np.random.default_rng(4)
    thresholds = np.array([conformal.quantile(np.sort(t), level, delta) for t in rng.random((4000, n))])
    short = (thresholds < level).mean()
    assert delta - 0.03 < short <= delta + 3 * np.sqrt(delta * (1 - delta) / 4000)
    # textbook thresholds fall short about half the time: the promise there is on average over draws
    plain = np.array([conformal.quantile(np.sort(t), level) for t in rng.random((4000, n))])
    assert (plain < level).mean() > 0.3
    assert conformal.quantile(np.arange(19.0), 0.9, delta) == np.inf  # 19 scores cannot promise 90 % at δ = 0.1


def test_class_conditional_thresholds_cover_every_class_where_one_threshold_does_not():
    """Two classes, one hard (scores near 1), one easy (near 0): one marginal threshold under-covers the hard
    class; one threshold per class covers each at the level."""
    rng = np.random.default_rng(1)
    level, hits = 0.9, {"marginal": [], "class": []}
    for _ in range(300):
        labels = rng.integers(0, 2, 400)
        scores = np.where(labels == 0, rng.beta(5, 1, 400), rng.beta(1, 5, 400))
        fresh = np.where(np.arange(200) % 2 == 0, rng.beta(5, 1, 200), rng.beta(1, 5, 200))
        fresh_labels = np.arange(200) % 2
        per_class = conformal.sorted_by_class(scores, labels, 2)
        hard = fresh_labels == 0
        hits["marginal"].append((fresh[hard] <= conformal.marginal_threshold(scores, level)).mean())
        hits["class"].append((fresh[hard] <= conformal.class_thresholds(per_class, level)[0]).mean())
    assert np.mean(hits["marginal"]) < level - 0.03
    assert level <= np.mean(hits["class"]) < level + 0.02


def test_sets_agree_with_crepes():
    """crepes' conformal p-values (no smoothing): our set is {y : p_y > 1 − level}, the textbook set. (crepes'
    own predict_set keeps p_y ≥ 1 − level, one rank more where (n + 1)(1 − level) is a whole number.)"""
    crepes = pytest.importorskip("crepes")
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.full(10, 0.3), 900)
    labels = np.array([rng.choice(10, p=p) for p in probs])
    cal, new = slice(0, 600), slice(600, 900)
    scores = conformal.class_scores(probs)
    true = scores[cal][np.arange(600), labels[cal]]
    per_class = conformal.sorted_by_class(true, labels[cal], 10)
    marginal = crepes.ConformalClassifier().fit(true).predict_p(scores[new], smoothing=False)
    mondrian = crepes.ConformalClassifier().fit(true, bins=labels[cal])
    by_class = np.array(
        [mondrian.predict_p(scores[new], bins=np.full(300, c), smoothing=False)[:, c] for c in range(10)]
    ).T
    for level in (0.8, 0.9, 0.95, 0.99):
        ours = conformal.sets_from_scores(scores[new], conformal.marginal_threshold(true, level))
        np.testing.assert_array_equal(ours, marginal > 1 - level + 1e-12)
        ours = conformal.sets_from_scores(scores[new], conformal.class_thresholds(per_class, level))
        np.testing.assert_array_equal(ours, by_class > 1 - level + 1e-12)


def test_aps_and_raps_scores_by_hand():
    probs = np.array([[0.5, 0.3, 0.2]])
    np.testing.assert_allclose(conformal.class_scores(probs, "lac"), [[0.5, 0.7, 0.8]])
    np.testing.assert_allclose(conformal.class_scores(probs, "aps"), [[0.5, 0.8, 1.0]])
    penalty = conformal.RAPS_LAMBDA * np.array([0, 1, 2])
    np.testing.assert_allclose(conformal.class_scores(probs, "raps"), np.array([[0.5, 0.8, 1.0]]) + penalty)
    with pytest.raises(ValueError, match="conformity score 'x'"):
        conformal.class_scores(probs, "x")


@pytest.mark.parametrize("bad", ["0", "1", "1.5", "-0.1", "95", "nan", "abc"])
def test_bad_coverage_is_one_line(bad):
    with pytest.raises(ValueError, match="coverage") as caught:
        answer_sets.coverage_value(bad)
    assert "\n" not in str(caught.value)


def test_words_and_json():
    assert answer_sets.words((6, 0), 0.95) == "Shirt or T-shirt/top (95 %)"
    assert answer_sets.words((6, 0, 2), 0.9) == "Shirt, T-shirt/top or Pullover (90 %)"
    assert answer_sets.words((), 0.95) == "no class (95 %)"
    assert answer_sets.as_json((1,), 0.99) == {"set": ["Trouser"], "coverage": 0.99}


def test_the_record_survives_save_and_load_and_a_tampered_one_is_refused(tmp_path):
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(10), 500)
    labels, outlier = rng.integers(0, 10, 500), rng.normal(size=500)
    holder = type("Holder", (), {})()
    holder.trust = {"temperature": 1.0, "method": "energy", "rate": 0.05, "pixel_stats": (0.3, 0.3), "gaussians": {}}
    holder.trust["threshold"], holder.trust["sets"] = 1.0, sets.fit(probs, labels, outlier)
    trust.save(holder, tmp_path)
    loaded = trust.load(type("Holder", (), {})(), tmp_path)
    assert loaded["gaussians"] == {} and loaded["sets"]["score"] == "lac"
    assert loaded["sets"]["widen"] == holder.trust["sets"]["widen"]
    fresh = rng.normal(size=500) * 3
    np.testing.assert_array_equal(
        sets.mask(loaded["sets"], probs, 0.9, fresh), sets.mask(holder.trust["sets"], probs, 0.9, fresh)
    )
    with pytest.raises(ValueError, match="unknown-input score"):
        sets.mask(loaded["sets"], probs, 0.9)  # widening sets need the images' scores
    record = json.loads((tmp_path / trust.JSON).read_text())
    record["sets"]["sizes"][0] += 1
    (tmp_path / trust.JSON).write_text(json.dumps(record))
    with pytest.raises(UserError, match="set scores are missing or not the sizes"):
        trust.load(type("Holder", (), {})(), tmp_path)


def test_sets_widen_with_the_unknown_score_and_leave_typical_images_alone():
    """The widened score lowers every class's score by rate · max(0, u − u₀): sets only grow as u grows, reach
    every class far out, and images at or under u₀ (99 % of the calibration ones) get the plain LAC set."""
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.full(10, 0.2), 3000)
    labels = np.array([rng.choice(10, p=p) for p in probs])
    outlier = rng.normal(size=3000)
    record = sets.fit(probs, labels, outlier)
    start = record["widen"]["from"]
    assert np.mean(outlier > start) == pytest.approx(1 - sets.WIDEN_FROM, abs=0.002)
    plain = sets.fit(probs, labels)
    new = rng.dirichlet(np.full(10, 0.2), 500)
    typical = np.full(500, start)
    # under u₀ the scores are LAC's; the thresholds move only as far as the few widened calibration scores allow
    assert np.abs(sets.scores(record, new, typical) - conformal.class_scores(new)).max() == 0
    sizes = [sets.mask(record, new, 0.95, typical + d).sum(1) for d in (0.0, 1.0, 3.0, 10.0, 100.0)]
    assert all((later >= earlier).all() for earlier, later in itertools.pairwise(sizes))
    assert sizes[-1].min() == 10 and sizes[1].mean() > sizes[0].mean()
    same = sets.mask(record, new, 0.95, typical) == sets.mask(plain, new, 0.95)
    assert same.mean() > 0.99


def test_the_graph_draws_the_sets_fmnist_gives(splits):
    """A small CNN trained for an epoch, calibrated on 600 validation images: the exported graph's sets (its
    thresholds and its own unknown-input score, widening included) are fmnist's, on test items and on noise."""
    from fmnist.models.classifiers import CNNClassifier

    model = CNNClassifier(widths=(4, 8, 8), tta=0, epochs=1, batch_size=64)
    model.fit(splits.quick(2400), seed=0, progress=False)  # fit ends with trust.calibrate: T, unknown rule, sets
    noise = np.random.default_rng(6).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    images = np.concatenate([splits.x_test[:300], noise])
    with torch.no_grad():
        _, _, in_set = export.graph_of(model)(torch.from_numpy(images.copy()))
    assessed = trust.assess(model, images)
    expected = answer_sets.mask(model, assessed, 0.95)
    assert np.array_equal(in_set.numpy(), expected)
    unwidened = {k: v for k, v in model.trust["sets"].items() if k != "widen"}
    assert (expected != sets.mask(unwidened, assessed.probs, 0.95)).any()  # the widening is drawn, not left out


# -- on a trained run (the session's serve_run: a small cnn and the scratch MLP) ----------------------------------


@pytest.mark.slow
def test_cli_json_and_http_give_the_same_set(serve_run, serve_items, server, tmp_path, capsys):
    images, _ = serve_items
    paths = []
    for i in range(6):
        Image.fromarray(images[i]).save(tmp_path / f"item{i}.png")
        paths.append(str(tmp_path / f"item{i}.png"))
    assert main(["predict", str(serve_run / "cnn"), *paths, "--json", "--coverage", "0.9"]) == 0
    cli = json.loads(capsys.readouterr().out)["predictions"]
    files = [("files", (p.rsplit("/", 1)[-1], Path(p).read_bytes(), "image/png")) for p in paths]
    http = httpx.post(server.url + "/predict?coverage=0.9", files=files, data={"model": "cnn"}, timeout=60).json()
    assert [e["set"] for e in cli] == [e["set"] for e in http["predictions"]]
    for entry in cli + http["predictions"]:
        probability = {t["class"]: t["probability"] for t in entry["top_k"]}
        assert entry["coverage"] == 0.9 and len(set(entry["set"])) == len(entry["set"])
        ranked = [probability[n] for n in entry["set"] if n in probability]
        assert ranked == sorted(ranked, reverse=True)  # most probable first
    assert sum(len(e["set"]) for e in cli) >= len(cli) - 1  # a few clean test items: sets, mostly not empty
    assert main(["predict", str(serve_run / "cnn"), paths[0], "--json"]) == 0
    members = [CLASS_NAMES.index(n) for n in json.loads(capsys.readouterr().out)["predictions"][0]["set"]]
    assert main(["predict", str(serve_run / "cnn"), paths[0]]) == 0
    assert f" — {answer_sets.words(members, 0.95)}" in capsys.readouterr().out
    bad = httpx.post(server.url + "/predict?coverage=1.2", files=files[:1], timeout=60)
    assert bad.status_code == 400 and "coverage 1.2" in bad.json()["detail"]
    assert main(["predict", str(serve_run / "cnn"), paths[0], "--coverage", "0"]) == 2
    assert "--coverage 0: must lie strictly between 0 and 1" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_without_sets_is_refused_until_evaluate_adds_them(serve_run, tmp_path, capsys):
    run = tmp_path / "old"
    shutil.copytree(serve_run, run)
    model, _ = checkpoint.load(run / "cnn")
    temperature = model.trust["temperature"]
    del model.trust["sets"]  # what an fmnist before prediction sets saved
    checkpoint.save(run / "cnn", "cnn", model)
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", str(run / "cnn"), str(tmp_path / "x.png")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "no prediction sets" in error and "fmnist evaluate" in error
    assert main(["evaluate", str(run)]) == 0
    model, _ = checkpoint.load(run / "cnn", calibrated=True)
    assert model.trust["temperature"] == temperature  # added, nothing refitted
    figures = json.loads((run / "cnn" / "metrics.json").read_text())["sets"]["levels"]
    assert set(figures) == {"0.90", "0.95", "0.99"}


@pytest.mark.slow
def test_set_sizes_grow_with_corruption_severity(serve_run, serve_items):
    images, labels = serve_items
    model, _ = checkpoint.load(serve_run / "cnn")
    record = robustness.sweep({"cnn": model}, images[:300], labels[:300])
    shift = record["sets"]["models"]["cnn"]
    sizes = [shift["clean"]["size"], *np.mean([shift["size"][c] for c in record["corruptions"]], axis=0)]
    assert all(later >= earlier - 0.02 for earlier, later in itertools.pairwise(sizes)), sizes
    assert sizes[-1] > sizes[0] + 0.2, sizes
    assert 0 <= shift["photos"]["coverage"] <= 1 and shift["photos"]["size"] >= 1
