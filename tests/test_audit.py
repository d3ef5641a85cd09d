"""fmnist audit on a small subset with the linear model: no fold model scores an image it trained on, and a stopped
audit continues with its finished folds to the same result."""

import dataclasses
import filecmp

import numpy as np
import pytest

from fmnist.errors import UserError
from fmnist.jobs import audit, train
from fmnist.rundir import labels

TINY = audit.Audit(model="linear", folds=3, seed=0, epochs=1, subset=900, threads=1)
TINY_FLAGS = ["--model", "linear", "--folds", "3", "--epochs", "1", "--subset", "900", "--threads", "1"]


def test_no_fold_model_scores_an_image_it_saw(dataset, tmp_path, monkeypatch, capsys):
    from fmnist.cli.parser import main

    seen = []  # what each fold model was really given to train and select on
    real_fit = train.fit_model

    def spying_fit(model, setup, **kwargs):
        seen.append((setup.splits.x_train.copy(), setup.splits.x_val.copy(), setup.splits.x_test.copy()))
        return real_fit(model, setup, **kwargs)

    monkeypatch.setattr(train, "fit_model", spying_fit)
    assert main(["audit", *TINY_FLAGS, "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "report.html").is_file() and "suspects:" in capsys.readouterr().out
    scored = []
    for fold, (x_train, x_val, x_scored) in enumerate(seen):
        with np.load(tmp_path / f"fold-{fold}.npz") as arrays:
            trained, held, mine = arrays["trained"], arrays["held_out"], arrays["scored"]
        # the positions recorded are the images the model got, all from the training file's first 900
        np.testing.assert_array_equal(x_train, dataset.train_images[trained])
        np.testing.assert_array_equal(x_val, dataset.train_images[held])
        np.testing.assert_array_equal(x_scored, dataset.train_images[mine])
        assert max(trained.max(), held.max(), mine.max()) < TINY.subset
        assert not set(mine) & (set(trained) | set(held))
        scored.append(mine)
    every = np.sort(np.concatenate(scored))
    np.testing.assert_array_equal(every, np.arange(TINY.subset))  # each training image scored exactly once
    issues = labels.read_issues(tmp_path / labels.ISSUES)
    assert issues and [i.score for i in issues] == sorted(i.score for i in issues)
    assert {i.file for i in issues} <= {"train", "test"}
    assert all(i.given == dataset.train_labels[i.index] for i in issues if i.file == "train")
    assert all(i.given == dataset.test_labels[i.index] for i in issues if i.file == "test")
    assert main(["audit", *TINY_FLAGS[:3], "4", *TINY_FLAGS[4:], "--out", str(tmp_path)]) == 2  # other settings
    refusal = capsys.readouterr().err.strip()
    assert refusal.endswith("audit.json: an audit with other settings or data; give the same ones or another --out")


def test_a_stopped_audit_continues_to_the_same_result(dataset, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    audit.run(dataset, TINY, whole, progress=False)
    stopped = tmp_path / "stopped"
    real_fold = audit.train_fold

    def stop_at_fold_two(chosen, data, folds, fold, progress):
        if fold == 2:
            raise KeyboardInterrupt  # Ctrl-C while the third fold trains
        return real_fold(chosen, data, folds, fold, progress)

    monkeypatch.setattr(audit, "train_fold", stop_at_fold_two)
    with pytest.raises(KeyboardInterrupt):
        audit.run(dataset, TINY, stopped, progress=False)
    assert sorted(p.name for p in stopped.glob("fold-*.npz")) == ["fold-0.npz", "fold-1.npz"]
    kept = (stopped / "fold-0.npz").stat().st_mtime_ns
    trained = []
    monkeypatch.setattr(audit, "train_fold", lambda *a: trained.append(a[3]) or real_fold(*a))
    audit.run(dataset, TINY, stopped, progress=False)
    assert trained == [2] and (stopped / "fold-0.npz").stat().st_mtime_ns == kept
    assert filecmp.cmp(whole / labels.ISSUES, stopped / labels.ISSUES, shallow=False)
    with np.load(whole / labels.PROBS) as a, np.load(stopped / labels.PROBS) as b:
        np.testing.assert_array_equal(a["train"], b["train"])
        np.testing.assert_array_equal(a["test"], b["test"])


def test_a_model_the_audit_cannot_train_is_refused(dataset, tmp_path):
    with pytest.raises(UserError, match="--model hybrid"):
        audit.run(dataset, dataclasses.replace(TINY, model="hybrid"), tmp_path, progress=False)
