"""Training on an audited set: `--exclude-labels FILE` and `--relabel FILE` (fmnist train and compare).

--exclude-labels takes a label_issues.csv (every flagged training image is dropped from training) or a reviews.json
(the training images a person marked "should be CLASS" are dropped). --relabel takes a reviews.json only: training
and validation images get the label a person gave them. The model's own suggestions never change a label: a
model that relabels the images it is then judged on grades its own homework. Validation keeps every image (so
accuracy with and without is measured on the same images) and changes only by reviews; test accuracy is always
on the original labels, and, where reviews of test images exist, also on the reviewed labels, side by side.

The choice, the file and its SHA-256 go into config.json; a resumed run reads the file again and refuses one that
changed.
"""

import dataclasses
from pathlib import Path

import numpy as np

from fmnist.data import dataset as data_module
from fmnist.errors import UserError
from fmnist.files import sha256_of
from fmnist.metrics import scores
from fmnist.rundir import labels

MODES = ("exclude", "relabel")


@dataclasses.dataclass(frozen=True)
class LabelEdits:
    """What a label file does to a run: training positions dropped, reviewed labels per file."""

    mode: str  # "exclude" or "relabel"
    path: str
    sha256: str
    drop: frozenset  # training-file positions left out of training (exclude)
    train: dict  # training-file position -> reviewed label (relabel: applied to train and validation)
    test: dict  # test-file position -> reviewed label (every reviewed test image: for the reviewed accuracy)

    def record(self):
        """config.json's "labels": the choice, the file and its checksum."""
        return {"mode": self.mode, "file": self.path, "sha256": self.sha256}


def read(mode, path):
    """The LabelEdits of `--exclude-labels path` (mode "exclude") or `--relabel path` ("relabel")."""
    path = Path(path).resolve()  # recorded so: a resumed run finds it from any folder
    flag = "--exclude-labels" if mode == "exclude" else "--relabel"
    if labels.kind_of(path) == "issues":
        if mode == "relabel":
            raise UserError(f"{flag} {path}: takes a reviews.json; a model's suggestions never relabel the data")
        drop = frozenset(i.index for i in labels.read_issues(path) if i.file == "train")
        return LabelEdits(mode, str(path), sha256_of(path), drop, {}, {})
    reviews = labels.read_reviews(path)
    reviewed = {"train": {}, "test": {}}
    for review in reviews:
        if review["decision"] != "unsure":
            label = review["label"] if review["decision"] == "relabel" else None
            reviewed[review["file"]][review["index"]] = label
    wrong = {i: label for i, label in reviewed["train"].items() if label is not None}
    drop = frozenset(wrong) if mode == "exclude" else frozenset()
    return LabelEdits(mode, str(path), sha256_of(path), drop, wrong if mode == "relabel" else {}, reviewed["test"])


def reread(recorded):
    """The LabelEdits a recorded config.json names, from the same file (the checksum must match)."""
    edits = read(recorded["mode"], recorded["file"])
    if edits.sha256 != recorded["sha256"]:
        raise UserError(f"{recorded['file']}: changed since the run started (SHA-256 differs); refused")
    return edits


def apply(splits, dataset, edits):
    """`splits` (split from `dataset` with splits.seed) with training images dropped or relabelled as `edits` say."""
    train_pos, val_pos = data_module.split_positions(dataset.train_labels, splits.seed)
    keep = ~np.isin(train_pos, np.fromiter(edits.drop, np.int64, len(edits.drop)))
    y_train, y_val = relabelled(splits.y_train, train_pos, edits.train), relabelled(splits.y_val, val_pos, edits.train)
    x_train = splits.x_train[keep]
    mean, std = data_module.pixel_stats(x_train)
    return dataclasses.replace(splits, x_train=x_train, y_train=y_train[keep], y_val=y_val, mean=mean, std=std)


def relabelled(given, positions, reviewed):
    """`given` labels with the reviewed ones put in at the rows whose file position was reviewed."""
    out = np.array(given, copy=True)
    for row, position in enumerate(positions):
        if position in reviewed:
            out[row] = reviewed[position]
    return out


def test_figures(edits, test_logits, y_test):
    """metrics.json's reviewed test accuracy (beside the original one), {} without reviews of test images."""
    if edits is None or not edits.test:
        return {}
    reviewed = {i: label for i, label in edits.test.items() if i < len(y_test)}
    fixed = relabelled(y_test, range(len(y_test)), {i: label for i, label in reviewed.items() if label is not None})
    changed = int(np.sum(fixed != y_test))
    return {
        "test_accuracy_reviewed": scores.accuracy(test_logits, fixed),
        "test_reviewed": {"images": len(reviewed), "relabelled": changed},
    }
