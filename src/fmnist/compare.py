"""The main job: train every model on the same split, evaluate each once on test, write one report."""

import time
from pathlib import Path

from tqdm.auto import tqdm

from fmnist import registry, runs
from fmnist.errors import UserError
from fmnist.files import write_json

TABLE_COLUMNS = (
    ("model", "{}", 12),
    ("parameters", "{:,}", 12),
    ("train_seconds", "{:.0f}", 9),
    ("val_accuracy", "{:.2%}", 9),
    ("test_accuracy", "{:.2%}", 9),
    ("inference_images_per_s", "{:,.0f}", 12),
)
HEADERS = ("model", "params", "train s", "val acc", "test acc", "images/s")


def parse_models(text):
    """'linear,cnn' -> ['linear', 'cnn'] in registry order, so a reused model is trained before its user."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        registry.spec(name)
    if not names:
        raise UserError("--models: name at least one model")
    return [n for n in registry.REGISTRY if n in names]


def compare(model_names, splits, dataset, out_dir, *, preset, seed, progress=True, overrides=None):
    """Train `model_names` in order, each into out_dir/<name>/; return {name: metrics}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs.write_test_images(out_dir, splits)
    trained, results = {}, {}
    overall = tqdm(model_names, desc="compare", unit="model", disable=not progress, position=0)
    start = time.perf_counter()
    for name in overall:
        overall.set_postfix_str(name)
        hparams = registry.spec(name).resolve(preset, overrides)
        trained[name], results[name] = runs.train_run(
            name, hparams, splits, dataset, out_dir / name, preset=preset, seed=seed, progress=progress, trained=trained
        )
    overall.close()
    record = runs.config_record("compare", {}, preset, seed, dataset, runs.subset_size(splits))
    record.update(models=model_names, total_seconds=round(time.perf_counter() - start, 1), results=results)
    write_json(out_dir / "compare.json", record)
    return results


def table(results):
    """The comparison as a fixed-width text table."""
    widths = [w for _, _, w in TABLE_COLUMNS]

    def row(cells):  # the model name left-aligned, numbers right-aligned
        return "".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    rows = [[fmt.format(metrics[key]) for key, fmt, _ in TABLE_COLUMNS] for metrics in results.values()]
    return "\n".join(row(cells) for cells in [HEADERS, *rows])
