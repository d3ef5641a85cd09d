"""`fmnist audit`: flags -> the audit's settings, the run, and the closing lines (fmnist.jobs.audit does the work)."""

from pathlib import Path

from fmnist.cli import settings


def cmd_audit(args):
    from fmnist.engine import threads
    from fmnist.jobs import audit
    from fmnist.report import audit as audit_report

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
    summary = audit.run(dataset, chosen, out, progress=not args.no_progress)
    counts = ", ".join(f"{n:,} of {summary['images'][s]:,} {s} images" for s, n in summary["suspects"].items())
    where = "" if args.no_report else f"; report: {audit_report.build(out, dataset)[1]}"
    print(f"suspects: {counts}\nwritten to {out / 'label_issues.csv'}{where}")
