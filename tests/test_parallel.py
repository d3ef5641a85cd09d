"""Data-parallel training under torchrun (2 processes, gloo, loopback only), against the single-process run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fmnist.cli.parser import main
from fmnist.engine import parallel, resume, threads
from fmnist.rundir import checkpoint

SRC = str(Path(parallel.__file__).parents[2])
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
# Loopback only: the rendezvous, the store and gloo never use another address. One thread per rank (2 cores).
ENV = {"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}
# Label smoothing keeps every gradient away from zero: without it (the mlp's default since 2026-12-02) AdamW
# divides the all-reduce's rounding (the same sums in another order) by tiny second moments, and after 4 epochs
# 14 % of the first layer's weights are more than 1e-5 off (at most 2.7e-4), where with it all are within.
MLP = ["--subset", "12000", "--epochs", "4", "--dropout", "0", "--hidden", "256", "128", "--seed", "1"]
MLP += ["--label-smoothing", "0.1"]
LINEAR = ["--subset", "4000", "--epochs", "3", "--seed", "1"]
CNN = ["--subset", "8000", "--epochs", "4", "--seed", "1", "--widths", "16", "32", "64"]


def run(argv, cwd, distributed=True, **kwargs):
    command = (
        [*TORCHRUN, *kwargs.pop("torchrun", []), "-m", "fmnist"] if distributed else [sys.executable, "-m", "fmnist"]
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")} | ENV
    return subprocess.Popen([*command, *argv, "--no-progress", "--no-report"], cwd=cwd, env=env, text=True, **kwargs)


def finished(process, timeout=200):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out


def files(folder):
    """The names in a run directory; a checkpoint's folder is named by its content."""
    return sorted("model.*" if p.name.startswith("model.") else p.name for p in folder.rglob("*"))


def weights(folder):
    model, _ = checkpoint.load(folder)
    return model.module.state_dict()


def test_numpy_models_refuse_a_distributed_launch_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for model in ("scratch-mlp", "hybrid"):
        assert main(["train", model, "--out", str(tmp_path / model)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "a NumPy model, it cannot train data-parallel" in err[0]
    assert not list(tmp_path.iterdir())


def test_each_rank_gets_its_share_of_the_cores_and_threads_win(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    ranks = parallel.local_ranks()
    assert ranks == 2
    assert threads.choose(None, environ={}, ranks=ranks) == max(1, len(os.sched_getaffinity(0)) // 2)
    assert threads.choose(None, environ={"OMP_NUM_THREADS": "3"}, ranks=ranks) == 3  # torchrun's OMP_NUM_THREADS
    assert threads.choose(5, environ={"OMP_NUM_THREADS": "1"}, ranks=ranks) == 5  # --threads is never overridden


@pytest.fixture(scope="module")
def single_mlp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    finished(run(["train", "mlp", *MLP, "--out", "run"], folder, distributed=False))
    return folder / "run"


@pytest.mark.slow
@pytest.mark.parametrize(("model", "args"), [("linear", LINEAR), ("mlp", MLP)])
def test_two_processes_end_with_the_single_process_weights(model, args, single_mlp, tmp_path):
    if model == "mlp":
        single = single_mlp
    else:
        finished(run(["train", model, *args, "--out", "single"], tmp_path, distributed=False))
        single = tmp_path / "single"
    (tmp_path / "ddp").mkdir()
    finished(run(["train", model, *args, "--out", "run"], tmp_path / "ddp"))
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["run"]  # nothing but rank 0's run directory
    assert files(tmp_path / "ddp" / "run") == files(single)
    config = json.loads((tmp_path / "ddp" / "run" / "config.json").read_text())
    assert config["distributed"] == {"processes": 2, "backend": "gloo", "nodes": 1}
    ddp, one = weights(tmp_path / "ddp" / "run"), weights(single)
    for key in one:
        torch.testing.assert_close(ddp[key], one[key], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_the_cnn_with_per_process_batch_norm_converges_like_one_process(tmp_path):
    finished(run(["train", "cnn", *CNN, "--out", "single"], tmp_path, distributed=False))
    finished(run(["train", "cnn", *CNN, "--out", "ddp"], tmp_path))
    accuracy = [json.loads((tmp_path / d / "metrics.json").read_text())["val_accuracy"] for d in ("single", "ddp")]
    assert abs(accuracy[0] - accuracy[1]) <= 0.01, accuracy


def workers(agent):
    """{rank: pid} of the worker processes torchrun started."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(line for line in status.read_text().splitlines() if line.startswith("PPid:")).split()[1]
            environ = (status.parent / "environ").read_bytes().split(b"\0")
        except (OSError, StopIteration):
            continue
        ranks = [e[5:].decode() for e in environ if e.startswith(b"RANK=")]
        if int(ppid) == agent and ranks:
            found[int(ranks[0])] = int(status.parent.name)
    return found


def kill_rank_1_after_epoch_1(agent, out):
    deadline = time.monotonic() + 120
    while not (out / resume.STATE_FILE).exists():
        assert agent.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(workers(agent.pid)[1], signal.SIGKILL)
    return time.monotonic()


@pytest.mark.slow
def test_a_lost_worker_stops_the_other_in_one_line_and_a_restart_continues_the_run(single_mlp, tmp_path):
    agent = run(["train", "mlp", *MLP, "--out", "lost"], tmp_path, stderr=subprocess.PIPE)
    killed = kill_rank_1_after_epoch_1(agent, tmp_path / "lost")
    _, err = agent.communicate(timeout=90)
    assert agent.returncode != 0 and time.monotonic() - killed < 60
    ours = [line for line in err.splitlines() if line.startswith("fmnist:")]
    assert len(ours) == 1 and "rank 0: lost contact with the other processes" in ours[0], err
    assert f'File "{SRC}' not in err  # no traceback from fmnist's code
    left = {p.name for p in (tmp_path / "lost").iterdir()}
    assert resume.STATE_FILE in left and "metrics.json" not in left and not any(n.endswith(".tmp") for n in left)
    assert resume.Resumer(tmp_path / "lost", resume=True).saved["loop"]["epoch"] >= 2  # readable, whole

    agent = run(["train", "mlp", *MLP, "--out", "again"], tmp_path, torchrun=["--max-restarts=1"])
    kill_rank_1_after_epoch_1(agent, tmp_path / "again")
    finished(agent)
    history = (tmp_path / "again" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 4 and not (tmp_path / "again" / resume.STATE_FILE).exists()
    restarted, one = weights(tmp_path / "again"), weights(single_mlp)
    for key in one:  # continued from the saved state: the same weights as one uninterrupted process
        torch.testing.assert_close(restarted[key], one[key], atol=1e-5, rtol=0)
