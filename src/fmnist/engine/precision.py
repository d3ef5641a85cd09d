"""The arithmetic of the torch models' training steps: fp32, or bf16 autocast where the CPU does bf16 natively.

`auto` (the cnn's default) is settled once, before training: bf16 when the processor has native bf16
instructions (`avx512_bf16` or `amx_bf16` in /proc/cpuinfo) and a short probe of convolution steps runs
measurably faster in it; fp32 otherwise. The settled value is what the run records, so --resume continues
with the same arithmetic. Only the training steps use bf16 (forward and loss, under `torch.autocast`; the
weights and the optimizer stay fp32); validation and prediction run in fp32, so a model predicts alike on any
machine. Which models may use it was measured (bench/bench_precision.py): within 0.15 points of fp32 on
validation.

On an accelerator (`--device cuda|mps|xpu`) `auto` means bf16 where the device supports it, else fp16 with a
gradient scaler (`fp16` is for accelerators only); the value is settled and recorded the same way.
"""

import functools
import time
from pathlib import Path

from fmnist.errors import UserError

CHOICES = ("auto", "fp32", "bf16", "fp16")  # fp16: accelerators only (a GradScaler)
CPU_CHOICES = CHOICES[:3]
NATIVE_FLAGS = ("avx512_bf16", "amx_bf16")
MIN_SPEEDUP = 1.15  # below this the probe's noise could pick bf16 for nothing


def native_bf16(cpuinfo=None):
    """True if the processor has bf16 instructions (x86 flags as Linux lists them)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in NATIVE_FLAGS)


def probe_speedup(repeats=3):
    """fp32 seconds / bf16 seconds for a few training steps of two 3x3 convolutions (batch 256, 14x14)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, 14, 14, generator=generator).contiguous(memory_format=torch.channels_last)
    net = torch.nn.Sequential(torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.GELU(), torch.nn.Conv2d(64, 64, 3))
    net = net.to(memory_format=torch.channels_last)

    def seconds(bf16):
        best = float("inf")
        for _ in range(repeats + 1):  # the first call also builds the kernels
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = net(x).float().square().mean()
            loss.backward()
            best = min(best, time.perf_counter() - start)
        return best

    return seconds(False) / seconds(True)


def settle(requested, *, native=None, speedup=None):
    """fp32 or bf16 for `requested` (one of CPU_CHOICES). native, speedup: measured here unless given (tests)."""
    if requested not in CPU_CHOICES:
        raise ValueError(f"precision {requested!r}: choose one of {', '.join(CPU_CHOICES)} (fp16: accelerators only)")
    if requested != "auto":
        return requested
    if native is None and speedup is None:
        return _measured()
    return "bf16" if native and (speedup or 0.0) >= MIN_SPEEDUP else "fp32"


@functools.cache
def _measured():
    """auto on this machine, measured once per process: every model of a run trains alike."""
    native = native_bf16()
    return settle("auto", native=native, speedup=probe_speedup() if native else 0.0)


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
