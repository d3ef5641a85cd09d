"""The arithmetic of the torch models' training steps: fp32, or bf16 autocast where the CPU does bf16 natively.

`auto` (the cnn's default) is settled once, before training, from the processor alone: bf16 when it has native
bf16 instructions (`avx512_bf16` or `amx_bf16` in /proc/cpuinfo), fp32 otherwise. It used to also time a short
probe, which under load could pick fp32 on the same machine (a busy core made bf16 look no faster): the choice
must not depend on what else runs. The settled value is what the run records, so --resume continues with the
same arithmetic. Only the training steps use bf16 (forward and loss, under `torch.autocast`; the
weights and the optimizer stay fp32); validation and prediction run in fp32, so a model predicts alike on any
machine. Which models may use it was measured (bench/bench_precision.py): within 0.15 points of fp32 on
validation.
"""

import functools
from pathlib import Path

CHOICES = ("auto", "fp32", "bf16")
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
    """fp32 or bf16 for `requested` (one of CHOICES). native: read from /proc/cpuinfo unless given (tests)."""
    if requested not in CHOICES:
        raise ValueError(f"precision {requested!r}: choose one of {', '.join(CHOICES)}")
    if requested != "auto":
        return requested
    return "bf16" if (native_bf16() if native is None else native) else "fp32"


def settled(hparams):
    """hparams with an `auto` precision replaced by the one this machine uses (unchanged without one)."""
    if hparams.get("precision", "fp32") != "auto":
        return hparams
    return hparams | {"precision": settle("auto")}
