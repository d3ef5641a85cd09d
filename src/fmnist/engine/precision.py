"""The arithmetic of the torch models' training steps: fp32, or bf16 autocast where the CPU does bf16 natively.

`auto` (the cnn's default) is settled once, before training, from the processor alone: bf16 when it has native
bf16 instructions (`avx512_bf16` or `amx_bf16` in /proc/cpuinfo), fp32 otherwise. It used to also time a short
probe, which under load could pick fp32 on the same machine (a busy core made bf16 look no faster): the choice
must not depend on what else runs. The settled value is what the run records, so --resume continues with the
same arithmetic. Only the training steps use bf16 (forward and loss, under `torch.autocast`; the
weights and the optimizer stay fp32); validation and prediction run in fp32, so a model predicts alike on any
machine. Which models may use it was measured (bench/bench_precision.py): within 0.15 points of fp32 on
validation.

On an accelerator (`--device cuda|mps|xpu`) `auto` means bf16 where the device supports it, else fp16 with a
gradient scaler (`fp16` is for accelerators only); the value is settled and recorded the same way.
"""

import functools
from pathlib import Path

from fmnist.errors import UserError

CHOICES = ("auto", "fp32", "bf16", "fp16")  # fp16: accelerators only (a GradScaler)
CPU_CHOICES = CHOICES[:3]
NATIVE_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bf16(cpuinfo=None):
    """True if the processor has bf16 instructions (x86 flags as Linux lists them)."""
    if cpuinfo is None:
        return _this_processor_bf16()
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in NATIVE_FLAGS)


@functools.cache
def _this_processor_bf16():
    try:
        return native_bf16(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def settle(requested, *, native=None):
    """fp32 or bf16 for `requested` (one of CPU_CHOICES) on the CPU. native: read from /proc/cpuinfo unless given."""
    if requested not in CPU_CHOICES:
        raise ValueError(f"precision {requested!r}: choose one of {', '.join(CPU_CHOICES)} (fp16: accelerators only)")
    if requested != "auto":
        return requested
    return "bf16" if (native_bf16() if native is None else native) else "fp32"


def on_accelerator(requested, kind):
    """fp32, bf16 or fp16 for `requested` on accelerator `kind`: auto is bf16 where supported, else fp16."""
    from fmnist.engine import devices

    if requested != "auto":
        return requested
    return "bf16" if devices.supports_bf16(kind) else "fp16"


def settled(hparams, device="cpu"):
    """hparams with an `auto` precision replaced by the one this machine (or accelerator `device`) uses
    (unchanged without one)."""
    if "precision" in hparams and device != "cpu":
        return hparams | {"precision": on_accelerator(hparams["precision"], device)}
    if hparams.get("precision") == "fp16":
        raise UserError("--precision fp16: for accelerators (--device cuda, mps, xpu); on the CPU use bf16 or fp32")
    if hparams.get("precision", "fp32") != "auto":
        return hparams
    return hparams | {"precision": settle("auto")}
