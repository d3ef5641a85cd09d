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

from tqdm.auto import tqdm

from fmnist import files
from fmnist.engine.resume import STATE_FILE, Resumer
from fmnist.errors import UserError
from fmnist.files import read_json, write_json
from fmnist.jobs import refit, robustness, train
from fmnist.models import registry
from fmnist.report import card, compose
from fmnist.report import seeds as seeds_report
from fmnist.rundir import checkpoint, layout, schema

PLAN = "plan.json"
MEASURES = ("val_accuracy", "test_accuracy")
REFIT_MEASURE = "refit_test_accuracy"  # a --refit compare's: the test accuracy of the model refit on all images
PLAN_KEYS = ("models", "seeds", "seed", "preset", "subset", "epochs", "data")
# a finished seed's compare.json, as the summary reads it: {model: {measure: number}}
SEED_RESULTS = files.mapping(
    {
        "results": files.table(
            files.text(),
            files.mapping(dict.fromkeys(MEASURES, schema.SHARE) | {REFIT_MEASURE: files.optional(schema.SHARE)}),
        )
    }
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
        "labels": files.optional(files.mapping(dict.fromkeys(("mode", "file", "sha256"), files.text()))),
        "refit": files.optional(files.flag),
    }
)


def parse_models(text):
    """'linear,cnn' -> ['linear', 'cnn'] in registry order, so a reused model is trained before its user."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        registry.spec(name)
    if not names:
        raise UserError("--models: name at least one model")
    return [n for n in registry.REGISTRY if n in names]


def compare(names, setup, out_dir, overrides=None, *, resume=False):
    """Train `names` in order on one split, each into out_dir/<name>/, then write compare.json.

    Ctrl-C or SIGTERM stops the model in training with a resumable state. resume: skip the models already
    finished (their metrics.json exists) and continue the one stopped. Returns {name: metrics}."""
    hparams = {name: registry.spec(name).resolve(setup.preset, overrides) for name in names}  # all checked first
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layout.write_test_images(out_dir, setup.splits)
    trained, results = {}, {}
    overall = tqdm(names, desc="compare", unit="model", disable=not setup.progress, position=0)
    start = time.perf_counter()
    for name in overall:
        overall.set_postfix_str(name)
        trained[name], results[name] = _compare_one(name, hparams[name], setup, out_dir / name, trained, resume)
    overall.close()
    if setup.refit:  # every model's choices are made: only now does any refit start (fmnist.jobs.refit)
        _refit_all(names, setup, out_dir, trained, results, resume)
    robustness.run(trained, setup.splits, out_dir, seed=setup.seed, progress=setup.progress)
    record = layout.config_record("compare", {}, setup.record(), setup.dataset)
    summary = {name: {k: v for k, v in m.items() if k not in layout.SPLITS} for name, m in results.items()}
    record.update(models=names, total_seconds=round(time.perf_counter() - start, 1), results=summary)
    write_json(out_dir / layout.COMPARE, record)
    card.write(out_dir)  # again, now with the robustness sweep of every model
    return results


def _compare_one(name, hparams, setup, model_dir, trained, resume):
    """One model of a compare: reloaded if a resumed compare finished it already, else trained (or continued)."""
    if resume and (model_dir / layout.METRICS).is_file():
        model, _ = checkpoint.load(model_dir)  # a later model may reuse it (the hybrid reuses the CNN)
        return model, schema.read_metrics(model_dir / layout.METRICS)
    resumer = Resumer(model_dir, resume=resume and (model_dir / STATE_FILE).is_file())
    return train.train_one(name, hparams, setup, model_dir, trained=trained, resumer=resumer)


def _refit_all(names, setup, out_dir, trained, results, resume):
    """Refit every model of a compare in its folder's refit/ (a finished refit is reloaded), in order, so that
    the hybrid's refit reuses the refit CNN; each model's results gain the refit's test figures."""
    refitted = {}
    for name in tqdm(names, desc="refit", unit="model", disable=not setup.progress, position=0):
        folder = out_dir / name / refit.FOLDER
        if (folder / layout.METRICS).is_file():
            refitted[name], metrics = checkpoint.load(folder)[0], schema.read_metrics(folder / layout.METRICS)
        else:
            selection = (trained[name], results[name])
            model_dir = out_dir / name
            refitted[name], metrics = train.refit_one(
                name, setup, selection, model_dir, trained=refitted, resume=resume
            )
        results[name] = results[name] | {REFIT_MEASURE: metrics["test_accuracy"]}
        results[name]["refit"] = refit.summary(results[name], metrics)


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


def spread(values, level=0.95):
    """Mean, sample standard deviation and a `level` confidence interval of the mean of a list of numbers.

    The interval is Student's t: mean ± t(n-1) · sd / √n. With the 3 to 5 seeds a study affords, a bootstrap of
    the seeds' figures would claim far too narrow an interval (it resamples at most 5 values and cannot reach
    beyond them); t allows for the standard deviation itself being estimated from so few, assuming the seeds'
    accuracies scatter about normally (each is a mean over 10,000 images). One seed has no interval (None)."""
    from scipy import stats

    n, mean = len(values), sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    record = {"mean": mean, "std": math.sqrt(var), "values": list(values), "n": n, "interval": None}
    if n > 1:
        half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * math.sqrt(var / n)
        record |= {"interval": [mean - half, mean + half], "half_width": half, "level": level}
    return record


def summarise(per_seed):
    """{seed: {model: metrics}} -> {model: {measure: spread}} over the seeds, in the models' order (the refit's
    test accuracy too where every seed has one)."""
    models = next(iter(per_seed.values()))
    measures = {
        m: [k for k in (*MEASURES, REFIT_MEASURE) if all(k in per_seed[s][m] for s in per_seed)] for m in models
    }
    return {m: {k: spread([per_seed[s][m][k] for s in per_seed]) for k in measures[m]} for m in models}


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


def run_compare(plan, out_dir, setup_for, *, resume=False, report=True):
    """Carry out `plan` (see PLAN_KEYS) into out_dir; setup_for(seed) gives that seed's Setup.

    Without seeds, one compare straight into out_dir; returns its {model: metrics}. With seeds, one per seed
    (each with its report unless `report` is False), then the summary; returns the summary."""
    overrides, out_dir = {"epochs": plan["epochs"]}, Path(out_dir)
    if plan["seeds"] is None:
        return compare(plan["models"], setup_for(plan["seed"]), out_dir, overrides, resume=resume)
    start, per_seed = time.perf_counter(), {}
    for seed in plan["seeds"]:
        folder = out_dir / f"seed-{seed}"
        if resume and (folder / layout.COMPARE).is_file():
            done = folder / layout.COMPARE
            per_seed[seed] = files.validated(done, read_json(done), SEED_RESULTS)["results"]
            continue
        per_seed[seed] = compare(plan["models"], setup_for(seed), folder, overrides, resume=resume)
        if report:
            compose.build(folder)
    summary = summarise(per_seed)
    record = {"layout_version": layout.LAYOUT_VERSION, "model": "compare", **{k: plan[k] for k in PLAN_KEYS}}
    record |= {"refit": bool(plan.get("refit")), "results": summary, "close_calls": close_calls(summary)}
    record["total_seconds"] = round(time.perf_counter() - start, 1)
    seeds_report.write(out_dir, record)
    write_json(out_dir / layout.COMPARE, record)
    return summary
