"""The `fmnist` command: argparse subcommands; user errors become one line on stderr and exit status 2."""

import argparse
import sys

from fmnist import __version__
from fmnist.cli import commands
from fmnist.engine import threads
from fmnist.errors import Diverged, HparamError, Interrupted, UserError


def add_data_options(parser):
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder holding the four IDX files (default: $FMNIST_DATA_DIR, "
        "/usr/share/datasets/fashion-mnist, then ~/.cache/fmnist)",
    )
    parser.add_argument(
        "--allow-unverified",
        action="store_true",
        help="accept well-formed files whose SHA-256 is not the official Fashion-MNIST (recorded in the run)",
    )


def add_run_options(parser):
    # None means "not given" (the defaults are applied by run_settings), so --resume can tell what was asked.
    parser.add_argument("--preset", choices=("fast", "best"), help="hyper-parameter preset (default: fast)")
    parser.add_argument("--seed", type=int, help="fixes the split, init, shuffling, augmentation (default: 0)")
    parser.add_argument(
        "--subset",
        type=int,
        metavar="N",
        help="quick look: train on N images, validate and test on N/4 (figures are then not comparable)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads (default: OMP_NUM_THREADS if set, else the cores this process may use; recorded)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_device_option(parser, "the torch models train and predict on (NumPy models: the CPU); recorded")
    parser.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="also log to TensorBoard in DIR/<model>-seed<S> (a compare: DIR/<its out name>/<model>-seed<S>)",
    )
    add_data_options(parser)


def add_refit_option(parser):
    # default None: "not given", so --resume can refuse it (a run keeps its own)
    parser.add_argument(
        "--refit",
        action="store_true",
        default=None,
        help="after choosing on validation, train again on all 60,000 training images with every choice kept "
        "(into RUN/refit; recorded)",
    )


def add_label_options(parser):
    """--exclude-labels / --relabel: train on an audited set (fmnist.jobs.edits); recorded with the file's SHA-256."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--exclude-labels",
        metavar="FILE",
        help="leave out of training the images a label_issues.csv flags, or a reviews.json marks wrong",
    )
    group.add_argument(
        "--relabel", metavar="FILE", help="train and validate with the labels a reviews.json gives (reviews only)"
    )


def add_report_option(parser):
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="write no report.md / report.html and figures (for scripts; `fmnist report RUN` writes them later)",
    )


def add_device_option(parser, what):
    from fmnist.engine.devices import CHOICES

    # None means "not given": auto, or for --resume the recorded device
    parser.add_argument(
        "--device", choices=CHOICES, help=f"where {what} (default: auto: the accelerator torch finds, else the CPU)"
    )


def add_hparam_flags(parser, spec):
    """One flag per hyper-parameter of a registry entry; None means 'not given', so presets can apply."""
    for name, hparam in spec.hparams.items():
        default, text = hparam.default, hparam.help
        shown = " ".join(map(str, default)) if isinstance(default, tuple | list) else default
        by_preset = "; ".join(f"{p} preset: {v[name]}" for p, v in spec.presets.items() if name in v)
        allowed = f"; {hparam.allowed()}" if hparam.allowed() else ""
        kwargs = {
            "dest": name,
            "default": None,
            "help": f"{text} (default: {shown}{'; ' + by_preset if by_preset else ''}{allowed})",
        }
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple | list):
            kwargs.update(nargs="+", type=type(default[0]), metavar="N")
        else:
            kwargs["type"] = type(default)
        parser.add_argument("--" + name.replace("_", "-"), **kwargs)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fmnist",
        description="Train, compare, explain and serve Fashion-MNIST classifiers on a CPU.",
    )
    parser.add_argument("--version", action="version", version=f"fmnist {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_data_commands(subparsers)
    add_training_commands(subparsers)
    add_result_commands(subparsers)
    return parser


def add_data_commands(subparsers):
    data_parser = subparsers.add_parser("data", help="find, verify, describe and download the dataset")
    data_commands = data_parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    info = data_commands.add_parser("info", help="where the files are, checksums, split sizes")
    add_data_options(info)
    info.add_argument("--seed", type=int, default=0, help="seed of the train/validation split (default: 0)")
    info.set_defaults(func=commands.cmd_data_info)

    show = data_commands.add_parser("show", help="a PNG grid of examples per class")
    add_data_options(show)
    show.add_argument("--out", required=True, metavar="FILE.png", help="where to write the image")
    show.add_argument(
        "--split", choices=("train", "val", "test"), default="train", help="which split to draw from (default: train)"
    )
    show.add_argument("--per-class", type=int, default=8, help="examples per class (default: 8)")
    show.add_argument("--seed", type=int, default=0, help="seed of the split and of the examples chosen (default: 0)")
    show.set_defaults(func=commands.cmd_data_show)

    fetch = data_commands.add_parser("download", help="download and verify the four files")
    fetch.add_argument("--dir", metavar="DIR", help="destination (default: ~/.cache/fmnist)")
    fetch.set_defaults(func=commands.cmd_data_download)


def add_training_commands(subparsers):
    from fmnist.models.registry import REGISTRY

    train = subparsers.add_parser("train", help="train one model and write its run directory")
    models = train.add_subparsers(dest="model", metavar="MODEL", required=True)
    for name, spec in REGISTRY.items():
        one = models.add_parser(name, help=spec.summary, description=spec.summary)
        add_run_options(one)
        add_refit_option(one)
        add_report_option(one)
        one.add_argument("--out", metavar="DIR", help="run directory (default: runs/MODEL-seedSEED)")
        one.add_argument(
            "--resume",
            metavar="RUN_DIR",
            help="continue a run stopped by Ctrl-C or SIGTERM (or killed) with its own settings, bit for bit",
        )
        add_label_options(one)
        add_hparam_flags(one, spec)
        one.set_defaults(func=commands.cmd_train)

    every = ",".join(REGISTRY)
    comp = subparsers.add_parser("compare", help="train all models on one split, evaluate, write a comparison report")
    comp.add_argument("--models", help=f"comma-separated models (default: {every})")
    comp.add_argument("--out", metavar="DIR", help="run directory (default: runs/compare)")
    comp.add_argument("--epochs", type=int, help="cap every model at this many epochs (default: each preset's own)")
    comp.add_argument("--seeds", metavar="S,S,...", help="one compare per seed in OUT/seed-S; report mean ± sd")
    comp.add_argument("--resume", metavar="OUT", help="continue a stopped compare: skip what finished, resume the rest")
    add_run_options(comp)
    add_refit_option(comp)
    add_report_option(comp)
    add_label_options(comp)
    comp.set_defaults(func=commands.cmd_compare)
    add_tune_command(subparsers)
    add_audit_command(subparsers)


def add_audit_command(subparsers):
    aud = subparsers.add_parser("audit", help="which labels look wrong: K-fold out-of-sample probabilities, cleanlab")
    aud.add_argument(
        "--model", default="cnn", help="the model each fold trains: linear, mlp, cnn, scratch-mlp (default: cnn)"
    )
    aud.add_argument("--folds", type=int, default=5, help="K, stratified and seeded (default: 5)")
    aud.add_argument("--epochs", type=int, help="cap each fold model at this many epochs (default: the preset's own)")
    aud.add_argument(
        "--out",
        metavar="DIR",
        default="runs/audit",
        help="the audit directory; the same command on it continues a stopped audit (default: runs/audit)",
    )
    aud.add_argument("--preset", choices=("fast", "best"), default="fast", help="the model's preset (default: fast)")
    aud.add_argument("--seed", type=int, default=0, help="fixes the folds, the fold models and their data (default: 0)")
    aud.add_argument("--subset", type=int, metavar="N", help="quick look: the first N training and N/6 test images")
    aud.add_argument("--threads", type=int, metavar="N", help="torch threads (default: as fmnist train; recorded)")
    aud.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_device_option(aud, "the fold models train and predict")
    add_data_options(aud)
    add_report_option(aud)
    aud.set_defaults(func=commands.cmd_audit)


def add_tune_command(subparsers):
    from fmnist.models.registry import REGISTRY

    tune = subparsers.add_parser("tune", help="search a model's hyper-parameters with Optuna; workers share a study")
    tune.add_argument("model", choices=[n for n, s in REGISTRY.items() if any(h.search for h in s.hparams.values())])
    tune.add_argument("--trials", type=int, required=True, help="finished trials the study should hold (all workers)")
    tune.add_argument(
        "--storage",
        required=True,
        metavar="URL",
        help="sqlite:///study.db, or e.g. postgresql://host/db across machines",
    )
    tune.add_argument("--study", metavar="NAME", help="study name (default: MODEL-PRESET)")
    tune.add_argument("--epochs-cap", type=int, metavar="N", help="train each trial at most N epochs")
    tune.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        metavar="S",
        help="a worker's sign of life every S seconds; a trial silent for 4*S is marked failed (default: 30)",
    )
    tune.add_argument("--out", metavar="DIR", help="trial folders and tune-report.html (default: runs/tune-STUDY)")
    add_run_options(tune)
    tune.set_defaults(func=commands.cmd_tune)


def add_result_commands(subparsers):
    ev = subparsers.add_parser("evaluate", help="re-evaluate a run's saved models and rebuild its report")
    ev.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by fmnist train or fmnist compare")
    ev.add_argument("--split", choices=("test", "val"), default="test", help="which split to print (default: test)")
    add_device_option(ev, "the torch models predict")
    ev.add_argument(
        "--robustness",
        nargs="?",
        const=2000,
        type=int,
        metavar="N",
        help="also sweep 13 corruptions x 5 severities over the first N test images (default N: 2000)",
    )
    add_data_options(ev)
    ev.set_defaults(func=commands.cmd_evaluate)

    rep = subparsers.add_parser("report", help="rebuild report.md and report.html from a run's saved results")
    rep.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by fmnist train or fmnist compare")
    rep.set_defaults(func=commands.cmd_report)

    pred = subparsers.add_parser("predict", help="classify your own images with a trained model")
    pred.add_argument("model", metavar="MODEL", help="a run directory (or its checkpoint.json) of any model")
    pred.add_argument("inputs", metavar="IMAGE_OR_DIR", nargs="+", help="image files or folders of images")
    pred.add_argument("--top-k", type=int, default=3, help="how many classes to list per image (default: 3)")
    pred.add_argument("--coverage", default="0.95", help="how often the prediction set holds the class (default 0.95)")
    pred.add_argument("--json", action="store_true", help="print one JSON document (errors included)")
    pred.add_argument("--save-preprocessed", metavar="DIR", help="write the 28x28 images the model saw")
    pred.add_argument("--box", metavar="X0,Y0,X1,Y1", help="where the garment is in the photo (its pixels)")
    add_device_option(pred, "a torch model predicts")
    pred.set_defaults(func=commands.cmd_predict)

    add_explain_command(subparsers)
    add_serve_command(subparsers)

    exp = subparsers.add_parser("export", help="write a run's models as ONNX graphs that take uint8 images")
    exp.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by fmnist train or fmnist compare")
    exp.add_argument("--format", choices=("onnx",), default="onnx", help="the graph format (default: onnx)")
    exp.add_argument("--out", metavar="FILE", help="where to write it (default: RUN_DIR/model.onnx, per model)")
    exp.set_defaults(func=commands.cmd_export)


def add_serve_command(subparsers):
    srv = subparsers.add_parser("serve", help="a web page and an HTTP API for a run's models")
    srv.add_argument(
        "run_dir", metavar="RUN_DIR", nargs="?", help="a directory written by fmnist train or fmnist compare"
    )
    srv.add_argument("--review", metavar="AUDIT_DIR", help="also the page at /review to check an audit's suspects")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    srv.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    srv.add_argument(
        "--workers", type=int, default=1, metavar="N", help="server processes behind the one port (default: 1)"
    )
    srv.add_argument(
        "--runtime",
        choices=("torch", "onnx"),
        default="torch",
        help="what runs the models: torch, or onnxruntime on the exported graph (pip install 'fmnist[onnx]')",
    )
    add_device_option(srv, "torch runs the models (--runtime torch)")
    srv.add_argument("--api-key-file", metavar="FILE", help="callers need one of its keys (one per line) as Bearer")
    srv.add_argument(
        "--rate-limit", type=float, default=20.0, metavar="R", help="requests a second per key, bursts of 2R (20)"
    )
    srv.set_defaults(func=commands.cmd_serve)


def add_explain_command(subparsers):
    from fmnist.predict.explain import DEFAULT_METHOD, METHODS

    exp = subparsers.add_parser("explain", help="which pixels made a model decide: an attribution map per image")
    exp.add_argument("model", metavar="MODEL_OR_RUN", help="a run directory (or its checkpoint.json) of any model")
    exp.add_argument("inputs", metavar="IMAGE_OR_DIR", nargs="+", help="image files or folders of images")
    exp.add_argument(
        "--method",
        choices=METHODS,
        help=f"attribution method (default: {DEFAULT_METHOD}; grad-cam: cnn and hybrid only)",
    )
    exp.add_argument(
        "--target",
        default="predicted",
        help="the class to explain: predicted (default), a class number 0-9 or a class name",
    )
    exp.add_argument(
        "--out", metavar="DIR", default="explained", help="where NAME.npy and NAME.png go (default: explained)"
    )
    exp.add_argument("--json", action="store_true", help="print one JSON document: predictions and file names")
    exp.set_defaults(func=commands.cmd_explain)


def worded(exc):
    """The one line a user sees for an error the training code raised in its own terms."""
    if isinstance(exc, HparamError):
        flag = exc.name if exc.name == "hyper-parameters" else "--" + exc.name.replace("_", "-")
        return f"{exc.model} {flag}: {exc.message}"
    if isinstance(exc, Diverged):
        return f"{exc}; try a lower --lr"
    return str(exc)


def main(argv=None):
    threads.wait_passively()  # before any command loads torch and its OpenMP runtime
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except (UserError, HparamError, Diverged) as exc:
        if args.debug:
            raise
        print(f"fmnist: error: {worded(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"fmnist: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"fmnist: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("fmnist: interrupted", file=sys.stderr)
        return 130
    return status or 0
