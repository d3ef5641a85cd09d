"""The learning rate of every step, shared by the torch and the NumPy models."""

import math

SCHEDULES = ("cosine", "constant", "triangle")
TRIANGLE = (0.2, 0.07)  # airbench's triangle: it starts at 0.2 x peak and ends at 0.07 x peak


def learning_rate(step, total_steps, peak, warmup_steps=0, shape="cosine"):
    """The learning rate for 0-based `step` of `total_steps`.

    cosine and constant: a linear warm-up from zero to `peak` over `warmup_steps`, then either `constant` or a
    half-cosine from `peak` down to zero at `total_steps` (SGDR without restarts; with a warm-up it is the
    one-cycle shape). triangle: linear from TRIANGLE[0] x peak up to `peak` over `warmup_steps`, then linear
    down to TRIANGLE[1] x peak at the last step.
    """
    if shape == "triangle":
        start, end = TRIANGLE
        if step < warmup_steps:
            return peak * (start + (1 - start) * step / warmup_steps)
        return peak * (1 + (end - 1) * (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if step < warmup_steps:
        return peak * ((step + 1) / warmup_steps)
    if shape == "constant":
        return peak
    if shape == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * peak * (1 + math.cos(math.pi * progress))
    raise ValueError(f"schedule {shape!r}: choose one of {', '.join(SCHEDULES)}")


def warmup_steps(fraction, total_steps):
    """Steps of warm-up for a `fraction` of training: at least one when there is any."""
    return max(1, round(fraction * total_steps)) if fraction > 0 else 0
