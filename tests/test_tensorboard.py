"""--tensorboard: the event files read back with TensorBoard's own reader (EventAccumulator)."""

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from fmnist.engine import loop
from fmnist.jobs import train
from fmnist.jobs.settings import Setup
from fmnist.jobs.tensorboard import SCALARS
from fmnist.models import registry

TAGS = [tag for tag, _ in SCALARS] + ["train/images_per_s"]


def read(folder):
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def event_folders(root):
    return sorted({path.parent.relative_to(root).as_posix() for path in root.rglob("events.out.tfevents.*")})


@pytest.fixture(scope="module")
def logged(splits, dataset, tmp_path_factory):
    """A linear run (stopped by patience) and a tiny CNN run, each logged to TensorBoard."""
    root = tmp_path_factory.mktemp("tb")
    setup = Setup(splits.quick(1200), dataset, seed=0, progress=False, device="cpu", tensorboard=str(root / "tb"))
    runs = {}
    tiny_cnn = {"epochs": 2, "widths": (8, 16, 32), "batch_size": 64, "precision": "fp32"}
    for name, hparams in (("linear", {"epochs": 4}), ("cnn", tiny_cnn)):
        runs[name] = train.train_one(name, registry.spec(name).complete(hparams), setup, root / name)[1]
    return root / "tb", runs


def test_one_scalar_per_epoch_for_every_tag(logged):
    root, runs = logged
    assert event_folders(root) == ["cnn-seed0", "linear-seed0"]  # one folder per model and seed, nothing else
    for name, metrics in runs.items():
        events = read(root / f"{name}-seed0")
        assert set(TAGS) <= set(events.Tags()["scalars"])
        for tag in TAGS:
            steps = [event.step for event in events.Scalars(tag)]
            assert steps == list(range(1, metrics["epochs"] + 1)), tag
        history = train.layout.load_model_run(root.parent / name, name, "").history
        val = [event.value for event in events.Scalars("val/accuracy")]
        np.testing.assert_allclose(val, history["val_accuracy"], rtol=1e-6)


def test_hparams_with_the_final_metrics_sit_in_the_run_folder(logged):
    root, runs = logged
    events = read(root / "linear-seed0")
    content = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(content)
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(registry.spec("linear").hparams["lr"].default)
    final = events.Scalars("hparam/test_accuracy")
    assert [e.value for e in final] == pytest.approx([runs["linear"]["test_accuracy"]])


def test_confusion_mistakes_and_the_cnn_features_for_the_projector(logged):
    root, _ = logged
    for name in ("linear", "cnn"):
        images = read(root / f"{name}-seed0").Tags()["images"]
        assert {"test/confusion_matrix", "test/worst_mistakes"} <= set(images)
    config = (root / "cnn-seed0" / "projector_config.pbtxt").read_text()
    assert "features" in config and "sprite" in config and "metadata.tsv" in config
    tensors = next((root / "cnn-seed0").rglob("tensors.tsv"))
    rows = tensors.read_text().splitlines()
    assert len(rows[0].split("\t")) == 32  # the tiny CNN's feature width
    assert not (root / "linear-seed0" / "projector_config.pbtxt").exists()


def test_observers_see_every_epoch_including_the_one_patience_ends():
    class Backend:
        def __init__(self):
            self.epoch = 0

        def shuffle(self, n):
            return np.arange(n)

        def train_step(self, x, y, lr):
            return 1.0, 1.0, 0

        def logits(self, x):
            self.epoch += 1
            out = np.zeros((len(x), 10), np.float32)
            out[:, 0] = 1.0 if self.epoch == 1 else -1.0  # right on epoch 1 only: patience 2 stops after epoch 3
            return out

        def weights(self):
            return None

        def load_weights(self, weights):
            pass

    seen = []
    watcher = type("Watcher", (), {"epoch_ended": lambda self, row, facts: seen.append((row["epoch"], facts))})()
    config = loop.LoopConfig("t", epochs=6, batch_size=5, lr=0.1, patience=2, progress=False, observers=(watcher,))
    data = (np.zeros((10, 2)), np.zeros(10, np.int64))
    history = loop.fit(Backend(), data, data, config)
    assert [epoch for epoch, _ in seen] == [row["epoch"] for row in history] == [1, 2, 3]
    assert all(facts["images"] == 10 and facts["images_per_s"] > 0 for _, facts in seen)


@pytest.mark.slow
def test_a_compare_over_seeds_groups_its_runs_under_its_name(tmp_path):
    from fmnist.cli.parser import main

    out, tb = tmp_path / "cmp", tmp_path / "tb"
    argv = ["compare", "--models", "linear", "--subset", "600", "--epochs", "2", "--seeds", "0,1", "--out", str(out)]
    assert main([*argv, "--tensorboard", str(tb), "--no-progress"]) == 0
    assert event_folders(tb) == ["cmp/linear-seed0", "cmp/linear-seed1"]
    assert [e.step for e in read(tb / "cmp" / "linear-seed1").Scalars("train/loss")] == [1, 2]


def test_a_tuning_trial_logs_its_epochs_and_its_hparams_under_the_study(splits, dataset, tmp_path):
    import dataclasses

    from fmnist.jobs import tune

    setup = Setup(tune.without_test(splits.subset(400, 100, 0)), dataset, progress=False, device="cpu")
    setup = dataclasses.replace(setup, tensorboard=str(tmp_path / "tb" / "study"))
    tune.run(tune.Task("linear", setup, 2, tmp_path / "out"), f"sqlite:///{tmp_path / 's.db'}", "study", 1)
    assert event_folders(tmp_path / "tb") == ["study/trial-0"]
    events = read(tmp_path / "tb" / "study" / "trial-0")
    assert [e.step for e in events.Scalars("val/accuracy")] == [1, 2]
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
