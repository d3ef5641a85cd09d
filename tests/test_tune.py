"""fmnist tune: the registry's search spaces, the printed command, and workers sharing one SQLite study."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from fmnist.cli.parser import build_parser  # noqa: E402
from fmnist.cli.settings import hparam_overrides  # noqa: E402
from fmnist.jobs import tune  # noqa: E402
from fmnist.jobs.settings import Setup  # noqa: E402
from fmnist.models import registry  # noqa: E402

SEARCHED = [name for name, spec in registry.REGISTRY.items() if any(h.search for h in spec.hparams.values())]


@pytest.mark.parametrize("name", SEARCHED)
def test_every_search_space_stays_within_its_hyper_parameters_bounds(name):
    spec = registry.spec(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = tune.suggest(trial, spec)
        assert params and spec.complete(params)  # raises HparamError for a value outside the registry's bounds
        study.tell(trial, 0.5)
    edges = {k: v for k, h in spec.hparams.items() if h.search for v in h.search[1:] if not isinstance(v, tuple)}
    assert all(spec.hparams[k].problem(v) is None for k, v in edges.items())


def test_the_printed_command_gives_train_the_trial_s_hyper_parameters(splits, dataset):
    setup = Setup(splits.quick(500), dataset, preset="fast", seed=3, subset=500)
    task = tune.Task("mlp", setup, 2, Path("unused"))
    params = {"lr": 0.0012345678901234567, "dropout": 0.1, "weight_decay": 1e-3, "label_smoothing": 0.0}
    hparams = tune.trial_hparams(task, params)
    words = shlex.split(tune.train_command(task, params, hparams))
    assert words[:3] == ["fmnist", "train", "mlp"] and words[-6:] == [
        "--preset",
        "fast",
        "--seed",
        "3",
        "--subset",
        "500",
    ]
    args = build_parser().parse_args(words[1:])
    spec = registry.spec("mlp")
    assert spec.resolve(args.preset, hparam_overrides(args, spec)) == hparams and hparams["epochs"] == 2


def test_a_study_tuning_something_else_is_a_one_line_error(splits, dataset, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    one = tune.Task("linear", Setup(splits.quick(200), dataset, subset=200), None, tmp_path)
    tune.open_study(one, url, "shared")
    other = tune.Task("linear", Setup(splits.quick(400), dataset, subset=400), None, tmp_path)
    with pytest.raises(tune.UserError, match="has subset 200, this tune 400; use another --study"):
        tune.open_study(other, url, "shared")
    assert optuna.load_study(study_name="shared", storage=url).user_attrs["test_set"] == tune.TEST_SET


def fmnist(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(Path(tune.__file__).parents[1])}
    return subprocess.Popen([sys.executable, "-m", "fmnist", *args], env=env, text=True, **kwargs)


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study_and_the_best_command_reproduces_its_accuracy(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    argv = ["tune", "linear", "--trials", "8", "--storage", url, "--study", "s", "--subset", "1000"]
    argv += ["--epochs-cap", "3", "--out", str(tmp_path / "out")]
    workers = [fmnist(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [w.communicate(timeout=200) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outputs]
    study = optuna.load_study(study_name="s", storage=url)
    trials = study.get_trials()
    finished = [t for t in trials if t.state in tune.FINISHED]
    # Exactly the trials asked for; any other is a surplus trial that gave way when both workers took the last
    # place in the same instant (tune.claim), never one that failed on the shared file.
    assert len(finished) == 8 and all(t.state in tune.FINISHED or t.user_attrs.get("surplus") for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in finished}) == len(finished)
    workers_ran = [out.count("trial ") for out, _ in outputs]
    assert all(n >= 2 for n in workers_ran), outputs  # both worked on the one study
    assert study.user_attrs["test_set"] == tune.TEST_SET and (tmp_path / "out" / "tune-report.html").is_file()
    assert (tmp_path / "out" / "plots" / "tune-history.png").is_file()
    assert {p.name for p in (tmp_path / "out" / f"trial-{trials[0].number}").iterdir()} <= {
        "config.json",
        "history.csv",
    }

    # Each worker prints the best trial it saw at its end; the last to finish has seen every trial.
    command = study.best_trial.user_attrs["command"]
    assert command in [out.strip().splitlines()[-1] for out, _ in outputs]
    words = shlex.split(command)
    train = fmnist(*words[1:], "--no-progress", "--out", str(tmp_path / "best"), stderr=subprocess.PIPE)
    assert train.wait(timeout=120) == 0, train.stderr.read()
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert metrics["val_accuracy"] == study.best_value


class PruneAfterFirstEpoch(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def test_a_pruned_trial_stops_after_the_epoch_it_reported_and_keeps_no_weights(splits, dataset, tmp_path):
    task = tune.Task("linear", Setup(tune.without_test(splits.subset(300, 100, 100)), dataset), 3, tmp_path)
    study = optuna.create_study(direction="maximize", pruner=PruneAfterFirstEpoch())
    study.optimize(lambda trial: tune.objective(task, trial), n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [1]
    assert sorted(p.name for p in (tmp_path / "trial-0").iterdir()) == ["config.json", "history.csv"]
    assert len((tmp_path / "trial-0" / "history.csv").read_text().splitlines()) == 2  # the header and epoch 1


class OperationalError(Exception):
    """Named as SQLAlchemy's is: `storage` tells errors apart by their class name."""


def test_a_worker_that_loses_the_race_to_create_the_schema_opens_it_again(monkeypatch):
    attempts = []

    def racing(url, **kwargs):
        attempts.append(url)
        if len(attempts) == 1:
            raise OperationalError("(sqlite3.OperationalError) table studies already exists")
        return "opened"

    monkeypatch.setattr(tune.optuna.storages, "RDBStorage", racing)
    assert tune.storage("sqlite:///x.db") == "opened" and len(attempts) == 2

    def unreadable(url, **kwargs):
        raise OperationalError("(sqlite3.OperationalError) unable to open database file")

    monkeypatch.setattr(tune.optuna.storages, "RDBStorage", unreadable)
    with pytest.raises(tune.UserError, match=r"cannot open .*unable to open database file"):
        tune.storage("sqlite:///x.db")
