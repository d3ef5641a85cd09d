"""--precision: fp32, bf16 autocast, or auto (settled once per run, recorded, reused by --resume)."""

import json

import pytest
import torch

from fmnist.cli.parser import main
from fmnist.engine import precision
from fmnist.models.classifiers import CNNClassifier

XEON_FLAGS = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
ZEN2_FLAGS = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert precision.native_bf16(XEON_FLAGS) and not precision.native_bf16(ZEN2_FLAGS)
    assert not precision.native_bf16("")


@pytest.mark.parametrize(
    ("requested", "native", "expected"),
    [
        ("fp32", True, "fp32"),
        ("bf16", False, "bf16"),  # asked for: obeyed, even where it is slow
        ("auto", False, "fp32"),  # no native bf16: never
        ("auto", True, "bf16"),
    ],
)
def test_auto_picks_bf16_exactly_where_the_processor_has_it(requested, native, expected):
    assert precision.settle(requested, native=native) == expected


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="choose one of auto, fp32, bf16"):
        precision.settle("fp16")


def test_bf16_trains_the_forward_pass_in_bf16_and_keeps_fp32_weights(splits):
    seen = []
    model = CNNClassifier(widths=(4, 8, 8), epochs=1, batch_size=64, precision="bf16")
    small = splits.subset(256, 128, 0)
    original = CNNClassifier.build_module

    def build_module(self):
        module = original(self)
        module.body[1].register_forward_hook(lambda m, i, out: seen.append((m.training, out.dtype)))
        return module

    CNNClassifier.build_module = build_module
    try:
        model.fit(small, seed=0, progress=False)
    finally:
        CNNClassifier.build_module = original
    assert (True, torch.bfloat16) in seen  # training steps
    assert (False, torch.float32) in seen  # validation
    assert all(p.dtype == torch.float32 for p in model.module.parameters())
    assert model.hparams["precision"] == "bf16"


@pytest.mark.slow
def test_the_run_records_the_settled_precision_and_bf16_differs_from_fp32(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda cpuinfo=None: True)
    common = ["--subset", "1000", "--epochs", "1", "--widths", "4", "8", "8", "--no-progress", "--no-report"]
    assert main(["train", "cnn", *common, "--out", str(tmp_path / "auto")]) == 0
    assert main(["train", "cnn", *common, "--precision", "fp32", "--out", str(tmp_path / "fp32")]) == 0
    config = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert config["hparams"]["precision"] == "bf16"
    saved = json.loads(next((tmp_path / "auto").rglob("model.json")).read_text())
    assert saved["hparams"]["precision"] == "bf16"
    history = [(tmp_path / name / "history.csv").read_text() for name in ("auto", "fp32")]
    assert history[0].splitlines()[1].split(",")[1] != history[1].splitlines()[1].split(",")[1]  # the loss
