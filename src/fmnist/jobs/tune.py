"""fmnist tune: Optuna's TPE sampler over a model's search space (the registry's), in a study many workers share.

The objective is the validation accuracy of a trial's best epoch, the figure `fmnist train` records as
val_accuracy. Trials get the splits with the test set taken out, so no trial can look at it; the study's user
attributes say so. A median pruner stops a trial whose validation accuracy, reported after each epoch, falls
below the median of the earlier trials at that epoch. A trial leaves OUT/trial-N/ with config.json and
history.csv only: no weights, no predictions. Workers on one or many machines given the same storage URL
(an SQLite file locally, a database server across machines) work on one study; --trials counts all of them.
"""

import dataclasses
import os
import shlex
import socket
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from fmnist.errors import Diverged, UserError
from fmnist.files import write_json
from fmnist.jobs import train
from fmnist.models import registry
from fmnist.rundir import layout

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
OBJECTIVE = "validation accuracy of the best epoch (the val_accuracy fmnist train records)"
TEST_SET = "never evaluated: every trial trains and validates on splits without the test set"


@dataclasses.dataclass(frozen=True)
class Task:
    """What every trial of a study shares: the model, the data (no test set), the fixed settings."""

    model: str
    setup: object  # a fmnist.jobs.settings.Setup whose splits hold no test images
    epochs_cap: int | None
    out: Path

    def settings(self):
        """The study's user attributes; workers joining a study must bring the same ones."""
        record = self.setup.record()
        return {"model": self.model, **record, "epochs_cap": self.epochs_cap, "objective": OBJECTIVE}


def without_test(splits):
    return dataclasses.replace(splits, x_test=splits.x_test[:0], y_test=splits.y_test[:0])


def _lost_the_schema_race(exc):
    """Whether opening a storage failed only because another worker created the same schema at that moment."""
    name = type(exc).__name__
    return name == "IntegrityError" or (name == "OperationalError" and "already exists" in str(exc))


def storage(url, heartbeat=30, attempts=5):
    """An RDB storage for `url`; SQLite waits for the file lock instead of failing when workers collide.

    Each running trial's worker records a sign of life every `heartbeat` seconds; a trial silent for four
    times that (its worker died) is marked failed, so it never holds a place in the study. Workers that start
    together on a new database race to create its schema; the loser's IntegrityError, or its "table ... already
    exists", only means the schema now exists, so opening is tried again (measured: 2 of 4 simultaneous starts
    hit the first, 1 of 4 the second)."""
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=4 * heartbeat
                )
        except Exception as exc:  # SQLAlchemy's errors for a bad URL or an unreachable server are many
            if _lost_the_schema_race(exc) and attempt + 1 < attempts:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise UserError(f"--storage {url}: cannot open ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc


def suggest(trial, spec):
    """One value per searched hyper-parameter of `spec`, drawn by the trial's sampler."""
    params = {}
    for name, hparam in spec.hparams.items():
        if not hparam.search:
            continue
        kind, *bounds = hparam.search
        if kind in ("log", "float"):
            params[name] = trial.suggest_float(name, bounds[0], bounds[1], log=kind == "log")
        elif kind == "int":
            params[name] = trial.suggest_int(name, bounds[0], bounds[1])
        else:
            params[name] = trial.suggest_categorical(name, list(bounds[0]))
    return params


def trial_hparams(task, params):
    spec = registry.spec(task.model)
    hparams = spec.resolve(task.setup.preset, params)
    if task.epochs_cap:
        hparams = spec.complete({**hparams, "epochs": min(hparams["epochs"], task.epochs_cap)})
    return hparams


def train_command(task, params, hparams):
    """The `fmnist train` command that trains the trial's model again."""
    words = ["fmnist", "train", task.model]
    for name in params:
        value = hparams[name]
        words += [f"--{name.replace('_', '-')}", repr(value) if isinstance(value, float) else str(value)]
    record = task.setup.record()
    words += ["--epochs", str(hparams["epochs"])]
    if record.get("threads"):  # torch's arithmetic depends on the thread count: the trial's, to train alike
        words += ["--threads", str(record["threads"])]
    words += ["--preset", record["preset"], "--seed", str(record["seed"])]
    return shlex.join(words + (["--subset", str(record["subset"])] if record["subset"] else []))


def objective(task, trial, trials=None):
    """Train one trial; return its best validation accuracy. Pruned (or diverged) trials raise TrialPruned.

    With `trials`, the trial first claims one of the study's places (see `claim`)."""
    if trials is not None:
        claim(trial, trials)
    spec = registry.spec(task.model)
    params = suggest(trial, spec)
    hparams = trial_hparams(task, params)
    trial.set_user_attr("command", train_command(task, params, hparams))
    folder = task.out / f"trial-{trial.number}"
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / layout.CONFIG, layout.config_record(task.model, hparams, task.setup.record(), task.setup.dataset)
    )
    rows = []

    def report(row):
        rows.append(row)
        trial.report(row["val_accuracy"], row["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {row['epoch']}: validation accuracy {row['val_accuracy']:.4f}")

    model = spec.load_class()(**hparams)
    model.to_device(train.model_device(spec, task.setup.device))
    log = _tensorboard(task, trial)
    model.observers = (log,) if log else ()
    try:
        history = train.fit_model(model, task.setup, on_epoch=report)
    except Diverged as exc:
        raise optuna.TrialPruned(f"diverged: {exc}") from None
    finally:
        layout.write_history(folder, rows)
        if log:
            log.finish_trial(hparams)
    layout.write_history(folder, history)
    return max(row["val_accuracy"] for row in history)


def _tensorboard(task, trial):
    """The trial's TensorBoard log (setup.tensorboard/trial-<N>), or None without --tensorboard."""
    if task.setup.tensorboard is None:
        return None
    from fmnist.jobs.tensorboard import RunLog

    return RunLog(Path(task.setup.tensorboard) / f"trial-{trial.number}", fresh=True)


def open_study(task, url, name, heartbeat=30):
    """Create the study, or join it; a study tuning something else is a one-line error."""
    study = optuna.create_study(
        study_name=name,
        storage=storage(url, heartbeat),
        direction="maximize",
        sampler=optuna.samplers.TPESampler(),  # unseeded: workers must not all draw the same first trials
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
        load_if_exists=True,
    )
    wanted = task.settings()
    for key, value in wanted.items():
        found = study.user_attrs.get(key, value)
        if found != value:
            raise UserError(f"study {name!r} in {url}: has {key} {found!r}, this tune {value!r}; use another --study")
    if study.user_attrs.get("test_set") != TEST_SET:
        for key, value in {**wanted, "test_set": TEST_SET}.items():
            study.set_user_attr(key, value)
    return study


def run(task, url, name, trials, heartbeat=30):
    """Work on study `name` until it holds `trials` finished trials (this worker's and the others').

    A worker starts a trial only while the finished and running ones leave a place; when the others' running
    trials fill the places, it waits: they finish, or their worker died and the heartbeat marks them failed,
    and this worker trains a trial in their place. So the study ends with exactly `trials` finished trials."""
    study = open_study(task, url, name, heartbeat)
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if finished >= trials:
            return study
        if finished + running >= trials:
            time.sleep(min(1.0, heartbeat))
            continue
        study.optimize(lambda t: objective(task, t, trials), n_trials=1, callbacks=[_say], catch=(Surplus,))


class Surplus(Exception):
    """Raised by a trial that another worker's, started in the same instant, left without a place."""


def claim(trial, trials):
    """Record who runs `trial`; fail it at once if `trials` trials numbered before it are running or finished.

    Two workers can both see one free place and both start a trial; the later number gives way."""
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    states = (TrialState.RUNNING, *FINISHED)
    earlier = [t for t in trial.study.get_trials(deepcopy=False, states=states) if t.number < trial.number]
    if len(earlier) >= trials:
        trial.set_user_attr("surplus", "the study had its trials when this one started")
        raise Surplus(f"trial {trial.number}: the study already has {trials} trials")


def _say(study, trial):
    value = f"validation accuracy {trial.value:.4f}" if trial.state == TrialState.COMPLETE else trial.state.name.lower()
    print(f"trial {trial.number}: {value}  {trial.params}", flush=True)


def best(study):
    """The best complete trial, or a one-line error if there is none yet."""
    try:
        return study.best_trial
    except ValueError:
        raise UserError(f"study {study.study_name!r}: no trial has completed yet") from None
