"""The command line's side of a run's settings: flags (or, for --resume, the run's recorded config) turned into
`fmnist.jobs.settings` calls, and the closing report of `fmnist train`. Used by `fmnist train` in one process,
under torchrun (fmnist.cli.torchrun), by `fmnist compare` and by `fmnist tune`.
"""

import dataclasses
from pathlib import Path

from fmnist.data import dataset as data_module
from fmnist.engine import devices, resume
from fmnist.errors import UserError
from fmnist.jobs import settings, train
from fmnist.rundir import layout

RECORDED = ("preset", "seed", "subset", "threads", "device", "refit")  # the Setup's settings a recorded config keeps


@dataclasses.dataclass(frozen=True)
class TrainRun:
    """Everything `fmnist train` needs: the model's hyper-parameters, the Setup, the run directory and, when it
    continues a run, that run's recorded config."""

    hparams: dict
    setup: settings.Setup
    out: str
    config: dict | None = None


def hparam_overrides(args, spec):
    values = {name: getattr(args, name) for name in spec.hparams}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def load_data(args):
    return data_module.load(args.data_dir, args.allow_unverified)


def setup_from_flags(args, dataset=None, **extra):
    """The Setup the flags ask for (defaults: seed 0, the full split, the fast preset)."""
    dataset = dataset or load_data(args)
    keys = {"seed": args.seed or 0, "subset": args.subset, "threads": args.threads, "preset": args.preset or "fast"}
    keys["labels"] = label_edits(args)
    keys["refit"] = bool(getattr(args, "refit", None))
    return settings.build(dataset, progress=not args.no_progress, **keys, **logged(args), **extra)


def label_edits(args):
    """The `fmnist.jobs.edits.LabelEdits` that --exclude-labels or --relabel asks for; None without them."""
    from fmnist.jobs import edits

    for mode, flag in (("exclude", "exclude_labels"), ("relabel", "relabel")):
        if getattr(args, flag, None):
            return edits.read(mode, getattr(args, flag))
    return None


def logged(args):
    """The Setup fields of where a run goes: its device (as asked) and its TensorBoard folder."""
    return {"device": getattr(args, "device", None) or "auto", "tensorboard": getattr(args, "tensorboard", None)}


def default_out(args):
    return args.resume or args.out or f"runs/{args.model}-seed{args.seed or 0}"


def _refuse_changes(args, spec):
    """--resume continues with the run's own settings: a flag that would change them is an error."""
    given = [f"--{name.replace('_', '-')}" for name, value in hparam_overrides(args, spec).items() if value is not None]
    given += [f"--{name}" for name in RECORDED if getattr(args, name, None) is not None]
    given += [f"--{name.replace('_', '-')}" for name in ("exclude_labels", "relabel") if getattr(args, name, None)]
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        given.append("--out")
    if given:
        raise UserError(f"--resume {args.resume}: continues with the run's own settings; drop {' '.join(given)}")


def recorded_run(args, spec, out, **extra):
    """The TrainRun of the run recorded in `out`: its hyper-parameters and Setup (its thread count too: the
    arithmetic depends on it), on the same data files."""
    hparams, config = train.resume_settings(out, spec.name)
    dataset = load_data(args)
    layout.check_same_data(out, config, dataset)
    tensorboard = getattr(args, "tensorboard", None)
    setup = settings.recorded(config, dataset, progress=not args.no_progress, tensorboard=tensorboard, **extra)
    return TrainRun(hparams, setup, out, config)


def train_run(args, spec, **extra):
    """`fmnist train`'s TrainRun: from the flags, or the run's own for --resume. extra: Setup fields (torchrun's
    ranks and processes)."""
    if args.resume:
        _refuse_changes(args, spec)
        return recorded_run(args, spec, args.resume, **extra)
    out = default_out(args)
    if (Path(out) / resume.STATE_FILE).exists():
        raise UserError(f"{out}: holds an interrupted run; continue it with --resume {out}, or choose another --out")
    hparams = spec.resolve(args.preset or "fast", hparam_overrides(args, spec))
    return TrainRun(hparams, setup_from_flags(args, **extra), out)


def compare_plan(args):
    """(plan, out, dataset) of `fmnist compare`: for --resume OUT as the compare recorded them (other settings are
    an error), else from the flags; every model's hyper-parameters checked before anything is written."""
    from fmnist.jobs import compare
    from fmnist.models import registry

    dataset = load_data(args)
    if args.resume:
        given = [
            f"--{n.replace('_', '-')}"
            for n in (
                *("models", "seeds", "epochs", "preset", "seed", "subset", "device"),
                *("exclude_labels", "relabel", "refit"),
            )
            if getattr(args, n, None) is not None
        ]
        if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
            given.append("--out")
        if given:
            raise UserError(
                f"--resume {args.resume}: continues with the compare's own settings; drop {' '.join(given)}"
            )
        return compare.read_plan(args.resume, dataset), args.resume, dataset
    if args.seeds is not None and args.seed is not None:
        raise UserError("--seed and --seeds: give one of them")
    plan = {
        "models": compare.parse_models(args.models or ",".join(registry.REGISTRY)),
        "seeds": None if args.seeds is None else compare.parse_seeds(args.seeds),
        "seed": args.seed or 0,
        "preset": args.preset or "fast",
        "subset": args.subset,
        "epochs": args.epochs,
        "data": dataset.provenance(),
        "device": args.device or "auto",
        "refit": bool(args.refit),
    }
    if (edits := label_edits(args)) is not None:
        plan["labels"] = edits.record()
    for name in plan["models"]:  # every value checked before anything is written
        registry.spec(name).resolve(plan["preset"], {"epochs": plan["epochs"]})
    if devices.explicit(plan["device"]):
        devices.resolve(plan["device"])
    return plan, args.out or "runs/compare", dataset


def report_train(model, run, metrics, report=True, refit=None):
    """Print what `fmnist train` made (and write its report and model card); refit: the refit's metrics, if any."""
    from fmnist.jobs import refit as refitting
    from fmnist.report import card, compose

    folders = [(run.out, metrics, f"validation accuracy {metrics['val_accuracy']:.2%}")]
    if refit:
        folders.append((Path(run.out) / refitting.FOLDER, refit, "refit on train + validation"))
    for folder, record, what in folders:
        layout.write_test_images(folder, run.setup.splits)  # kept either way: a later `fmnist report` draws them
        card.write(folder)  # with or without the report: a compare writes its cards once, at its end
        where = f"; report: {compose.build(folder)[1]}" if report else ""
        reviewed = record.get("test_accuracy_reviewed")
        also = f" (original labels), {reviewed:.2%} (reviewed labels)" if reviewed is not None else ""
        print(
            f"{model}: {what}, test accuracy {record['test_accuracy']:.2%}{also}"
            f" ({record['epochs']} epochs, {record['train_seconds']:.0f} s)\n"
            f"run written to {folder}{where}"
        )
