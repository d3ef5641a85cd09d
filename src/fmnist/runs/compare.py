"""A compare that survives a stop, and seeds as a study: the spread of each model's accuracy over seeds.

`fmnist compare --seeds 0,1,2 --out OUT` runs one complete compare per seed into OUT/seed-<s>/ (each with its
own report), then writes OUT/compare.json and OUT/report.md / report.html with the mean ± standard deviation
per model. When two models differ by less than their seed spread, the report says so: that ranking could be
the seed's doing. plan.json, written first, holds the settings, so `fmnist compare --resume OUT` continues with
exactly them: finished models and seeds are skipped, the stopped one continues from its saved state.
"""

import itertools
import math
import time
from pathlib import Path

from fmnist import files
from fmnist.errors import UserError
from fmnist.files import read_json, write_json, write_text
from fmnist.models import registry
from fmnist.rundir import layout, schema
from fmnist.runs import train

PLAN = "plan.json"
MEASURES = ("val_accuracy", "test_accuracy")
PLAN_KEYS = ("models", "seeds", "seed", "preset", "subset", "epochs", "data")
# a finished seed's compare.json, as the summary reads it: {model: {measure: number}}
SEED_RESULTS = files.mapping(
    {"results": files.table(files.text(), files.mapping(dict.fromkeys(MEASURES, schema.SHARE)))}
)
PLAN_SCHEMA = files.mapping(
    {
        "models": files.listing(files.text(tuple(registry.REGISTRY)), low=1, high=len(registry.REGISTRY)),
        "seeds": files.listing(schema.SEED, low=1, high=1000, null=True),
        "seed": schema.SEED,
        "preset": files.text(max_length=100),
        "subset": files.whole(1, 60_000, null=True),
        "epochs": files.whole(1, schema.MAX_EPOCHS, null=True),
        "data": schema.DATA,
    }
)


def parse_seeds(text):
    """'0,1,2' -> [0, 1, 2]; at least one seed, no repeats."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected whole numbers separated by commas, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserError(f"--seeds {text!r}: name one or more different seeds (0 or more), e.g. 0,1,2")
    return seeds


def write_plan(out_dir, plan):
    """Record what the compare will do, before any training, so that --resume can do the same."""
    out_dir = Path(out_dir)
    if (out_dir / PLAN).is_file() and not (out_dir / layout.COMPARE).is_file():
        raise UserError(
            f"{out_dir}: holds a stopped compare; continue it with --resume {out_dir}, or choose another --out"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / PLAN, plan)


def read_plan(out_dir, dataset):
    """The plan of the compare in out_dir, checked to be complete and about the same data files."""
    path = Path(out_dir) / PLAN
    plan = files.validated(path, read_json(path, "file not found (not a compare started by this fmnist)"), PLAN_SCHEMA)
    for name in plan["models"]:
        registry.spec(name).resolve(plan["preset"], {"epochs": plan["epochs"]}, where=path)
    if plan["seeds"] is not None and len(set(plan["seeds"])) != len(plan["seeds"]):
        raise UserError(f"{path}: seeds repeat a seed")
    if plan["data"]["sha256"] != dataset.sha256:
        raise UserError(
            f"{path}: the compare was made from other data files than {dataset.paths['train_images'].parent}"
        )
    return plan


def spread(values):
    """Mean and sample standard deviation (0 for a single value) of a list of numbers."""
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "values": list(values)}


def summarise(per_seed):
    """{seed: {model: metrics}} -> {model: {measure: spread}} over the seeds, in the models' order."""
    models = next(iter(per_seed.values()))
    return {m: {k: spread([per_seed[s][m][k] for s in per_seed]) for k in MEASURES} for m in models}


def close_calls(summary, measure="val_accuracy"):
    """Neighbours in the ranking by mean `measure` whose difference is within the larger seed spread."""
    ranked = sorted(summary, key=lambda m: -summary[m][measure]["mean"])
    calls = []
    for better, worse in itertools.pairwise(ranked):
        a, b = summary[better][measure], summary[worse][measure]
        difference, seed_std = a["mean"] - b["mean"], max(a["std"], b["std"])
        if difference <= seed_std:
            calls.append({"better": better, "worse": worse, "difference": difference, "seed_std": seed_std})
    return calls


def run_compare(plan, out_dir, setup_for, *, resume=False):
    """Carry out `plan` (see PLAN_KEYS) into out_dir; setup_for(seed) gives that seed's Setup.

    Without seeds, one compare straight into out_dir; returns its {model: metrics}. With seeds, one per seed,
    then the summary; returns the summary."""
    overrides, out_dir = {"epochs": plan["epochs"]}, Path(out_dir)
    if plan["seeds"] is None:
        return train.compare(plan["models"], setup_for(plan["seed"]), out_dir, overrides, resume=resume)
    from fmnist.report import compose

    start, per_seed = time.perf_counter(), {}
    for seed in plan["seeds"]:
        folder = out_dir / f"seed-{seed}"
        if resume and (folder / layout.COMPARE).is_file():
            done = folder / layout.COMPARE
            per_seed[seed] = files.validated(done, read_json(done), SEED_RESULTS)["results"]
            continue
        per_seed[seed] = train.compare(plan["models"], setup_for(seed), folder, overrides, resume=resume)
        compose.build(folder)
    summary = summarise(per_seed)
    record = {"layout_version": layout.LAYOUT_VERSION, "model": "compare", **{k: plan[k] for k in PLAN_KEYS}}
    record |= {"results": summary, "close_calls": close_calls(summary)}
    record["total_seconds"] = round(time.perf_counter() - start, 1)
    write_seeds_report(out_dir, record)
    write_json(out_dir / layout.COMPARE, record)
    return summary


def _cell(s):
    return f"{s['mean']:.2%} ± {s['std']:.2%}"


def seeds_table(summary):
    """(header, rows): mean ± standard deviation per model, then each seed's figure."""
    header = ["model", "val accuracy (mean ± sd)", "test accuracy (mean ± sd)", "val accuracy per seed"]
    rows = [
        [
            m,
            _cell(s["val_accuracy"]),
            _cell(s["test_accuracy"]),
            ", ".join(f"{v:.2%}" for v in s["val_accuracy"]["values"]),
        ]
        for m, s in summary.items()
    ]
    return header, rows


def close_call_lines(calls):
    return [
        f"{c['better']} vs {c['worse']}: {c['difference']:.2%} apart on validation, within the seed spread "
        f"({c['seed_std']:.2%}); the seeds do not tell them apart."
        for c in calls
    ]


def write_seeds_report(out_dir, record):
    from fmnist.report.render import to_html, to_markdown

    header, rows = seeds_table(record["results"])
    text = (
        f"{len(record['models'])} models, each trained with seeds {', '.join(map(str, record['seeds']))} "
        "(the seed fixes the train/validation split, the initial weights, the shuffling and the augmentation). "
        "Standard deviations are over the seeds; each seed's full report is in its seed-N folder."
    )
    blocks = [("h1", f"Fashion-MNIST over seeds: {Path(out_dir).name}"), ("p", text), ("table", header, rows)]
    lines = close_call_lines(record["close_calls"]) or [
        "Every neighbour in the ranking differs by more than its seed spread."
    ]
    blocks += [("h2", "Differences against the seed spread"), *(("p", line) for line in lines)]
    write_text(Path(out_dir) / "report.md", to_markdown(blocks, Path(out_dir)))
    write_text(Path(out_dir) / "report.html", to_html(blocks, "Fashion-MNIST over seeds"))
    return Path(out_dir) / "report.md", Path(out_dir) / "report.html"
