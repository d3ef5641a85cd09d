"""label_issues.csv and reviews.json (fmnist.rundir.labels), and training on them (fmnist.jobs.edits)."""

import json

import numpy as np
import pytest

from fmnist.data import dataset as data
from fmnist.errors import UserError
from fmnist.jobs import edits
from fmnist.rundir import labels


def review(file, index, decision, label=None):
    return {"file": file, "index": index, "decision": decision, "label": label, "reviewer": "Ada", "time": "t"}


def test_reviews_round_trip_and_a_changed_file_is_refused(tmp_path):
    path = tmp_path / labels.REVIEWS
    written = [review("train", 3, "relabel", 6), review("test", 9, "right")]
    labels.write_reviews(path, written)
    assert labels.read_reviews(path) == written
    document = json.loads(path.read_text())
    document["reviews"][0]["label"] = 2  # edited by hand: the checksum no longer matches
    path.write_text(json.dumps(document))
    with pytest.raises(UserError, match=f"^{path}: its reviews do not match its sha256"):
        labels.read_reviews(path)
    for bad in ([review("train", 3, "right", 4)], [review("train", 3, "right"), review("train", 3, "unsure")]):
        labels.write_reviews(path, bad)  # a valid checksum does not make a contradictory file acceptable
        with pytest.raises(UserError, match=f"^{path}: reviews"):
            labels.read_reviews(path)
    path.write_text('{"format": "fmnist-reviews", "version": 1, "reviews": [{"file": "val"}], "sha256": ""}')
    with pytest.raises(UserError, match=r"reviews\[0\]"):
        labels.read_reviews(path)


def test_a_bad_issues_line_is_named(tmp_path):
    path = tmp_path / labels.ISSUES
    labels.write_issues(path, [labels.Issue("train", 5, 1, 2, 0.01)])
    assert labels.read_issues(path) == [labels.Issue("train", 5, 1, 2, 0.01)]
    path.write_text(path.read_text() + "test,10000,1,2,0.5,label\n")
    with pytest.raises(UserError, match=f"^{path}: line 3: test,10000"):
        labels.read_issues(path)


def test_exclusion_drops_the_flagged_training_images_and_keeps_validation(dataset, tmp_path):
    splits = data.split(dataset, 0)
    train_pos, val_pos = data.split_positions(dataset.train_labels, 0)
    flagged = [int(train_pos[5]), int(train_pos[7]), int(val_pos[0])]
    labels.write_issues(tmp_path / labels.ISSUES, [labels.Issue("train", i, 0, 1, 0.1) for i in flagged])
    chosen = edits.read("exclude", tmp_path / labels.ISSUES)
    out = edits.apply(splits, dataset, chosen)
    assert len(out.x_train) == len(splits.x_train) - 2  # the validation image stays in validation
    np.testing.assert_array_equal(out.x_train, np.delete(splits.x_train, [5, 7], axis=0))
    np.testing.assert_array_equal(out.y_val, splits.y_val)
    with pytest.raises(UserError, match="never relabel"):
        edits.read("relabel", tmp_path / labels.ISSUES)


def test_relabelling_uses_reviews_only_and_test_accuracy_is_shown_both_ways(dataset, tmp_path):
    splits = data.split(dataset, 0)
    train_pos, val_pos = data.split_positions(dataset.train_labels, 0)
    new = (int(dataset.train_labels[train_pos[0]]) + 1) % 10
    reviewed = [review("train", int(train_pos[0]), "relabel", new), review("train", int(val_pos[1]), "relabel", 3)]
    reviewed += [review("train", int(train_pos[1]), "unsure"), review("test", 0, "relabel", 5)]
    labels.write_reviews(tmp_path / labels.REVIEWS, reviewed)
    out = edits.apply(splits, dataset, edits.read("relabel", tmp_path / labels.REVIEWS))
    assert out.y_train[0] == new and np.array_equal(out.y_train[1:], splits.y_train[1:])
    assert out.y_val[1] == 3 and np.array_equal(np.delete(out.y_val, 1), np.delete(splits.y_val, 1))
    logits = np.eye(10)[np.full(4, 5)]  # predicts class 5 for the first four test images
    figures = edits.test_figures(edits.read("relabel", tmp_path / labels.REVIEWS), logits, dataset.test_labels[:4])
    assert figures["test_reviewed"] == {"images": 1, "relabelled": int(dataset.test_labels[0] != 5)}
    assert figures["test_accuracy_reviewed"] == np.mean(np.r_[5, dataset.test_labels[1:4]] == 5)


def test_train_records_the_file_and_a_changed_file_stops_the_resume(dataset, tmp_path, capsys):
    from fmnist.cli.parser import main

    issues = tmp_path / labels.ISSUES
    labels.write_issues(issues, [labels.Issue("train", 1, 0, 1, 0.1)])
    out = tmp_path / "run"
    argv = ["train", "linear", "--subset", "300", "--epochs", "1", "--no-progress", "--no-report", "--out", str(out)]
    assert main([*argv, "--exclude-labels", str(issues)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["labels"] == {"mode": "exclude", "file": str(issues.resolve()), "sha256": edits.sha256_of(issues)}
    assert edits.reread(config["labels"]).drop == {1}
    labels.write_issues(issues, [labels.Issue("train", 2, 0, 1, 0.1)])
    with pytest.raises(UserError, match="changed since the run started"):
        edits.reread(config["labels"])
