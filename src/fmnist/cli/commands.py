"""What each `fmnist` subcommand does, given its parsed arguments; parser.py builds the parser and words errors.

Imports are local to each command so that `fmnist data ...` and `--help` never load torch.
"""

import dataclasses
import sys
import time
from pathlib import Path

from fmnist.cli import settings
from fmnist.errors import Interrupted, UserError


def cmd_data_info(args):
    from fmnist.data import dataset

    start = time.perf_counter()
    ds = dataset.load(args.data_dir, args.allow_unverified)
    seconds = time.perf_counter() - start
    splits = dataset.split(ds, args.seed)
    print(f"found in {ds.paths['train_images'].parent} (loaded and verified in {seconds:.2f} s)")
    for role, path in ds.paths.items():
        ok = "official" if ds.sha256[role] == dataset.SHA256[role] else "UNVERIFIED"
        print(f"  {path}  sha256 {ds.sha256[role]}  {ok}")
    rows = [("train", splits.y_train), ("validation", splits.y_val), ("test", splits.y_test)]
    print(f"\nsplit (seed {args.seed}): " + ", ".join(f"{name} {len(y):,}" for name, y in rows))
    width = max(len(n) for n in dataset.CLASS_NAMES)
    print(f"  {'class':<{width + 4}}" + "".join(f"{name:>12}" for name, _ in rows))
    counts = [dataset.class_counts(y) for _, y in rows]
    for c, cname in enumerate(dataset.CLASS_NAMES):
        print(f"  {c} {cname:<{width + 2}}" + "".join(f"{cnt[c]:>12,}" for cnt in counts))
    print(f"train pixel mean {splits.mean:.4f}, std {splits.std:.4f} (pixels scaled to [0, 1])")


def cmd_data_show(args):
    from fmnist.data import dataset
    from fmnist.report import plots

    ds = dataset.load(args.data_dir, args.allow_unverified)
    splits = dataset.split(ds, args.seed)
    images, labels = {
        "train": (splits.x_train, splits.y_train),
        "val": (splits.x_val, splits.y_val),
        "test": (splits.x_test, splits.y_test),
    }[args.split]
    plots.save(plots.class_grid(images, labels, per_class=args.per_class, seed=args.seed), args.out)
    print(f"wrote {args.out}")


def cmd_data_download(args):
    from fmnist.data import download

    folder = download.download(args.dir or download.default_folder())
    print(f"Fashion-MNIST verified in {folder}")


def cmd_train(args):
    from fmnist.engine import parallel
    from fmnist.jobs import train
    from fmnist.models import registry

    spec = registry.spec(args.model)
    if parallel.launched():  # by torchrun: data-parallel
        from fmnist.cli import torchrun

        return torchrun.cmd_train(args, spec)
    run = settings.train_run(args, spec)
    try:
        metrics, refit = train.selection_then_refit(
            args.model, run.hparams, run.setup, run.out, resume=bool(args.resume)
        )
    except Interrupted as exc:
        raise Interrupted(f"{exc}; continue with: fmnist train {args.model} --resume {run.out}", exc.signum) from None
    settings.report_train(args.model, run, metrics, report=not args.no_report, refit=refit)


def evaluation_table(results, split):
    """One split's metrics per model: accuracy, macro F1, log-loss, the weakest class and the top confusion."""
    from fmnist.report.tables import table

    rows = []
    for name, m in results.items():
        m = m[split]
        weakest = min(m["per_class"], key=lambda row: row["f1"])
        top = m["most_confused"][0] if m["most_confused"] else None
        confusion = f"{top['true_name']} -> {top['predicted_name']} ({top['count']})" if top else "none"
        cells = (f"{m['accuracy']:.2%}", f"{m['macro']['f1']:.4f}", f"{m['log_loss']:.4f}")
        rows.append((name, *cells, f"{weakest['name']} ({weakest['f1']:.3f})", confusion))
    headers = ("model", "accuracy", "macro F1", "log-loss", "weakest class (F1)", "top confusion")
    return f"{split} split\n" + table(headers, rows)


def cmd_compare(args):
    from fmnist.jobs import compare, edits
    from fmnist.jobs import settings as run_settings
    from fmnist.report import compose
    from fmnist.report import seeds as seeds_report
    from fmnist.report import tables as text

    plan, out, dataset = settings.compare_plan(args)
    if not args.resume:
        compare.write_plan(out, plan)

    def setup_for(seed):
        keys = {"subset": plan["subset"], "preset": plan["preset"], "threads": args.threads}
        keys["device"] = plan.get("device", "cpu")
        keys["refit"] = bool(plan.get("refit"))
        if plan.get("labels"):  # --exclude-labels / --relabel, the file checked against its recorded checksum
            keys["labels"] = edits.reread(plan["labels"])
        if args.tensorboard:  # one group per compare: DIR/<out name>/<model>-seed<S>
            keys["tensorboard"] = str(Path(args.tensorboard) / Path(out).resolve().name)
        return run_settings.build(dataset, seed=seed, progress=not args.no_progress, **keys)

    try:
        results = compare.run_compare(plan, out, setup_for, resume=bool(args.resume), report=not args.no_report)
    except Interrupted as exc:
        raise Interrupted(f"{exc}; continue with: fmnist compare --resume {out}", exc.signum) from None
    if plan["seeds"] is not None:
        header, rows = seeds_report.seeds_table(results)
        notes = "\n".join(seeds_report.close_call_lines(compare.close_calls(results)))
        md = Path(out) / "report.md"
        print(f"\n{text.table(header, rows)}\n{notes}\n\nrun written to {out}; report: {md.with_suffix('.html')}")
        return
    where = f"; report: {compose.build(out)[1]}" if not args.no_report else ""
    print(f"\n{text.comparison(results)}\n\nrun written to {out}{where}")


def cmd_tune(args):
    try:
        from fmnist.jobs import tune
        from fmnist.report import tuning
    except ImportError as exc:
        raise UserError(f"fmnist tune needs Optuna ({exc}); install it with: pip install 'fmnist[tune]'") from None
    if args.trials < 1:
        raise UserError(f"--trials {args.trials}: need at least 1")
    if args.epochs_cap is not None and args.epochs_cap < 1:
        raise UserError(f"--epochs-cap {args.epochs_cap}: need at least 1 epoch")
    if args.heartbeat < 1:
        raise UserError(f"--heartbeat {args.heartbeat}: need at least 1 second")
    setup = settings.setup_from_flags(args)
    setup = dataclasses.replace(setup, splits=tune.without_test(setup.splits), progress=False)
    name = args.study or f"{args.model}-{setup.preset}"
    if args.tensorboard:  # one group per study: DIR/<study>/trial-<N>
        setup = dataclasses.replace(setup, tensorboard=str(Path(args.tensorboard) / name))
    out = Path(args.out or f"runs/tune-{name}")
    task = tune.Task(args.model, setup, args.epochs_cap, out)
    study = tune.run(task, args.storage, name, args.trials, args.heartbeat)
    top = tune.best(study)
    _, page = tuning.write_report(study, out)
    done = len(study.get_trials(deepcopy=False, states=tune.FINISHED))
    print(f"study {name!r}: {done} finished trials; best: trial {top.number}, validation accuracy {top.value:.4f}")
    print(f"report: {page}\ntrain it with:\n{top.user_attrs['command']}")


def cmd_audit(args):
    from fmnist.cli import audit

    return audit.cmd_audit(args)


def cmd_evaluate(args):
    from fmnist.jobs import train
    from fmnist.report import compose

    results = train.reevaluate(args.run_dir, args.data_dir, args.allow_unverified, args.device or "auto")
    print(evaluation_table(results, args.split))
    if args.robustness is not None:
        from fmnist.data import dataset
        from fmnist.jobs import robustness

        if args.robustness < 1:
            raise UserError(f"--robustness {args.robustness}: need at least 1 image")
        data = dataset.load(args.data_dir, args.allow_unverified)
        record = robustness.run_saved(args.run_dir, data, args.robustness, progress=sys.stderr.isatty())
        print(robustness.table(record))
    print(f"report: {compose.build(args.run_dir)[1]}")


def cmd_report(args):
    from fmnist.report import compose

    md_path, html_path = compose.build(args.run_dir)
    print(f"wrote {md_path} and {html_path}")


def cmd_predict(args):
    from fmnist.jobs import train
    from fmnist.models import registry
    from fmnist.predict import answers, segment, sets
    from fmnist.rundir import checkpoint

    try:
        coverage = sets.coverage_value(args.coverage, "--coverage")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    model, manifest = checkpoint.load(args.model, calibrated=True)
    model.to_device(train.model_device(registry.spec(manifest["kind"]), args.device or "auto"))
    box = segment.parse_box(args.box) if args.box else None
    predictions, failures = answers.predict_files(model, args.inputs, args.top_k, box=box, coverage=coverage)
    if args.json:
        print(answers.format_json(predictions, failures))
    elif predictions:
        print(answers.format_text(predictions))
    if not args.json:
        for failure in failures:
            print(f"fmnist: error: {failure}", file=sys.stderr)
    if args.save_preprocessed:
        answers.save_preprocessed(predictions, args.save_preprocessed)
    return 2 if failures else 0


def cmd_explain(args):
    import json

    from fmnist.rundir import checkpoint

    try:
        from fmnist.predict import explanations
        from fmnist.predict.images import shown
    except ModuleNotFoundError as exc:
        raise UserError(f"fmnist explain needs {exc.name}: pip install 'fmnist[explain]'") from None
    model, _ = checkpoint.load(args.model)
    predictions, explained, failures = explanations.explain_files(model, args.inputs, args.method, args.target)
    written = explanations.write_outputs(predictions, explained, args.out) if predictions else []
    if args.json:
        print(json.dumps(explanations.as_json(predictions, explained, failures, written), indent=2))
    else:
        for pred, (npy, png), target in zip(predictions, written, explained.targets, strict=True):
            maps = f"{shown(npy)}, {shown(png)}"  # printable, like the input's own name
            print(f"{pred.file}: {answers_line(pred)}; {explained.method} map for {class_name(target)}: {maps}")
        for failure in failures:
            print(f"fmnist: error: {failure}", file=sys.stderr)
    return 2 if failures else 0


def class_name(index):
    from fmnist.data.dataset import CLASS_NAMES

    return CLASS_NAMES[int(index)]


def answers_line(pred):
    c, p = pred.top[0]
    return f"{class_name(c)} {p:.1%}"


def cmd_serve(args):
    from fmnist.rundir import checkpoint

    if getattr(args, "review", None):  # the review page (fmnist.serve.review), with or without a run's models
        from fmnist.cli import audit

        return audit.cmd_serve_review(args)
    if args.run_dir is None:
        raise UserError("fmnist serve: give RUN_DIR, --review AUDIT_DIR, or both")
    checkpoint.models_of(args.run_dir)  # a wrong path fails in one line now, not after the app's imports
    try:
        from fmnist.serve import app, operate
    except ModuleNotFoundError as exc:
        raise UserError(f"fmnist serve needs {exc.name}: pip install 'fmnist[serve]'") from None
    runtime = (args.runtime, args.device or "auto")
    access = operate.Access(args.api_key_file, args.rate_limit)  # keys and their rate (fmnist.serve.keys)
    if getattr(args, "workers", 1) != 1:  # N processes behind one port (fmnist.serve.workers)
        from fmnist.serve import workers

        where = {"host": args.host, "port": args.port, "runtime": runtime, "access": access}
        return workers.run(args.run_dir, workers=args.workers, **where)
    return app.run(args.run_dir, host=args.host, port=args.port, runtime=runtime, access=access)


def cmd_export(args):
    from fmnist.rundir import export

    for path in export.export_run(args.run_dir, args.out):
        print(f"wrote {path}")
