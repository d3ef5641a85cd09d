"""fmnist compare --seeds (mean ± sd per model) and --resume (skip what finished, continue what stopped)."""

import json
import signal
import subprocess
import sys

import pytest

from fmnist.cli.parser import main
from fmnist.engine import resume
from fmnist.errors import Interrupted, UserError
from fmnist.jobs import compare as seeds
from fmnist.jobs.settings import Setup
from fmnist.report import seeds as seeds_report
from processes import sigterm_once_ready

TIMINGS = ("train_seconds", "cpu_seconds", "inference_images_per_s", "total_seconds", "created", "command")


def test_seeds_are_parsed_and_bad_lists_are_one_line_errors():
    assert seeds.parse_seeds("0, 1,2") == [0, 1, 2]
    for bad in ("", "0,0", "a,b", "-1"):
        with pytest.raises(UserError, match="--seeds"):
            seeds.parse_seeds(bad)


def test_spread_is_the_mean_and_sample_standard_deviation():
    assert seeds.spread([0.8]) == {"mean": 0.8, "std": 0.0, "values": [0.8], "n": 1, "interval": None}
    s = seeds.spread([0.80, 0.82, 0.84])
    assert s["mean"] == pytest.approx(0.82) and s["std"] == pytest.approx(0.02)


def test_differences_within_the_seed_spread_are_called_out():
    per_seed = {
        0: {"a": {"val_accuracy": 0.90, "test_accuracy": 0.89}, "b": {"val_accuracy": 0.89, "test_accuracy": 0.88},
            "c": {"val_accuracy": 0.80, "test_accuracy": 0.80}},
        1: {"a": {"val_accuracy": 0.88, "test_accuracy": 0.87}, "b": {"val_accuracy": 0.885, "test_accuracy": 0.88},
            "c": {"val_accuracy": 0.81, "test_accuracy": 0.80}},
    }  # fmt: skip
    summary = seeds.summarise(per_seed)
    assert list(summary) == ["a", "b", "c"] and summary["c"]["test_accuracy"]["values"] == [0.80, 0.80]
    calls = seeds.close_calls(summary)
    assert [(c["better"], c["worse"]) for c in calls] == [("a", "b")]  # 0.25 points apart, sd 1.4 points
    assert "the seeds do not tell them apart" in seeds_report.close_call_lines(calls)[0]


class StopThirdModel(resume.Resumer):
    """The third model's training gets a stop request after `polls` batches, as SIGTERM would give it."""

    made = 0

    def __init__(self, run_dir, *, resume=False):
        super().__init__(run_dir, resume=resume)
        StopThirdModel.made += 1
        self.polls = 5 if StopThirdModel.made == 3 else None

    @property
    def stop_requested(self):
        if self.polls is None:
            return False
        self.polls -= 1
        return self.polls < 0


def without_timings(record):
    if isinstance(record, dict):
        return {k: without_timings(v) for k, v in record.items() if k not in TIMINGS}
    return record


def test_a_compare_stopped_in_its_third_model_resumes_without_retraining_the_first_two(splits, dataset, tmp_path):
    setup = Setup(splits.subset(400, 100, 100), dataset, progress=False)
    names, overrides = ["linear", "mlp", "scratch-mlp"], {"epochs": 2}
    seeds.compare(names, setup, tmp_path / "whole", overrides)

    out = tmp_path / "stopped"
    StopThirdModel.made = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(seeds, "Resumer", StopThirdModel)
        with pytest.raises(Interrupted):
            seeds.compare(names, setup, out, overrides)
    assert (out / "scratch-mlp" / resume.STATE_FILE).is_file() and not (out / "scratch-mlp" / "metrics.json").exists()
    finished = {p: p.stat().st_mtime_ns for name in names[:2] for p in (out / name).rglob("*")}
    assert finished and not (out / "compare.json").exists()

    seeds.compare(names, setup, out, overrides, resume=True)
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # the first two were not trained again
    assert not (out / "scratch-mlp" / resume.STATE_FILE).exists()
    records = [json.loads((d / "compare.json").read_text()) for d in (out, tmp_path / "whole")]
    assert without_timings(records[0]) == without_timings(records[1])


@pytest.mark.slow
def test_compare_over_seeds_keeps_each_seed_and_reports_mean_and_spread(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["compare", "--models", "linear,mlp", "--seeds", "0,1", "--subset", "200", "--epochs", "1"]
    assert main([*argv, "--no-progress", "--out", str(out)]) == 0
    record = json.loads((out / "compare.json").read_text())
    assert record["seeds"] == [0, 1] and record["models"] == ["linear", "mlp"]
    for seed in (0, 1):
        kept = json.loads((out / f"seed-{seed}" / "compare.json").read_text())
        assert kept["seed"] == seed and (out / f"seed-{seed}" / "mlp" / "metrics.json").is_file()
        assert record["results"]["mlp"]["val_accuracy"]["values"][seed] == kept["results"]["mlp"]["val_accuracy"]
    report = (out / "report.md").read_text()
    assert "±" in report and "seed spread" in report
    assert "±" in capsys.readouterr().out

    # A finished study resumes to the same summary without training; misuse is one line.
    assert main(["compare", "--resume", str(out), "--no-progress"]) == 0
    assert without_timings(json.loads((out / "compare.json").read_text())) == without_timings(record)
    capsys.readouterr()
    assert main(["compare", "--resume", str(out), "--seeds", "3"]) == 2
    assert "drop --seeds" in capsys.readouterr().err
    assert main(["report", str(out)]) == 2
    assert "a compare over seeds" in capsys.readouterr().err


def test_a_stopped_compare_cannot_be_overwritten_by_a_new_one(tmp_path, capsys):
    (tmp_path / "plan.json").write_text("{}")
    assert main(["compare", "--models", "linear", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"continue it with --resume {tmp_path}" in err[0]


@pytest.mark.slow
def test_sigterm_in_the_third_model_then_compare_resume_equals_an_uninterrupted_compare(tmp_path):
    argv = ["compare", "--models", "linear,mlp,scratch-mlp", "--subset", "3000", "--epochs", "3", "--no-progress"]
    argv += ["--no-report"]
    whole = subprocess.run([sys.executable, "-m", "fmnist", *argv, "--out", str(tmp_path / "whole")], timeout=200)
    assert whole.returncode == 0
    out = tmp_path / "stopped"
    process = subprocess.Popen(
        [sys.executable, "-m", "fmnist", *argv, "--out", str(out)], stderr=subprocess.PIPE, text=True
    )
    err = sigterm_once_ready(process, out / "scratch-mlp" / resume.STATE_FILE)  # the third model's first epoch
    assert process.returncode == 128 + signal.SIGTERM, err
    assert f"continue with: fmnist compare --resume {out}" in err.strip().splitlines()[-1]
    finished = {p: p.stat().st_mtime_ns for name in ("linear", "mlp") for p in (out / name).rglob("*")}

    assert main(["compare", "--resume", str(out), "--no-progress", "--no-report"]) == 0
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    assert not any((d / "report.html").exists() for d in (out, tmp_path / "whole"))
    records = [json.loads((d / "compare.json").read_text()) for d in (out, tmp_path / "whole")]
    assert without_timings(records[0]) == without_timings(records[1])
