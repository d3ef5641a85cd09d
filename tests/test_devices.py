"""--device: resolution (auto through torch.accelerator, a missing device as one line), precision on an
accelerator, the NumPy models' note, and, where an accelerator is present, a real run on it (skipped elsewhere)."""

import json
import types

import numpy as np
import pytest
import torch

from fmnist.cli.parser import main
from fmnist.engine import devices, precision
from fmnist.errors import UserError
from fmnist.jobs.settings import Setup

HERE = devices.detected()
ACCELERATOR = pytest.mark.skipif(HERE == "cpu", reason="no accelerator on this machine (torch sees only the CPU)")


def fake_torch(accelerator=None, bf16=True):
    """A stand-in for the torch module with one accelerator of kind `accelerator` (or none)."""
    backend = types.SimpleNamespace(is_available=lambda: True, is_bf16_supported=lambda: bf16)
    absent = types.SimpleNamespace(is_available=lambda: False)
    current = types.SimpleNamespace(type=accelerator)
    api = types.SimpleNamespace(is_available=lambda: accelerator is not None, current_accelerator=lambda: current)
    kinds = {kind: backend if kind == accelerator else absent for kind in devices.ACCELERATORS}
    return types.SimpleNamespace(
        accelerator=api,
        backends=types.SimpleNamespace(mps=kinds["mps"]),
        cuda=kinds["cuda"],
        xpu=kinds["xpu"],
        __version__="2.x",
    )


def test_auto_is_the_accelerator_torch_names_else_the_cpu():
    assert devices.resolve("auto", fake_torch(None)) == "cpu"
    assert devices.resolve("auto", fake_torch("cuda")) == "cuda"
    assert devices.resolve("auto", fake_torch("mps")) == "mps"
    assert devices.resolve("cpu", fake_torch("cuda")) == "cpu"
    assert devices.resolve("xpu", fake_torch("xpu")) == "xpu"


def test_a_device_that_is_not_there_is_a_one_line_error():
    with pytest.raises(UserError, match=r"--device cuda: no cuda device here .*sees only the CPU"):
        devices.resolve("cuda", fake_torch(None))
    with pytest.raises(UserError, match=r"--device mps: no mps device here \(found cuda\)"):
        devices.resolve("mps", fake_torch("cuda"))
    with pytest.raises(UserError, match="choose one of auto, cpu"):
        devices.resolve("tpu")


def test_this_machine_resolves_auto_to_what_torch_accelerator_reports():
    expected = torch.accelerator.current_accelerator().type if torch.accelerator.is_available() else "cpu"
    assert devices.resolve("auto") == expected == HERE


@pytest.mark.skipif(HERE == "cuda", reason="this machine has CUDA")
def test_cli_train_and_compare_on_a_missing_device_exit_2_with_one_line(capsys, tmp_path):
    assert main(["train", "linear", "--device", "cuda", "--subset", "500", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fmnist: error: --device cuda: no cuda device here") and "\n" not in err
    assert main(["compare", "--models", "linear", "--device", "cuda", "--out", str(tmp_path / "c")]) == 2
    assert "no cuda device here" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # refused before its plan is written


def test_precision_auto_on_an_accelerator_is_bf16_where_supported_else_fp16(monkeypatch):
    monkeypatch.setattr(devices, "supports_bf16", lambda kind, torch=None: kind == "cuda")
    assert precision.settled({"precision": "auto"}, "cuda") == {"precision": "bf16"}
    assert precision.settled({"precision": "auto"}, "mps") == {"precision": "fp16"}
    assert precision.settled({"precision": "fp32"}, "cuda") == {"precision": "fp32"}
    assert precision.settled({"lr": 1.0}, "cuda") == {"lr": 1.0}  # a model without the setting keeps none
    with pytest.raises(UserError, match="--precision fp16: for accelerators"):
        precision.settled({"precision": "fp16"}, "cpu")


def test_bf16_support_is_the_backends_own_answer():
    assert devices.supports_bf16("cuda", fake_torch("cuda", bf16=False)) is False
    assert devices.supports_bf16("cuda", fake_torch("cuda", bf16=True)) is True


def test_numpy_models_stay_on_the_cpu_and_say_so(capsys):
    assert devices.for_model("scratch-mlp", False, "cuda") == "cpu"
    assert "scratch-mlp runs in NumPy on the CPU; --device cuda" in capsys.readouterr().err
    assert devices.for_model("scratch-mlp", False, "auto") == "cpu"
    assert capsys.readouterr().err == ""  # auto asks for nothing in particular


def test_cpu_backend_keeps_its_cpu_generator_and_fp32_steps():
    from fmnist.engine.torch_backend import TorchBackend

    hparams = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0, "bias_lr": 1.0, "label_smoothing": 0.0}
    backend = TorchBackend(torch.nn.Linear(4, 2), hparams | {"lookahead": 0}, seed=3, fill=0.0, total_steps=1)
    assert backend.generator.device.type == "cpu" and backend.autocast is None and backend.scaler is None
    assert torch.equal(backend.shuffle(10), torch.randperm(10, generator=torch.Generator().manual_seed(3)))


@ACCELERATOR
def test_a_run_on_the_accelerator_records_it_and_its_checkpoint_loads_on_the_cpu(splits, dataset, tmp_path):
    """The accelerator path end to end: data on the device once, augmentation there, auto precision settled and
    recorded, a device-free checkpoint that predicts alike on the CPU."""
    from fmnist.engine.augment import augment_batch
    from fmnist.engine.torch_backend import to_tensor
    from fmnist.jobs import train
    from fmnist.rundir import checkpoint

    x = to_tensor(splits.x_train[:64], 0.3, 0.35, HERE)
    generator = devices.generator(HERE, 0)
    moved = augment_batch(x, flip=True, shift=1, erase=0.5, fill=-1.0, generator=generator)
    assert x.device.type == HERE and moved.device.type == HERE and moved.shape == x.shape
    setup = Setup(splits.subset(2000, 500, 500), dataset, seed=0, progress=False, device="auto")
    hparams = {"epochs": 2, "widths": (8, 16, 32), "batch_size": 128, "precision": "auto"}
    model, metrics = train.train_one("cnn", train.registry.spec("cnn").complete(hparams), setup, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["device"] == HERE and config["hparams"]["precision"] in ("bf16", "fp16")
    assert next(model.module.parameters()).device.type == HERE
    on_cpu, _ = checkpoint.load(tmp_path)
    assert next(on_cpu.module.parameters()).device.type == "cpu"
    images = setup.splits.x_test
    agree = (on_cpu.predict_logits(images).argmax(1) == model.predict_logits(images).argmax(1)).mean()
    assert agree >= 0.99 and metrics["test_accuracy"] > 0.5
    assert np.isfinite(model.predict_logits(images)).all()
