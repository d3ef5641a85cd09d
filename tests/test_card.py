"""MODEL_CARD.md: YAML front matter that parses, figures equal to the run's own JSON, served over HTTP."""

import json

import httpx
import numpy as np
import pytest
import yaml

from fmnist.report import card
from fmnist.rundir import layout
from rundirs import DATA, make_test_labels, write_model_dir


def split_card(text):
    """(front matter as parsed YAML, Markdown body) of a model card."""
    assert text.startswith("---\n")
    head, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(head), body


def measured(meta):
    """{(split, metric name): value} from the model-index."""
    (entry,) = meta["model-index"]
    return {(r["dataset"]["split"], m["name"]): m["value"] for r in entry["results"] for m in r["metrics"]}


def check_against_metrics(text, metrics):
    meta, body = split_card(text)
    values = measured(meta)
    for split in layout.SPLITS:
        assert values[(split, f"{split} accuracy")] == metrics[split]["accuracy"]
        assert values[(split, f"{split} macro F1")] == metrics[split]["macro"]["f1"]
        assert values[(split, f"{split} log-loss")] == metrics[split]["log_loss"]
        if "calibration" in metrics:
            assert values[(split, f"{split} ECE after temperature")] == metrics["calibration"][split]["after"]["ece"]
            assert values[(split, f"{split} clothing called unknown")] == metrics["unknown"][f"{split}_unknown_rate"]
    for row in metrics["test"]["per_class"]:  # accuracy per class, as the body prints it
        assert f"| {row['name']} | {100 * row['recall']:.2f} % |" in body
    top = metrics["test"]["most_confused"][0]
    assert f"| {top['true_name']} | {top['predicted_name']} | {top['count']} |" in body
    return meta, body


def test_a_card_from_a_synthetic_run(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mlp"
    write_model_dir(folder, "mlp", make_test_labels(rng), rng)
    config = json.loads((folder / "config.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text()) | {"cpu_seconds": 7.2}
    text = card.render("mlp", config, metrics)
    meta, body = check_against_metrics(text, metrics)
    assert meta["library_name"] == "pytorch" and "image-classification" in meta["tags"]
    assert "## Out-of-scope use" in body and "People" in body
    for digest in DATA["sha256"].values():
        assert digest in body
    energy = 7.2 * card.WATTS_PER_CORE / 3600
    assert f"energy estimate: {energy:.3f} Wh = 7.2 CPU-seconds" in body
    assert "## Calibration" not in body  # no calibration record, no section


@pytest.mark.slow
def test_every_model_of_a_compare_has_a_card_equal_to_its_metrics_and_served(serve_run, server):
    names = json.loads((serve_run / "compare.json").read_text())["models"]
    for name in names:
        text = (serve_run / name / layout.CARD).read_text(encoding="utf-8")
        metrics = json.loads((serve_run / name / layout.METRICS).read_text())
        _, body = check_against_metrics(text, metrics)
        robustness = json.loads((serve_run / "robustness.json").read_text())
        assert f"clean accuracy {100 * robustness['clean'][name]:.2f} %" in body
        assert f"{metrics['cpu_seconds']:,.1f} CPU-seconds" in body
        answer = httpx.get(f"{server.url}/models/{name}/card", timeout=30)
        assert answer.status_code == 200 and answer.text == text
        assert answer.headers["content-type"].startswith("text/markdown")
    missing = httpx.get(f"{server.url}/models/no-such-model/card", timeout=30)
    assert missing.status_code == 404 and "no-such-model" in missing.json()["detail"]
