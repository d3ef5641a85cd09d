"""`fmnist train` launched by torchrun: one process per rank, data-parallel (see fmnist.engine.parallel).

    torchrun --standalone --nproc-per-node=2 -m fmnist train cnn --out runs/cnn-ddp

Every rank trains; rank 0 alone writes the run directory, reports and prints. torchrun's --max-restarts
restarts all ranks after a lost one: they continue from the state rank 0 saved at the end of the last epoch.
"""

import dataclasses
from pathlib import Path

import torch.distributed as dist

from fmnist.cli import settings as cli_settings
from fmnist.engine import parallel, resume
from fmnist.errors import Interrupted, UserError
from fmnist.jobs import train


def train_run(args, spec, record):
    """The TrainRun of this rank; after a torchrun restart, the run's own settings, resumed."""
    extra = {"ranks": parallel.local_ranks(), "distributed": record}
    out = cli_settings.default_out(args)
    if parallel.restarted() and (Path(out) / resume.STATE_FILE).exists():
        return cli_settings.recorded_run(args, spec, out, **extra)
    return cli_settings.train_run(args, spec, **extra)


def refuse_numpy(spec):
    from fmnist.models.classifiers import TorchClassifier

    if not issubclass(spec.load_class(), TorchClassifier):
        raise UserError(f"{spec.name}: a NumPy model, it cannot train data-parallel; run it without torchrun")


def check(run):
    """The global batch must split evenly; a resumed run needs the world size it was saved with."""
    processes = run.setup.distributed["processes"]
    if run.setup.refit:
        raise UserError("--refit: not under torchrun yet; run the refit in one process")
    if run.hparams["batch_size"] % processes:
        raise UserError(f"--batch-size {run.hparams['batch_size']}: must divide evenly among {processes} processes")
    if run.config is not None:
        before = (run.config.get("distributed") or {}).get("processes", 1)
        if before != processes:
            raise UserError(f"{run.config.get('model')} run: trained with {before} processes, resume it with {before}")


def cmd_train(args, spec):
    refuse_numpy(spec)
    hosts = []
    try:
        record = parallel.start()
        hosts = parallel.addresses()  # to name the lost machine if one goes
        return _train(args, spec, record)
    except RuntimeError as exc:  # a lost peer surfaces as a gloo error in whichever collective comes next
        if not isinstance(exc, dist.DistError) and "gloo" not in str(exc).lower():
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        who = parallel.lost(hosts, str(exc)) if hosts else ""
        raise UserError(
            f"rank {parallel.rank()}: lost contact with the other processes{': ' + who if who else ''} ({first[:200]})"
        ) from exc
    finally:
        parallel.stop()


def _train(args, spec, record):
    run = train_run(args, spec, record)
    check(run)
    rank0 = parallel.rank() == 0
    if run.setup.device not in ("auto", "cpu"):
        raise UserError(f"--device {run.setup.device}: data-parallel training (torchrun, gloo) runs on the CPU")
    # every rank alike, whatever auto would find
    setup = dataclasses.replace(run.setup, progress=run.setup.progress and rank0, device="cpu")
    if not rank0:  # trains in step with rank 0; its Resumer only listens for signals, never writes
        with resume.Resumer(run.out) as listener:
            train.fit_model(spec.load_class()(**run.hparams), setup, resumer=listener)
        return 0
    resumer = resume.Resumer(run.out, resume=run.config is not None)
    try:
        _, metrics = train.train_one(args.model, run.hparams, setup, run.out, resumer=resumer)
    except Interrupted as exc:
        launch = f"torchrun --nproc-per-node={record['processes']} -m fmnist train {args.model} --resume {run.out}"
        raise Interrupted(f"{exc}; continue with: {launch}", exc.signum) from None
    cli_settings.report_train(args.model, dataclasses.replace(run, setup=setup), metrics, not args.no_report)
    return 0
