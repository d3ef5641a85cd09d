"""`fmnist train` launched by torchrun: one process per rank, data-parallel (see fmnist.models.parallel).

    torchrun --standalone --nproc-per-node=2 -m fmnist train cnn --out runs/cnn-ddp

Every rank trains; rank 0 alone writes the run directory, reports and prints. torchrun's --max-restarts
restarts all ranks after a lost one: they continue from the state rank 0 saved at the end of the last epoch.
"""

import dataclasses
from pathlib import Path

import torch.distributed as dist

from fmnist.cli import settings as runargs
from fmnist.engine import resume
from fmnist.errors import Interrupted, UserError
from fmnist.models import parallel
from fmnist.runs import train


def settings(args, spec):
    """(hparams, setup, out, resuming); after a torchrun restart, the run's own settings, resumed."""
    out = args.resume or args.out or f"runs/{args.model}-seed{0 if args.seed is None else args.seed}"
    if parallel.restarted() and (Path(out) / resume.STATE_FILE).exists():
        hparams, config = train.resume_settings(out, args.model)
        setup = runargs.setup_from(args, recorded=config)
        return hparams, setup, out, config
    hparams, setup, out = runargs.train_settings(args, spec)
    config = train.resume_settings(out, args.model)[1] if args.resume else None
    return hparams, setup, out, config


def refuse_numpy(spec):
    from fmnist.models.classifiers import TorchClassifier

    if not issubclass(spec.load_class(), TorchClassifier):
        raise UserError(f"{spec.name}: a NumPy model, it cannot train data-parallel; run it without torchrun")


def check(hparams, config, record):
    """The global batch must split evenly; a resumed run needs the world size it was saved with."""
    processes = record["processes"]
    if hparams["batch_size"] % processes:
        raise UserError(f"--batch-size {hparams['batch_size']}: must divide evenly among {processes} processes")
    if config is not None:
        before = (config.get("distributed") or {}).get("processes", 1)
        if before != processes:
            raise UserError(f"{config.get('model')} run: trained with {before} processes, resume it with {before}")


def cmd_train(args, spec):
    refuse_numpy(spec)
    try:
        record = parallel.start()
        return _train(args, spec, record)
    except RuntimeError as exc:  # a lost peer surfaces as a gloo error in whichever collective comes next
        if not isinstance(exc, dist.DistError) and "gloo" not in str(exc).lower():
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"rank {parallel.rank()}: lost contact with the other processes ({first[:200]})") from exc
    finally:
        parallel.stop()


def _train(args, spec, record):
    hparams, setup, out, config = settings(args, spec)
    check(hparams, config, record)
    rank0 = parallel.rank() == 0
    threads = parallel.threads_per_rank()  # each rank its share of the cores, whatever the machine's load
    if setup.device not in ("auto", "cpu"):
        raise UserError(f"--device {setup.device}: data-parallel training (torchrun, gloo) runs on the CPU")
    setup = dataclasses.replace(setup, distributed=record, threads=threads, progress=setup.progress and rank0)
    setup = dataclasses.replace(setup, device="cpu")  # every rank alike, whatever auto would find
    if not rank0:  # trains in step with rank 0; its Resumer only listens for signals, never writes
        with resume.Resumer(out) as listener:
            spec.load_class()(**hparams).fit(setup.splits, seed=setup.seed, progress=False, resumer=listener)
        return 0
    resumer = resume.Resumer(out, resume=config is not None)
    try:
        _, metrics = train.train_one(args.model, hparams, setup, out, resumer=resumer)
    except Interrupted as exc:
        launch = f"torchrun --nproc-per-node={record['processes']} -m fmnist train {args.model} --resume {out}"
        raise Interrupted(f"{exc}; continue with: {launch}", exc.signum) from None
    runargs.report_train(args.model, out, setup, metrics)
    return 0
