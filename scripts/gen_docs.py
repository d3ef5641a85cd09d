"""Write the documentation's generated parts, so that no figure and no flag is typed by hand.

- docs/cli.md: the CLI reference, every command's `--help` as argparse prints it (fmnist.cli.parser);
- the blocks between `<!-- gen:NAME -->` and `<!-- /gen:NAME -->` in README.md and docs/*.md: tables built from
  bench/results/*.json (the newest file of each benchmark), each with the file, date and processor beside it.
  The tables of the README's and the first pages are here; each later page's are in its own module
  (scripts/gen_tables_PAGE.py, a TABLES dict merged below), the shared helpers in scripts/gen_common.py.

`python scripts/gen_docs.py` rewrites them (`make docs` runs it); `--check` rewrites nothing and exits 1 naming
each file that is out of date (tests/test_docs.py runs it). Result files written before bench/record.py's common
header are read too: their date and processor sit at the top of the document (or under "machine").
"""

import argparse
import os
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the gen_* modules beside this one

import gen_tables_audit
import gen_tables_leaderboard
import gen_tables_photos
import gen_tables_serving
import gen_tables_sets
from gen_common import ROOT, from_newest, pct, table

CLI_PAGE = ROOT / "docs" / "cli.md"
BLOCK = re.compile(r"(<!-- gen:([\w-]+) -->\n)(.*?)(<!-- /gen:\2 -->)", re.S)
HELP_COLUMNS = "100"  # argparse wraps at the terminal's width: fixed, so the page is the same everywhere


@from_newest("run", "make run && python bench/bench_run.py runs/latest")
def models_table(doc):
    """The five models of the newest recorded `fmnist compare` run (bench/bench_run.py)."""
    rows = []
    for name, m in doc["models"].items():
        cells = (f"{m['parameters']:,}", pct(m["val_accuracy"]), pct(m["test_accuracy"]))
        rows.append((name, *cells, f"{m['train_seconds']:,.0f} s", f"{m['inference_images_per_s']:,.0f}"))
    head = ("model", "parameters", "validation", "test", "training", "images/s")
    total = f" The whole run took {doc['total_seconds']:,.0f} s." if doc.get("total_seconds") else ""
    return f"{table(head, rows)}\n\nPreset `{doc['preset']}`, seed {doc['seed']}.{total}"


@from_newest("cnn-speed", "python bench/bench_cnn_speed.py")
def cnn_speed_table(doc):
    rows = [
        (name, f"{r['seconds_to_92']:,.1f} s", pct(r["final_test"]), f"{doc['speedup'].get(name, 1):.2f}×")
        for name, r in doc["results"].items()
    ]
    return table(("recipe", "time to 92 % test", "final test", "speed-up"), rows)


@from_newest("precision", "python bench/bench_precision.py")
def precision_table(doc):
    rows = []
    for precision in ("fp32", "bf16"):
        runs = [r for r in doc["runs"] if r["precision"] == precision]
        if runs:
            seconds = statistics.mean(r["train_seconds"] for r in runs)
            test = statistics.median(r["test_accuracy"] for r in runs)
            rows.append((precision, len(runs), f"{seconds:,.1f} s", pct(test)))
    head = ("precision", "seeds", "mean training", "median test")
    return f"{table(head, rows)}\n\nPreset `{doc['preset']}`."


@from_newest("models-best", "python bench/bench_models.py --only-best")
def best_table(doc):
    seeds = doc["results"]["cnn_best_seeds"]
    rows = [
        (seed, pct(val), pct(test), f"{secs:,.0f} s")
        for seed, val, test, secs in zip(
            seeds["seeds"], seeds["val_accuracy"], seeds["test_accuracy"], seeds["train_seconds"], strict=True
        )
    ]
    return table(("seed", "validation", "test", "training"), rows)


def _serve_rows(runs, key):
    return [
        (
            r[key],
            f"{r['requests_per_s']:,.1f}",
            *(f"{r[p]:.1f} ms" for p in ("p50_ms", "p90_ms", "p99_ms")),
            r["wrong_answers"],
        )
        for r in runs
    ]


@from_newest("serve-workers", "python bench/bench_serve.py RUN_DIR --workers 1,2")
def serve_table(doc):
    head = ("workers", "requests/s", "p50", "p90", "p99", "wrong answers")
    return f"{table(head, _serve_rows(doc['runs'], 'workers'))}\n\n{doc['clients']} clients."


@from_newest("serve-runtimes", "python bench/bench_serve.py RUN_DIR --runtimes torch,onnx")
def runtimes_table(doc):
    return table(("runtime", "requests/s", "p50", "p90", "p99", "wrong answers"), _serve_rows(doc, "runtime"))


@from_newest("export", "python bench/bench_export.py RUN_DIR")
def export_table(doc):
    rows = []
    for m in doc["models"]:
        same = "yes" if m["argmax_equal_batch_1"] and m["argmax_equal_batch_1000"] else "no"
        diff = f"{max(m['max_abs_diff_batch_1'], m['max_abs_diff_batch_1000']):.1e}"
        speeds = (f"{m['onnx_images_per_s']:,}", f"{m['torch_images_per_s']:,}")
        rows.append(
            (m["model"], same, diff, pct(m["onnx_test_accuracy"]), pct(m["metrics_json_test_accuracy"]), *speeds)
        )
    head = ("model", "same argmax", "max |Δp|", "onnx test", "metrics.json", "onnx images/s", "torch images/s")
    return table(head, rows)


@from_newest("trust", "python bench/bench_trust.py RUN_DIR")
def trust_table(doc):
    rows = []
    robust = doc.get("robustness", {})
    for name, m in doc["models"].items():
        chosen, cal = m["methods"][m["chosen"]], m["calibration_test"]
        ece = f"{cal['before']['ece']:.3f} → {cal['after']['ece']:.3f}"
        unknown = (
            pct(chosen["unknown_test"]),
            pct(chosen["unknown_photos_report"]),
            pct(chosen["unknown_outliers_report"]),
        )
        mce = robust.get("mce", {}).get(name)
        rows.append((name, ece, f"{chosen['auroc_report']:.3f}", *unknown, f"{mce:.3f}" if mce is not None else ""))
    head = ("model", "test ECE (before → after T)", "AUROC", "clothing unknown", "photos unknown")
    head += ("non-clothing unknown", "mCE")
    return table(head, rows)


@from_newest("ddp", "python bench/bench_ddp.py")
def ddp_table(doc):
    one = doc["seconds_per_epoch"]["1"]
    rows = [(n, f"{s:.2f} s", f"{one / s:.2f}×") for n, s in doc["seconds_per_epoch"].items()]
    return table(("processes", "seconds per epoch", "speed-up"), rows)


TABLES = {
    "models": models_table,
    "cnn-speed": cnn_speed_table,
    "precision": precision_table,
    "best": best_table,
    "serve": serve_table,
    "runtimes": runtimes_table,
    "export": export_table,
    "trust": trust_table,
    "ddp": ddp_table,
    **gen_tables_photos.TABLES,
    **gen_tables_audit.TABLES,
    **gen_tables_leaderboard.TABLES,
    **gen_tables_serving.TABLES,
    **gen_tables_sets.TABLES,
}


def cli_page():
    """docs/cli.md: the help of every command and sub-command, walked from the parser."""
    os.environ["COLUMNS"] = HELP_COLUMNS
    sys.path.insert(0, str(ROOT / "src"))  # this checkout's parser, whichever fmnist the venv has installed
    from fmnist.cli.parser import build_parser

    parts = [
        "# CLI reference",
        "",
        "<!-- gen:cli -->",
        "Generated from the argument parser (`fmnist.cli.parser.build_parser`) by `scripts/gen_docs.py`: every "
        "command's `--help`, as the command line prints it.",
    ]
    todo = [("fmnist", build_parser())]
    while todo:
        name, parser = todo.pop(0)
        parts += ["", f"## `{name}`", "", "```text", parser.format_help().rstrip(), "```"]
        for action in parser._actions:
            if action.choices and hasattr(action, "_name_parser_map"):
                todo += [(f"{name} {sub}", p) for sub, p in action._name_parser_map.items()]
    return "\n".join([*parts, "<!-- /gen:cli -->", ""])


def fill(text):
    """`text` with every generated block rewritten; unknown block names are an error."""

    def block(match):
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"gen_docs: unknown block <!-- gen:{name} --> (known: {', '.join(TABLES)})")
        return f"{match.group(1)}{TABLES[name]()}\n{match.group(4)}"

    return BLOCK.sub(block, text)


def outputs():
    """{path: the text it should hold}."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    out = {path: fill(path.read_text(encoding="utf-8")) for path in pages if path != CLI_PAGE}
    out[CLI_PAGE] = cli_page()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"out of date (run python scripts/gen_docs.py): {', '.join(map(str, stale))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
