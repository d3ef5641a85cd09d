"""The thread count follows the free cores, the user's choice wins, and a run records and reuses it."""

import json
import os
import subprocess
import sys

import pytest

from fmnist.cli.parser import main
from fmnist.engine import threads
from fmnist.errors import UserError

STAT = """cpu  100 0 100 800 0 0 0 0 0 0
cpu0 50 0 50 400 0 0 0 0 0 0
cpu1 50 0 50 400 0 0 0 0 0 0
intr 1 2 3
"""


def test_cpu_times_and_idle_cpus_from_proc_stat_snapshots():
    before = threads.cpu_times(STAT)
    assert before == {0: (400, 500), 1: (400, 500)}
    # cpu0 busy for the whole look, cpu1 idle
    after = threads.cpu_times(
        STAT.replace("cpu0 50 0 50 400", "cpu0 150 0 50 400").replace("cpu1 50 0 50 400", "cpu1 50 0 50 500")
    )
    assert threads.idle_cpus(before, after, {0, 1}) == [1]
    assert threads.idle_cpus(before, after, {1}) == [1]
    assert threads.idle_cpus(before, before, {0, 1}) == [0, 1]  # no ticks at all: nothing ran there


def test_the_user_choice_wins_then_omp_num_threads_then_the_free_cores():
    assert threads.choose(3, environ={"OMP_NUM_THREADS": "2"}) == 3
    assert threads.choose(None, environ={"OMP_NUM_THREADS": "2"}) == 2
    assert 1 <= threads.choose(None, environ={"OMP_NUM_THREADS": "x"}) <= len(os.sched_getaffinity(0))
    with pytest.raises(UserError, match="--threads 0: must be at least 1"):
        threads.choose(0)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to hold one busy")
def test_a_core_held_by_a_busy_loop_is_not_counted():
    idle = threads.free_cores()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        held = threads.free_cores(look=0.5)
    finally:
        busy.kill()
        busy.wait()
    assert held < len(os.sched_getaffinity(0)) and held <= idle


def test_a_run_records_its_threads_and_resume_refuses_another_count(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "scratch-mlp", "--subset", "200", "--epochs", "1", "--threads", "1", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["threads"] == 1
    (out / "resume.safetensors").write_bytes(b"")
    assert main(["train", "scratch-mlp", "--resume", str(out), "--threads", "2"]) == 2
    assert "drop --threads" in capsys.readouterr().err
