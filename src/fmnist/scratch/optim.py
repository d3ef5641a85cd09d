"""Hand-written optimizers and a per-step learning-rate schedule.

Each optimizer updates a list of NumPy arrays in place from a matching list of gradients, following the same
update rules as torch.optim.SGD (momentum, dampening 0, optional Nesterov) and torch.optim.Adam (L2 weight decay
is part of the loss here, so neither optimizer adds it). `lr` is an attribute the schedule sets every step.
"""

import math

import numpy as np

OPTIMIZERS = ("adam", "sgd", "nesterov")
SCHEDULES = ("cosine", "constant")


class SGD:
    """buf = momentum * buf + g; step along g + momentum * buf (Nesterov) or buf; p -= lr * step."""

    def __init__(self, params, lr, momentum=0.9, nesterov=False):
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.buffers = [np.zeros_like(p) for p in params]
        self.scratch = [np.empty_like(p) for p in params]

    def step(self, grads):
        for p, g, buf, tmp in zip(self.params, grads, self.buffers, self.scratch, strict=True):
            f = p.dtype.type
            step = g
            if self.momentum:
                # torch starts the buffer at the first gradient; from zeros, momentum * 0 + g gives the same.
                buf *= f(self.momentum)
                buf += g
                step = buf
                if self.nesterov:
                    np.multiply(buf, f(self.momentum), out=tmp)
                    tmp += g
                    step = tmp
            np.multiply(step, f(self.lr), out=tmp)
            p -= tmp


class Adam:
    """Adam (Kingma & Ba) with bias correction, arranged as torch does: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8):
        self.params = params
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        # One scratch array per parameter, so a step allocates nothing.
        self.scratch = [np.empty_like(p) for p in params]

    def step(self, grads):
        self.t += 1
        bc1 = 1 - self.beta1**self.t
        bc2 = 1 - self.beta2**self.t
        for p, g, m, v, tmp in zip(self.params, grads, self.m, self.v, self.scratch, strict=True):
            f = p.dtype.type
            m *= f(self.beta1)
            np.multiply(g, f(1 - self.beta1), out=tmp)
            m += tmp
            v *= f(self.beta2)
            np.multiply(g, g, out=tmp)
            tmp *= f(1 - self.beta2)
            v += tmp
            np.sqrt(v, out=tmp)
            tmp *= f(1 / math.sqrt(bc2))
            tmp += f(self.eps)
            np.divide(m, tmp, out=tmp)
            tmp *= f(self.lr / bc1)
            p -= tmp


def make_optimizer(name, params, lr, momentum=0.9):
    """'adam', 'sgd' (heavy-ball momentum) or 'nesterov' over `params` (a list of arrays updated in place)."""
    if name == "adam":
        return Adam(params, lr)
    if name in ("sgd", "nesterov"):
        return SGD(params, lr, momentum=momentum, nesterov=name == "nesterov")
    raise ValueError(f"optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")


def learning_rate(schedule, step, total_steps, peak, warmup_steps=0):
    """The learning rate for 0-based `step` of `total_steps`.

    A linear warm-up from peak / warmup_steps to `peak` over `warmup_steps`, then either `constant` or a
    half-cosine from `peak` down to zero at `total_steps` (Loshchilov & Hutter's SGDR without restarts).
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * peak * (1 + math.cos(math.pi * progress))
    raise ValueError(f"schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
