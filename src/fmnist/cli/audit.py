"""`fmnist audit`: flags -> the audit's settings, the run, and the closing lines (fmnist.jobs.audit does the work)."""

from pathlib import Path

from fmnist.cli import settings


def cmd_audit(args):

    from fmnist.engine import threads
    from fmnist.errors import Interrupted, UserError
    from fmnist.jobs import audit
    from fmnist.report import audit as audit_report

    try:
        import cleanlab  # noqa: F401
    except ModuleNotFoundError:
        raise UserError("fmnist audit needs cleanlab: pip install 'fmnist[audit]'") from None

    dataset = settings.load_data(args)
    chosen = audit.Audit(
        model=args.model,
        folds=args.folds,
        seed=args.seed,
        preset=args.preset,
        epochs=args.epochs,
        subset=args.subset,
        threads=threads.choose(args.threads),
        device=args.device or "auto",
    )
    out = Path(args.out)
    try:
        summary = audit.run(dataset, chosen, out, progress=not args.no_progress)
    except KeyboardInterrupt:
        kept = len(list(out.glob("fold-*.npz")))
        raise Interrupted(
            f"audit stopped with {kept} finished folds in {out}; the same command continues it", 2
        ) from None
    counts = ", ".join(f"{n:,} of {summary['images'][s]:,} {s} images" for s, n in summary["suspects"].items())
    where = "" if args.no_report else f"; report: {audit_report.build(out, dataset)[1]}"
    print(f"suspects: {counts}\nwritten to {out / 'label_issues.csv'}{where}")


def cmd_serve_review(args):
    """`fmnist serve --review AUDIT_DIR [RUN_DIR]`: the review page, beside the run's models if one is given."""
    from fmnist.errors import UserError

    if args.workers != 1:
        raise UserError("--review: serves from one process; drop --workers")
    if getattr(args, "api_key_file", None):  # its page sends no key: refused rather than served unprotected
        raise UserError("--review: the review page does not take API keys yet; drop --api-key-file")
    if args.run_dir is not None:
        from fmnist.rundir import checkpoint

        checkpoint.models_of(args.run_dir)
    try:
        from fmnist.serve import app, review
    except ModuleNotFoundError as exc:
        raise UserError(f"fmnist serve needs {exc.name}: pip install 'fmnist[serve]'") from None
    if args.run_dir is None:
        return review.run(args.review, host=args.host, port=args.port)
    runtime = (args.runtime, args.device or "auto")
    routes = review.router(args.review)  # its files checked before the models load
    return app.run(args.run_dir, host=args.host, port=args.port, runtime=runtime, routers=(routes,))
