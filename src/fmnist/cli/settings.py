"""A run's settings from the command line: the flags, or for --resume the run's recorded ones; the closing report.

Shared by `fmnist train` in one process (fmnist.cli.commands) and under torchrun (fmnist.cli.torchrun).
"""

from pathlib import Path

from fmnist.errors import UserError


def hparam_overrides(args, spec):
    values = {name: getattr(args, name) for name in spec.hparams}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def setup_from(args, recorded=None):
    """The data and settings of a run: the flags, or (for --resume) the run's `recorded` config."""
    from fmnist.runs import train

    if recorded is not None:
        settings = {k: recorded.get(k) for k in ("seed", "subset", "preset", "threads")}
        settings["device"] = recorded.get("device") or "cpu"  # runs from before --device trained on the CPU
    else:
        settings = {"seed": args.seed or 0, "subset": args.subset, "preset": args.preset or "fast"}
        settings["threads"], settings["device"] = args.threads, args.device or "auto"
    settings["tensorboard"] = getattr(args, "tensorboard", None)
    return train.load_setup(args.data_dir, args.allow_unverified, progress=not args.no_progress, **settings)


def resumed(args, spec):
    """--resume RUN_DIR: (hparams, setup) as the run recorded them; a flag that would change them is an error."""
    from fmnist.rundir import layout
    from fmnist.runs import train

    given = [f"--{name.replace('_', '-')}" for name, value in hparam_overrides(args, spec).items() if value is not None]
    given += [
        f"--{name}" for name in ("preset", "seed", "subset", "threads", "device") if getattr(args, name) is not None
    ]
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        given.append("--out")
    if given:
        raise UserError(f"--resume {args.resume}: continues with the run's own settings; drop {' '.join(given)}")
    hparams, config = train.resume_settings(args.resume, args.model)
    setup = setup_from(args, recorded=config)  # the recorded thread count too: the arithmetic depends on it
    layout.check_same_data(args.resume, config, setup.dataset)
    return hparams, setup


def train_settings(args, spec):
    """(hparams, setup, run directory) of `fmnist train`: from the flags, or the run's own for --resume."""
    from fmnist.engine import resume

    if args.resume:
        return *resumed(args, spec), args.resume
    hparams = spec.resolve(args.preset or "fast", hparam_overrides(args, spec))
    out = args.out or f"runs/{args.model}-seed{0 if args.seed is None else args.seed}"
    if (Path(out) / resume.STATE_FILE).exists():
        raise UserError(f"{out}: holds an interrupted run; continue it with --resume {out}, or choose another --out")
    return hparams, setup_from(args), out


def report_train(model, out, setup, metrics):
    from fmnist.report import compose
    from fmnist.rundir import layout

    layout.write_test_images(out, setup.splits)
    report_paths = compose.build(out)
    print(
        f"{model}: validation accuracy {metrics['val_accuracy']:.2%}, test accuracy {metrics['test_accuracy']:.2%}"
        f" ({metrics['epochs']} epochs, {metrics['train_seconds']:.0f} s)\n"
        f"run written to {out}; report: {report_paths[1]}"
    )
