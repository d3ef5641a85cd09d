"""The maths of a ReLU MLP as plain NumPy functions, dtype-preserving (float32 in training, float64 in tests).

Shapes: N examples, D_in / D_out layer widths, C classes. Functions that take `out=` may write in place, which
the training loop uses to avoid temporaries; called without it they allocate.
"""

import numpy as np


def he_init(rng, fan_in, fan_out, dtype=np.float32):
    """He (Kaiming) normal initialisation for a layer followed by ReLU.

    Returns weights (fan_in, fan_out) drawn from N(0, 2 / fan_in) and zero biases (fan_out,).
    """
    w = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
    return w.astype(dtype), np.zeros(fan_out, dtype=dtype)


def linear_forward(x, w, b, out=None):
    """(N, D_in) @ (D_in, D_out) + (D_out,) -> (N, D_out)."""
    out = np.matmul(x, w, out=out)
    out += b
    return out


def linear_backward(dout, x, w, need_dx=True):
    """Gradients of a linear layer given dL/d(out) (N, D_out) and its input x (N, D_in).

    Returns (dx (N, D_in) or None, dw (D_in, D_out), db (D_out,)). The first layer skips dx: no one needs
    the gradient with respect to the pixels.
    """
    dw = x.T @ dout
    db = dout.sum(axis=0)
    dx = dout @ w.T if need_dx else None
    return dx, dw, db


def relu_forward(z, out=None):
    """max(z, 0), same shape as z; pass out=z to apply in place."""
    return np.maximum(z, 0, out=out)


def relu_backward(dout, activation, out=None):
    """dL/dz from dL/d(relu(z)) (N, D) and the ReLU output (N, D): a mask multiply (relu(z) > 0 iff z > 0)."""
    return np.multiply(dout, activation > 0, out=out)


def log_softmax(logits):
    """(N, C) -> (N, C) log-probabilities; shifting by the row maximum keeps exp() from overflowing."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


def softmax(logits):
    """(N, C) -> (N, C) probabilities that sum to one per row, finite for any finite logits."""
    probs = logits - logits.max(axis=1, keepdims=True)
    np.exp(probs, out=probs)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs


def exponent_floor(dtype):
    """The smallest exponent worth computing: exp of it is eps**2 (about 1e-14 in float32, 5e-32 in float64).

    Added to a sum of exponentials that is at least one, anything smaller is lost to rounding anyway.
    """
    return float(2 * np.log(np.finfo(dtype).eps))


def softmax_cross_entropy(logits, labels, need_grad=True):
    """Mean cross-entropy of softmax(logits) (N, C) against int labels (N,), fused with its gradient.

    Returns (loss as a Python float, dL/d(logits) (N, C) or None). The gradient of the mean is
    (softmax - one_hot) / N, computed without forming log-probabilities twice.
    """
    n = len(labels)
    rows = np.arange(n)
    shifted = logits - logits.max(axis=1, keepdims=True)
    # Without the floor, the probabilities of confidently wrong classes underflow into subnormal numbers, and
    # subnormal gradients make the backward pass's BLAS calls several times slower late in training. The
    # floor changes neither the loss (it keeps the label's exact shifted logit) nor any gradient entry beyond
    # eps**2 / N.
    exp = np.exp(np.maximum(shifted, exponent_floor(logits.dtype)))
    sums = exp.sum(axis=1)
    loss = float(np.mean(np.log(sums) - shifted[rows, labels], dtype=np.float64))
    if not need_grad:
        return loss, None
    exp /= sums[:, None]
    exp[rows, labels] -= 1
    exp *= exp.dtype.type(1.0 / n)
    return loss, exp


def l2_penalty(weights, weight_decay):
    """0.5 * weight_decay * sum of squared entries over the weight matrices (biases are not decayed)."""
    if not weight_decay:
        return 0.0
    return 0.5 * weight_decay * float(sum(np.vdot(w, w) for w in weights))


def add_l2_grad(dw, w, weight_decay):
    """Add the penalty's gradient weight_decay * w (D_in, D_out) to dw in place; returns dw."""
    if weight_decay:
        dw += dw.dtype.type(weight_decay) * w
    return dw


def accuracy(logits, labels):
    """Fraction of rows (N, C) whose argmax equals the int label (N,)."""
    return float(np.mean(logits.argmax(axis=1) == labels))
