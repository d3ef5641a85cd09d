"""Where the torch models run: `--device auto|cpu|cuda|mps|xpu`.

`auto` asks `torch.accelerator` (torch >= 2.6; the older per-backend checks elsewhere) and falls back to the CPU
when there is no accelerator. A named device that this machine lacks is a one-line user error. The NumPy models
(scratch-mlp, the hybrid's MLP) always run on the CPU; the caller says so when another device was asked for.
The resolved name ("cpu", "cuda", ...) is what config.json records and what --resume continues on.
"""

import importlib
import sys

from fmnist.errors import UserError

CHOICES = ("auto", "cpu", "cuda", "mps", "xpu")
ACCELERATORS = CHOICES[2:]


def _torch():
    return importlib.import_module("torch")


def available(kind, torch=None):
    """True if torch can use a device of this kind here ("cpu" always can)."""
    if kind == "cpu":
        return True
    torch = torch or _torch()
    backend = getattr(torch.backends, kind, None) if kind == "mps" else getattr(torch, kind, None)
    return bool(backend is not None and backend.is_available())


def detected(torch=None):
    """The accelerator torch would use here, or "cpu" when there is none."""
    torch = torch or _torch()
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:  # torch >= 2.6 names the one accelerator this build and machine have
        return accelerator.current_accelerator().type if accelerator.is_available() else "cpu"
    return next((kind for kind in ACCELERATORS if available(kind, torch)), "cpu")


def resolve(requested="auto", torch=None):
    """The device kind to run on for `requested` (one of CHOICES); UserError if it is not here."""
    if requested not in CHOICES:
        raise UserError(f"--device {requested}: choose one of {', '.join(CHOICES)}")
    if requested == "cpu":
        return "cpu"
    torch = torch or _torch()
    if requested == "auto":
        return detected(torch)
    if not available(requested, torch):
        found = detected(torch)
        seen = f"this machine's torch {torch.__version__} sees only the CPU" if found == "cpu" else f"found {found}"
        raise UserError(f"--device {requested}: no {requested} device here ({seen}); use --device auto or cpu")
    return requested


def explicit(requested):
    """True when the user named an accelerator (not auto, not cpu): a CPU-only model then says it stays there."""
    return requested in ACCELERATORS


def for_model(name, uses_torch, requested):
    """The device model `name` runs on for `requested`: resolved for a torch model; the CPU for a NumPy one, which
    says so on stderr when an accelerator was named (and never loads torch to find out)."""
    if uses_torch:
        return resolve(requested)
    if explicit(requested):
        print(f"fmnist: {name} runs in NumPy on the CPU; --device {requested} is for the torch models", file=sys.stderr)
    return "cpu"


def autocast_dtype(precision, torch=None):
    """The torch dtype of a settled precision's autocast, or None for fp32."""
    torch = torch or _torch()
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def supports_bf16(kind, torch=None):
    """True if the accelerator runs bf16 (its own check where torch has one, else a tiny bf16 matmul)."""
    torch = torch or _torch()
    check = getattr(getattr(torch, kind, None), "is_bf16_supported", None)
    if check is not None:
        try:
            return bool(check())
        except (RuntimeError, TypeError):
            return False
    try:
        x = torch.ones(2, 2, device=kind, dtype=torch.bfloat16)
        return bool(torch.isfinite((x @ x).float()).all())
    except (RuntimeError, TypeError):
        return False


def generator(kind, seed, torch=None):
    """A seeded torch.Generator on device `kind`: the batch order and augmentation are drawn where the data are."""
    torch = torch or _torch()
    return (torch.Generator() if kind == "cpu" else torch.Generator(device=kind)).manual_seed(seed)
