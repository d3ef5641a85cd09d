"""The thread count is the usable cores whatever the load, the user's choice wins, a run records and reuses it."""

import json
import os
import subprocess
import sys
import time

import pytest

from fmnist.cli.parser import main
from fmnist.engine import threads
from fmnist.errors import UserError


def test_the_default_is_the_usable_cores():
    assert threads.usable_cores() == len(os.sched_getaffinity(0))
    assert threads.choose(None, environ={}) == threads.usable_cores()
    assert threads.choose(None, environ={}, ranks=2) == max(1, threads.usable_cores() // 2)


def test_the_user_choice_wins_then_omp_num_threads_then_the_usable_cores():
    assert threads.choose(3, environ={"OMP_NUM_THREADS": "2"}) == 3
    assert threads.choose(None, environ={"OMP_NUM_THREADS": "2"}) == 2
    for junk in ("x", "0", "²", "-1", ""):
        assert threads.choose(None, environ={"OMP_NUM_THREADS": junk}) == threads.usable_cores()
    with pytest.raises(UserError, match="--threads 0: must be at least 1"):
        threads.choose(0)


def busy_loop():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to hold one busy")
def test_a_core_held_by_a_busy_loop_does_not_change_the_count():
    idle = threads.choose(None, environ={})
    busy = busy_loop()
    try:
        time.sleep(0.5)
        held = threads.choose(None, environ={})
    finally:
        busy.kill()
        busy.wait()
    assert held == idle == len(os.sched_getaffinity(0))


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to hold one busy")
def test_the_same_command_gives_the_same_weights_with_a_busy_loop_started_before(tmp_path):
    """`fmnist train cnn --seed 0`, idle and beside a one-core busy loop started 1 s before, writes byte-identical
    weights (and the same thread count and precision). bench/bench_busy.py checks it on 12,000 images for 3
    epochs, and with the loop starting mid-run."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    argv = [sys.executable, "-m", "fmnist", "train", "cnn", "--seed", "0", "--subset", "4000", "--epochs", "2"]
    argv += ["--no-progress", "--no-report"]
    subprocess.run([*argv, "--out", str(tmp_path / "idle")], check=True, env=env, capture_output=True)
    busy = busy_loop()
    try:
        time.sleep(1)
        subprocess.run([*argv, "--out", str(tmp_path / "busy")], check=True, env=env, capture_output=True)
    finally:
        busy.kill()
        busy.wait()
    configs = [json.loads((tmp_path / run / "config.json").read_text()) for run in ("idle", "busy")]
    assert configs[0]["threads"] == configs[1]["threads"] == len(os.sched_getaffinity(0))
    assert configs[0]["hparams"]["precision"] == configs[1]["hparams"]["precision"]
    weights = [next((tmp_path / run).glob("model.*/weights.safetensors")).read_bytes() for run in ("idle", "busy")]
    assert weights[0] == weights[1]


def test_a_run_records_its_threads_and_resume_refuses_another_count(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "scratch-mlp", "--subset", "200", "--epochs", "1", "--threads", "1", "--no-progress"]
    argv += ["--no-report"]
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["threads"] == 1
    (out / "resume.safetensors").write_bytes(b"")
    assert main(["train", "scratch-mlp", "--resume", str(out), "--threads", "2"]) == 2
    assert "drop --threads" in capsys.readouterr().err


def test_the_count_also_sets_numpys_blas_threads():
    """The from-scratch MLP's bits follow the recorded count, not OMP_NUM_THREADS at NumPy's import."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # every pool's own count comes back at the end
        try:
            threads.apply(1)
            blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
            assert blas and set(blas) == {1}
        finally:
            torch.set_num_threads(before)
