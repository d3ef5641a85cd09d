"""fmnist tune on a real PostgreSQL server: two workers, one killed with SIGKILL in the middle of a trial."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

import postgres  # noqa: E402
from fmnist.jobs import tune  # noqa: E402

TRIALS = 6
HEARTBEAT = 1  # seconds: the killed worker's trial is marked failed after 4 s of silence


@pytest.fixture
def postgres_url():
    with postgres.running_server() as url:
        yield url


def fmnist(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(Path(tune.__file__).parents[2])}
    return subprocess.Popen([sys.executable, "-m", "fmnist", *args], env=env, text=True, **kwargs)


def load(storage):
    try:
        return optuna.load_study(study_name="s", storage=storage)
    except KeyError:  # the workers have not created it yet
        return None


def kill_in_a_trial(worker, storage, timeout=60):
    """SIGKILL `worker` while a trial of its own, with at least one epoch reported, is running; its number."""
    deadline = time.monotonic() + timeout
    while True:
        assert worker.poll() is None and time.monotonic() < deadline, "the worker ended before it could be killed"
        study = load(storage)
        mine = [
            t
            for t in (study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if study else [])
            if t.user_attrs.get("worker", "").endswith(f":{worker.pid}") and t.intermediate_values
        ]
        if mine:
            worker.send_signal(signal.SIGSTOP)  # held still: the trial cannot finish between the look and the kill
            if storage.get_trial(mine[0]._trial_id).state == TrialState.RUNNING:
                worker.kill()
                worker.wait(timeout=10)
                return mine[0].number
            worker.send_signal(signal.SIGCONT)
        time.sleep(0.05)


@pytest.mark.slow
def test_two_workers_share_a_postgres_study_and_a_killed_worker_s_trial_is_replaced(postgres_url, tmp_path):
    out = tmp_path / "out"
    argv = ["tune", "linear", "--trials", str(TRIALS), "--storage", postgres_url, "--study", "s"]
    argv += ["--subset", "2000", "--epochs-cap", "3", "--threads", "1", "--heartbeat", str(HEARTBEAT)]
    argv += ["--out", str(out)]
    workers = [fmnist(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        storage = optuna.storages.RDBStorage(postgres_url)
        killed = kill_in_a_trial(workers[0], storage)
        output, err = workers[1].communicate(timeout=80)
        assert workers[1].returncode == 0, err
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate()

    trials = load(storage).get_trials()
    finished = [t for t in trials if t.state in tune.FINISHED]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(finished) == TRIALS, [(t.number, t.state.name) for t in trials]  # none missing, none counted twice
    assert [t.number for t in trials] == list(range(len(trials))) and len(finished) + len(failed) == len(trials)
    assert killed in [t.number for t in failed] and trials[killed].user_attrs["worker"].endswith(f":{workers[0].pid}")
    assert all("surplus" in t.user_attrs for t in failed if t.number != killed)  # only a start race fails another
    for trial in finished:  # every finished trial has its history, one row per epoch it reported
        rows = (out / f"trial-{trial.number}" / "history.csv").read_text().splitlines()
        assert len(rows) == 1 + len(trial.intermediate_values), trial.number
    ran = {t.user_attrs["worker"] for t in trials}
    assert len(ran) == 2  # both workers ran trials of the one study

    best = load(storage).best_trial
    command = best.user_attrs["command"]
    assert command == output.strip().splitlines()[-1]
    train = fmnist(*shlex.split(command)[1:], "--no-progress", "--out", str(tmp_path / "best"), stderr=subprocess.PIPE)
    assert train.wait(timeout=60) == 0, train.stderr.read()
    assert json.loads((tmp_path / "best" / "metrics.json").read_text())["val_accuracy"] == best.value
