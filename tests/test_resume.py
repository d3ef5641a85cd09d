"""Interrupted training continues bit for bit: the state file, the signal handling, and every training loop."""

import csv
import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from fmnist.cli.parser import main
from fmnist.engine import loop, resume
from fmnist.errors import Diverged, Interrupted, UserError
from fmnist.jobs import train
from fmnist.jobs.settings import Setup
from fmnist.models import registry
from fmnist.models.classifiers import CNNClassifier, LinearClassifier, MLPClassifier
from fmnist.models.hybrid import HybridClassifier
from fmnist.models.scratch.classifier import ScratchClassifier
from fmnist.rundir import checkpoint, layout
from processes import sigterm_once_ready


class StopAt(resume.Resumer):
    """A stop request that arrives after the `polls`-th batch, as a signal would."""

    def __init__(self, run_dir, polls, *, resume=False):
        super().__init__(run_dir, resume=resume)
        self.polls = polls

    @property
    def stop_requested(self):
        self.polls -= 1
        return self.polls < 0


class Killed(Exception):
    pass


class KillAfterSaves(resume.Resumer):
    """The process dies (uncatchably) right after the `saves`-th end-of-epoch save."""

    def __init__(self, run_dir, saves):
        super().__init__(run_dir)
        self.saves = saves

    def save(self, state):
        super().save(state)
        self.saves -= 1
        if self.saves == 0:
            raise Killed


@pytest.fixture(scope="module")
def small(splits):
    return splits.subset(400, 100, 100)


def weights(model):
    if hasattr(model, "module"):
        return {k: v.clone() for k, v in model.module.state_dict().items()}
    if hasattr(model, "cnn"):
        return weights(model.cnn) | {f"mlp.{k}": v for k, v in weights(model.mlp).items()}
    return {str(i): torch.from_numpy(p.copy()) for i, p in enumerate(model.mlp.params)}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


MODELS = {
    # flips, shifts and dropout draw from both the loop's generator and torch's global one
    "linear": lambda: LinearClassifier(epochs=3, batch_size=64),
    "mlp": lambda: MLPClassifier(epochs=3, hidden=(32,), batch_size=64, flip=True, shift=2, erase=0.5),
    # the fast preset's shape, in both arithmetics
    "cnn": lambda: CNNClassifier(epochs=3, widths=(4, 8, 8), batch_size=64, lookahead=3, precision="fp32"),
    "cnn-bf16": lambda: CNNClassifier(epochs=3, widths=(4, 8, 8), batch_size=64, lookahead=3, precision="bf16"),
    "cnn-plain": lambda: CNNClassifier(
        **registry.spec("cnn").presets["best"]
        | {"widths": (4, 4, 8, 8, 8), "feature_dim": 16, "dropout": 0.2, "epochs": 3, "batch_size": 64}
    ),
    "scratch-mlp": lambda: ScratchClassifier(hidden=(32,), epochs=3, batch_size=64, shift=1, shift_prob=0.5),
    "scratch-nesterov": lambda: ScratchClassifier(hidden=(16, 16), epochs=3, batch_size=100, optimizer="nesterov"),
    "hybrid": lambda: HybridClassifier(hidden=(16,), epochs=3, batch_size=64),
}


@pytest.fixture(scope="module")
def uninterrupted(small):
    results = {}
    for name, make in MODELS.items():
        model = make()
        history = model.fit(small, seed=3, progress=False)
        results[name] = (weights(model), without_seconds(history))
    return results


# Per epoch: 6 batches of the torch models (400 // 64), 7 and 4 of the scratch ones (400 / 64 and 400 / 100
# rounded up), 1 of the hybrid's CNN (400 images in batches of 512, for 10 epochs). So the stops fall on a first
# batch, on the last batch of an epoch, and (scratch-nesterov's second stop) on the very last batch of training.
# The hybrid's CNN is the cnn case; its MLP phase has a test of its own.
STOPS = [(name, polls) for name in MODELS for polls in (0, 5, 8) if name != "hybrid" or polls == 0]


@pytest.mark.parametrize(("name", "polls"), STOPS)
def test_a_stopped_run_resumed_ends_with_the_same_weights_bit_for_bit(small, uninterrupted, tmp_path, name, polls):
    with pytest.raises(Interrupted, match=r"stopped by .* at epoch"):
        MODELS[name]().fit(small, seed=3, progress=False, resumer=StopAt(tmp_path, polls))
    assert (tmp_path / resume.STATE_FILE).exists()
    # resumed, then stopped once more on the way, then resumed to the end
    with pytest.raises(Interrupted):
        MODELS[name]().fit(small, seed=3, progress=False, resumer=StopAt(tmp_path, 2, resume=True))
    model = MODELS[name]()
    history = model.fit(small, seed=3, progress=False, resumer=resume.Resumer(tmp_path, resume=True))
    expected_weights, expected_history = uninterrupted[name]
    assert_same(weights(model), expected_weights)
    assert without_seconds(history) == expected_history


@pytest.mark.parametrize(("name", "polls"), [("mlp", 17), ("scratch-mlp", 20)])
def test_a_stop_on_the_very_last_batch_resumes_to_validation_only(small, uninterrupted, tmp_path, name, polls):
    with pytest.raises(Interrupted, match="at epoch 3, batch"):
        MODELS[name]().fit(small, seed=3, progress=False, resumer=StopAt(tmp_path, polls))
    model = MODELS[name]()
    history = model.fit(small, seed=3, progress=False, resumer=resume.Resumer(tmp_path, resume=True))
    assert_same(weights(model), uninterrupted[name][0])
    assert without_seconds(history) == uninterrupted[name][1]


@pytest.mark.parametrize(
    ("make", "polls"),
    [
        # validation stalls after epoch 4 (scratch) and 5 (mlp): both stop early, after the resume
        (lambda: ScratchClassifier(hidden=(16,), epochs=8, batch_size=64, patience=1, lr=0.01), 23),
        (lambda: MLPClassifier(epochs=8, hidden=(32,), batch_size=64, patience=1), 27),
    ],
)
def test_early_stopping_counts_across_a_resume(small, tmp_path, make, polls):
    expected = make()
    expected_history = without_seconds(expected.fit(small, seed=3, progress=False))
    assert len(expected_history) < 8
    with pytest.raises(Interrupted):
        make().fit(small, seed=3, progress=False, resumer=StopAt(tmp_path, polls))
    model = make()
    history = model.fit(small, seed=3, progress=False, resumer=resume.Resumer(tmp_path, resume=True))
    assert without_seconds(history) == expected_history
    assert_same(weights(model), weights(expected))


@pytest.mark.parametrize(
    ("name", "saves"),
    # the hybrid's 10-epoch CNN saves 9 times, so its 10th save is its MLP's first
    [("cnn", 2), ("cnn-plain", 2), ("scratch-mlp", 2), ("hybrid", 2), ("hybrid", 10)],
)
def test_a_run_killed_without_warning_resumes_from_its_last_epoch(small, uninterrupted, tmp_path, name, saves):
    with pytest.raises(Killed):
        MODELS[name]().fit(small, seed=3, progress=False, resumer=KillAfterSaves(tmp_path, saves))
    model = MODELS[name]()
    history = model.fit(small, seed=3, progress=False, resumer=resume.Resumer(tmp_path, resume=True))
    assert_same(weights(model), uninterrupted[name][0])
    assert without_seconds(history) == uninterrupted[name][1]


def test_the_hybrid_stopped_while_training_its_mlp_keeps_its_trained_cnn(small, uninterrupted, tmp_path):
    cnn_batches = 10 * 1  # the fast CNN preset the hybrid trains first: 10 epochs of one batch
    with pytest.raises(Interrupted):
        MODELS["hybrid"]().fit(small, seed=3, progress=False, resumer=StopAt(tmp_path, cnn_batches + 4))
    saved = resume.Resumer(tmp_path, resume=True).saved
    assert set(saved) >= {"mlp", "cnn_trained"} and "cnn" not in saved
    model = MODELS["hybrid"]()
    history = model.fit(small, seed=3, progress=False, resumer=resume.Resumer(tmp_path, resume=True))
    assert_same(weights(model), uninterrupted["hybrid"][0])
    assert without_seconds(history) == uninterrupted["hybrid"][1]
    # the hybrid's time includes its CNN's, trained in the first session
    assert history[0]["seconds"] > model.cnn_history[-1]["seconds"] > 0


def test_a_state_from_another_model_is_a_one_line_error(small, tmp_path):
    with pytest.raises(Interrupted):
        MODELS["scratch-mlp"]().fit(small, seed=3, progress=False, resumer=StopAt(tmp_path, 3))
    with pytest.raises(UserError, match="the saved state does not fit this model"):
        MODELS["mlp"]().fit(small, seed=3, progress=False, resumer=resume.Resumer(tmp_path, resume=True))


def test_a_diverged_run_leaves_no_state_to_resume(small, dataset, tmp_path, monkeypatch):
    schedule = loop.learning_rate

    def blow_up_in_epoch_3(step, total, peak, warmup, shape):  # after two end-of-epoch saves
        return 1e30 if step >= 14 else schedule(step, total, peak, warmup, shape)

    monkeypatch.setattr(loop, "learning_rate", blow_up_in_epoch_3)
    hparams = registry.spec("scratch-mlp").resolve("fast") | {"epochs": 4, "batch_size": 64, "optimizer": "sgd"}
    resumer = resume.Resumer(tmp_path)
    with pytest.raises(Diverged, match=r"loss became .* at epoch 3"):
        train.train_one("scratch-mlp", hparams, Setup(small, dataset), tmp_path, resumer=resumer)
    assert not (tmp_path / resume.STATE_FILE).exists() and not (tmp_path / "metrics.json").exists()


def test_state_round_trips_through_the_file_without_pickle(tmp_path):
    generator = np.random.default_rng(5)
    tree = {
        "ints": {0: {"step": torch.tensor(3.0), "buf": torch.arange(6.0).reshape(2, 3)}},
        "scalar": np.float32(1.5),
        "zero_d": np.array(2.5),
        "tuple": (1, "a", None, True),
        "inf": math.inf,
        "rng": generator.bit_generator.state,
        "bytes": torch.Generator().manual_seed(1).get_state(),
        "list": [np.zeros((2, 0), np.float32), [1.25, -0.0]],
    }
    resumer = resume.Resumer(tmp_path)
    resumer.save(tree)
    back = resume.Resumer(tmp_path, resume=True).saved
    assert set(back) == set(tree) | {"rng"}
    assert torch.equal(back["ints"][0]["step"], tree["ints"][0]["step"]) and back["ints"][0]["step"].ndim == 0
    assert torch.equal(back["ints"][0]["buf"], tree["ints"][0]["buf"])
    assert back["scalar"] == 1.5 and back["zero_d"].shape == () and back["zero_d"] == 2.5
    assert back["tuple"] == (1, "a", None, True) and back["inf"] == math.inf
    assert back["rng"]["numpy"]["state"]["key"].dtype == np.uint32  # the global RNG states replaced "rng"
    assert back["bytes"].dtype == torch.uint8 and torch.equal(back["bytes"], tree["bytes"])
    assert back["list"][0].shape == (2, 0) and back["list"][1] == [1.25, -0.0]
    with pytest.raises(TypeError, match="cannot save a set"):
        resumer.save({"bad": {1, 2}})


def test_global_rng_states_are_restored(tmp_path):
    import random

    resumer = resume.Resumer(tmp_path)
    resumer.save({})
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    random.random(), np.random.random(), torch.rand(1)  # the generators move on
    resume.Resumer(tmp_path, resume=True).restore(lambda saved: None)
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected


def test_missing_or_damaged_state_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="nothing to resume"):
        resume.Resumer(tmp_path, resume=True)
    (tmp_path / resume.STATE_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(UserError, match="unreadable resume state"):
        resume.Resumer(tmp_path, resume=True)


def test_first_signal_requests_a_stop_second_interrupts_and_handlers_are_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with resume.Resumer(tmp_path) as resumer:
        assert not resumer.stop_requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert resumer.stop_requested and resumer.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(Interrupted, match="stopped by SIGTERM at epoch 2") as caught:
        resumer.stop({"x": 1}, "epoch 2, batch 3")
    assert caught.value.signum == signal.SIGTERM


# -- the command line -----------------------------------------------------------------------------------------


def fmnist(*args):
    return subprocess.run([sys.executable, "-m", "fmnist", *args], capture_output=True, text=True, timeout=300)


TRAIN_ARGS = {
    "scratch-mlp": ["--subset", "12000", "--epochs", "8", "--hidden", "32"],
    "cnn": ["--subset", "2000", "--epochs", "4", "--widths", "4", "8", "8"],
}


@pytest.mark.slow
@pytest.mark.parametrize("model", TRAIN_ARGS)
def test_sigterm_then_resume_on_the_command_line_equals_an_uninterrupted_run(tmp_path, model):
    args = ["train", model, *TRAIN_ARGS[model], "--seed", "1", "--no-progress", "--no-report", "--out"]
    whole = fmnist(*args, str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "fmnist", *args, str(out)], stderr=subprocess.PIPE, text=True)
    err = sigterm_once_ready(process, out / resume.STATE_FILE)  # written at the end of the first epoch
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and not (out / "metrics.json").exists()
    last = err.strip().splitlines()[-1]
    assert last.startswith("fmnist: stopped by SIGTERM at epoch") and f"fmnist train {model} --resume {out}" in last

    again = fmnist("train", model, "--resume", str(out), "--no-progress", "--no-report")
    assert again.returncode == 0, again.stderr
    assert not (out / resume.STATE_FILE).exists()
    assert_same(weights(checkpoint.load(out)[0]), weights(checkpoint.load(tmp_path / "whole")[0]))
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (out, tmp_path / "whole")]
    assert [m["test_accuracy"] for m in metrics] == [metrics[1]["test_accuracy"]] * 2
    histories = [list(csv.DictReader((d / "history.csv").open())) for d in (out, tmp_path / "whole")]
    assert [row.pop("seconds") and row for row in histories[0]] == [row.pop("seconds") and row for row in histories[1]]


def write_config(run_dir, model):
    run_dir.mkdir()
    config = {"layout_version": layout.LAYOUT_VERSION, "model": model, "hparams": {}, "preset": "fast", "seed": 0}
    (run_dir / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "cnn", "--resume", "{run}", "--lr", "0.5"], "continues with the run's own settings; drop --lr"),
        (["train", "cnn", "--resume", "{run}", "--seed", "0", "--out", "x"], "drop --seed --out"),
        (["train", "scratch-mlp", "--resume", "{run}"], "holds a 'cnn' run, not 'scratch-mlp'"),
        (["train", "cnn", "--resume", "{missing}"], "config.json: file not found"),
        (["train", "cnn", "--out", "{run}"], "holds an interrupted run; continue it with --resume"),
        (["train", "cnn", "--resume", "{damaged}"], "config.json: no 'preset' entry"),
    ],
)
def test_resume_misuse_is_a_one_line_error(tmp_path, capsys, argv, message):
    run = tmp_path / "run"
    write_config(run, "cnn")
    (run / resume.STATE_FILE).write_bytes(b"")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text(
        json.dumps({"layout_version": layout.LAYOUT_VERSION, "model": "cnn", "hparams": {}})
    )
    argv = [a.format(run=run, missing=tmp_path / "missing", damaged=damaged) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
