"""Hand-written optimizers (the learning rate of each step comes from fmnist.engine.schedule).

Each optimizer updates a list of NumPy arrays in place from a matching list of gradients, following the same
update rules as torch.optim.SGD (momentum, dampening 0, optional Nesterov) and torch.optim.Adam (L2 weight decay
is part of the loss here, so neither optimizer adds it). `lr` is an attribute the schedule sets every step.
"""

import math

import numpy as np

OPTIMIZERS = ("adam", "sgd", "nesterov")
FLUSH_EVERY = 32  # steps between flushes of subnormal numbers


def flush_subnormals(arrays, scratch):
    """Set entries smaller in magnitude than the dtype's smallest normal number to zero, in place.

    Weights of dead ReLU units under weight decay, and momenta fed zero gradients, decay geometrically into
    the subnormal range, where x86 arithmetic (NumPy's loops and BLAS alike) runs up to 100x slower: a
    30-epoch run slowed from 0.34 to 5 s per epoch. NumPy cannot set the CPU's flush-to-zero mode, so this
    does it by hand; a value below ~1e-38 (float32) changes nothing else.
    """
    for a, tmp in zip(arrays, scratch, strict=True):
        np.abs(a, out=tmp)
        np.copyto(a, 0, where=tmp < np.finfo(a.dtype).tiny)


class Optimizer:
    """Shared step counting and the periodic flush; subclasses implement `_update` and list their state."""

    def __init__(self, params, lr):
        self.params = params
        self.lr = lr
        self.t = 0
        # One scratch array per parameter, so a step allocates nothing.
        self.scratch = [np.empty_like(p) for p in params]

    def state(self):
        """Lists of arrays shaped like `params`, one list per kind of state (momenta, ...)."""
        return []

    def state_dict(self):
        """The step count, learning rate and copies of the state arrays, for a resumable checkpoint."""
        return {"t": self.t, "lr": self.lr, "state": [[a.copy() for a in arrays] for arrays in self.state()]}

    def load_state_dict(self, saved):
        """Continue from `state_dict()`'s output; arrays are copied in place, so references stay valid."""
        for arrays, saved_arrays in zip(self.state(), saved["state"], strict=True):
            for a, s in zip(arrays, saved_arrays, strict=True):
                if a.shape != s.shape:
                    raise ValueError(f"optimizer state shape {s.shape}, expected {a.shape}")
                a[...] = s
        self.t, self.lr = int(saved["t"]), float(saved["lr"])

    def step(self, grads):
        """Update every parameter in place from `grads` (same shapes)."""
        self.t += 1
        self._update(grads)
        if self.t % FLUSH_EVERY == 0:
            for arrays in (self.params, *self.state()):
                flush_subnormals(arrays, self.scratch)


class SGD(Optimizer):
    """buf = momentum * buf + g; step along g + momentum * buf (Nesterov) or buf; p -= lr * step."""

    def __init__(self, params, lr, momentum=0.9, nesterov=False):
        super().__init__(params, lr)
        self.momentum = momentum
        self.nesterov = nesterov
        self.buffers = [np.zeros_like(p) for p in params]

    def state(self):
        return [self.buffers] if self.momentum else []

    def _update(self, grads):
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


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction, arranged as torch does: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def state(self):
        return [self.m, self.v]

    def _update(self, grads):
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
