"""The `fmnist` command: argparse subcommands; user errors become one line on stderr and exit status 2."""

import argparse
import sys
import time
from pathlib import Path

from fmnist import __version__
from fmnist.errors import Interrupted, UserError


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


def cmd_data_info(args):
    from fmnist import data

    start = time.perf_counter()
    ds = data.load(args.data_dir, args.allow_unverified)
    seconds = time.perf_counter() - start
    splits = data.split(ds, args.seed)
    print(f"found in {ds.paths['train_images'].parent} (loaded and verified in {seconds:.2f} s)")
    for role, path in ds.paths.items():
        ok = "official" if ds.sha256[role] == data.SHA256[role] else "UNVERIFIED"
        print(f"  {path}  sha256 {ds.sha256[role]}  {ok}")
    rows = [("train", splits.y_train), ("validation", splits.y_val), ("test", splits.y_test)]
    print(f"\nsplit (seed {args.seed}): " + ", ".join(f"{name} {len(y):,}" for name, y in rows))
    width = max(len(n) for n in data.CLASS_NAMES)
    print(f"  {'class':<{width + 4}}" + "".join(f"{name:>12}" for name, _ in rows))
    counts = [data.class_counts(y) for _, y in rows]
    for c, cname in enumerate(data.CLASS_NAMES):
        print(f"  {c} {cname:<{width + 2}}" + "".join(f"{cnt[c]:>12,}" for cnt in counts))
    print(f"train pixel mean {splits.mean:.4f}, std {splits.std:.4f} (pixels scaled to [0, 1])")


def cmd_data_show(args):
    from fmnist import data, plots

    ds = data.load(args.data_dir, args.allow_unverified)
    splits = data.split(ds, args.seed)
    images, labels = {
        "train": (splits.x_train, splits.y_train),
        "val": (splits.x_val, splits.y_val),
        "test": (splits.x_test, splits.y_test),
    }[args.split]
    plots.class_grid(images, labels, args.out, per_class=args.per_class, seed=args.seed)
    print(f"wrote {args.out}")


def cmd_data_download(args):
    from fmnist import download

    folder = download.download(args.dir or download.default_folder())
    print(f"Fashion-MNIST verified in {folder}")


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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_data_options(parser)


def add_hparam_flags(parser, spec):
    """One flag per hyper-parameter of a registry entry; None means 'not given', so presets can apply."""
    for name, (default, text) in spec.hparams.items():
        shown = " ".join(map(str, default)) if isinstance(default, tuple | list) else default
        by_preset = "; ".join(f"{p} preset: {v[name]}" for p, v in spec.presets.items() if name in v)
        kwargs = {
            "dest": name,
            "default": None,
            "help": f"{text} (default: {shown}{'; ' + by_preset if by_preset else ''})",
        }
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple | list):
            kwargs.update(nargs="+", type=type(default[0]), metavar="N")
        else:
            kwargs["type"] = type(default)
        parser.add_argument("--" + name.replace("_", "-"), **kwargs)


def hparam_overrides(args, spec):
    values = {name: getattr(args, name) for name in spec.hparams}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def run_settings(args):
    """(preset, seed) as given, else their defaults."""
    return args.preset or "fast", 0 if args.seed is None else args.seed


def load_splits(args, seed, subset):
    from fmnist import data

    dataset = data.load(args.data_dir, args.allow_unverified)
    splits = data.split(dataset, seed)
    if subset:
        splits = splits.quick(subset)
    return dataset, splits


def resumed_settings(args, spec):
    """--resume RUN_DIR: the run's recorded settings; a flag that would change them is an error."""
    from fmnist import runs

    given = [f"--{name.replace('_', '-')}" for name, value in hparam_overrides(args, spec).items() if value is not None]
    given += [f"--{name}" for name in ("preset", "seed", "subset") if getattr(args, name) is not None]
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        given.append("--out")
    if given:
        raise UserError(f"--resume {args.resume}: continues with the run's own settings; drop {' '.join(given)}")
    hparams, config = runs.resume_settings(args.resume, args.model)
    return hparams, config["preset"], config["seed"], config.get("subset"), config


def cmd_train(args):
    from fmnist import registry, report, resume, runs

    spec = registry.spec(args.model)
    if args.resume:
        hparams, preset, seed, subset, config = resumed_settings(args, spec)
        out = args.resume
        dataset, splits = load_splits(args, seed, subset)
        runs.check_same_data(out, config, dataset)
    else:
        preset, seed = run_settings(args)
        hparams = spec.resolve(preset, hparam_overrides(args, spec))
        out = args.out or f"runs/{args.model}-seed{seed}"
        if (Path(out) / resume.STATE_FILE).exists():
            raise UserError(
                f"{out}: holds an interrupted run; continue it with --resume {out}, or choose another --out"
            )
        dataset, splits = load_splits(args, seed, args.subset)
    resumer = resume.Resumer(out, resume=bool(args.resume))
    try:
        _, metrics = runs.train_run(
            args.model,
            hparams,
            splits,
            dataset,
            out,
            preset=preset,
            seed=seed,
            progress=not args.no_progress,
            resumer=resumer,
        )
    except Interrupted as exc:
        raise Interrupted(f"{exc}; continue with: fmnist train {args.model} --resume {out}", exc.signum) from None
    runs.write_test_images(out, splits)
    report_paths = report.build(out)
    print(
        f"{args.model}: validation accuracy {metrics['val_accuracy']:.2%}, test accuracy {metrics['test_accuracy']:.2%}"
        f" ({metrics['epochs']} epochs, {metrics['train_seconds']:.0f} s)\n"
        f"run written to {out}; report: {report_paths[1]}"
    )


def cmd_compare(args):
    from fmnist import compare, report

    names = compare.parse_models(args.models)
    preset, seed = run_settings(args)
    dataset, splits = load_splits(args, seed, args.subset)
    results = compare.compare(
        names,
        splits,
        dataset,
        args.out,
        preset=preset,
        seed=seed,
        progress=not args.no_progress,
        overrides={"epochs": args.epochs},
    )
    report_paths = report.build(args.out)
    print()
    print(compare.table(results))
    print(f"\nrun written to {args.out}; report: {report_paths[1]}")


def cmd_evaluate(args):
    from fmnist import evaluate, report, runs

    runs.reevaluate(args.run_dir, args.data_dir, args.allow_unverified)
    results = evaluate.evaluate_run(args.run_dir)
    print(evaluate.format_summary(results, args.split))
    print(f"report: {report.build(args.run_dir)[1]}")


def cmd_report(args):
    from fmnist import report

    md_path, html_path = report.build(args.run_dir)
    print(f"wrote {md_path} and {html_path}")


def cmd_predict(args):
    from fmnist import checkpoint, predict

    model, _ = checkpoint.load(args.model)
    predictions, failures = predict.predict_files(model, args.inputs, args.top_k)
    if args.json:
        print(predict.format_json(predictions, failures))
    elif predictions:
        print(predict.format_text(predictions))
    if not args.json:
        for failure in failures:
            print(f"fmnist: error: {failure}", file=sys.stderr)
    if args.save_preprocessed:
        predict.save_preprocessed(predictions, args.save_preprocessed)
    return 2 if failures else 0


def cmd_serve(args):
    try:
        from fmnist import serve
    except ModuleNotFoundError as exc:
        raise UserError(f"fmnist serve needs {exc.name}: pip install 'fmnist[serve]'") from None
    return serve.run(args.run_dir, host=args.host, port=args.port)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fmnist",
        description="Train, compare, explain and serve Fashion-MNIST classifiers on a CPU.",
    )
    parser.add_argument("--version", action="version", version=f"fmnist {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data_parser = commands.add_parser("data", help="find, verify, describe and download the dataset")
    data_commands = data_parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    info = data_commands.add_parser("info", help="where the files are, checksums, split sizes")
    add_data_options(info)
    info.add_argument("--seed", type=int, default=0, help="seed of the train/validation split (default: 0)")
    info.set_defaults(func=cmd_data_info)

    show = data_commands.add_parser("show", help="a PNG grid of examples per class")
    add_data_options(show)
    show.add_argument("--out", required=True, metavar="FILE.png", help="where to write the image")
    show.add_argument(
        "--split", choices=("train", "val", "test"), default="train", help="which split to draw from (default: train)"
    )
    show.add_argument("--per-class", type=int, default=8, help="examples per class (default: 8)")
    show.add_argument("--seed", type=int, default=0, help="seed of the split and of the examples chosen (default: 0)")
    show.set_defaults(func=cmd_data_show)

    fetch = data_commands.add_parser("download", help="download and verify the four files")
    fetch.add_argument("--dir", metavar="DIR", help="destination (default: ~/.cache/fmnist)")
    fetch.set_defaults(func=cmd_data_download)

    from fmnist.registry import REGISTRY

    train = commands.add_parser("train", help="train one model and write its run directory")
    models = train.add_subparsers(dest="model", metavar="MODEL", required=True)
    for name, spec in REGISTRY.items():
        one = models.add_parser(name, help=spec.summary, description=spec.summary)
        add_run_options(one)
        one.add_argument("--out", metavar="DIR", help="run directory (default: runs/MODEL-seedSEED)")
        one.add_argument(
            "--resume",
            metavar="RUN_DIR",
            help="continue a run stopped by Ctrl-C or SIGTERM (or killed) with its own settings, bit for bit",
        )
        add_hparam_flags(one, spec)
        one.set_defaults(func=cmd_train)

    every = ",".join(REGISTRY)
    comp = commands.add_parser("compare", help="train all models on one split, evaluate, write a comparison report")
    comp.add_argument("--models", default=every, help=f"comma-separated models (default: {every})")
    comp.add_argument("--out", metavar="DIR", default="runs/compare", help="run directory (default: runs/compare)")
    comp.add_argument("--epochs", type=int, help="cap every model at this many epochs (default: each preset's own)")
    add_run_options(comp)
    comp.set_defaults(func=cmd_compare)

    ev = commands.add_parser("evaluate", help="re-evaluate a run's saved models and rebuild its report")
    ev.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by fmnist train or fmnist compare")
    ev.add_argument("--split", choices=("test", "val"), default="test", help="which split to print (default: test)")
    add_data_options(ev)
    ev.set_defaults(func=cmd_evaluate)

    rep = commands.add_parser("report", help="rebuild report.md and report.html from a run's saved results")
    rep.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by fmnist train or fmnist compare")
    rep.set_defaults(func=cmd_report)

    pred = commands.add_parser("predict", help="classify your own images with a trained model")
    pred.add_argument("model", metavar="MODEL", help="a run directory (or its checkpoint.json) of any model")
    pred.add_argument("inputs", metavar="IMAGE_OR_DIR", nargs="+", help="image files or folders of images")
    pred.add_argument("--top-k", type=int, default=3, help="how many classes to list per image (default: 3)")
    pred.add_argument("--json", action="store_true", help="print one JSON document (errors included)")
    pred.add_argument("--save-preprocessed", metavar="DIR", help="write the 28x28 images the model saw")
    pred.set_defaults(func=cmd_predict)

    srv = commands.add_parser("serve", help="a web page and an HTTP API for a run's models")
    srv.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by fmnist train or fmnist compare")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    srv.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    srv.set_defaults(func=cmd_serve)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"fmnist: error: {exc}", file=sys.stderr)
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
