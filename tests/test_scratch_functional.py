"""The NumPy MLP's maths against finite differences and torch autograd, in float64."""

import numpy as np
import pytest
import torch

from fmnist.models.scratch import functional as F
from fmnist.models.scratch.mlp import MLP

DEPTHS = [[5, 3], [6, 4, 3], [7, 5, 4, 3], [4, 6, 5, 4, 3]]


def tiny_batch(layer_sizes, seed=0, n=8):
    rng = np.random.default_rng(seed)
    mlp = MLP(layer_sizes, rng=rng, dtype=np.float64)
    for b in mlp.biases:  # non-zero biases, so their gradients are exercised too
        b[...] = rng.standard_normal(b.shape) * 0.1
    x = rng.standard_normal((n, layer_sizes[0]))
    y = rng.integers(0, layer_sizes[-1], n)
    return mlp, x, y


def total_loss(mlp, x, y, weight_decay):
    logits, _ = mlp.forward(x)
    return F.softmax_cross_entropy(logits, y, need_grad=False)[0] + F.l2_penalty(mlp.weights, weight_decay)


def relative_error(a, b):
    """||a - b|| / (||a|| + ||b||), per parameter array: insensitive to entries whose gradient is ~0."""
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


@pytest.mark.parametrize("layer_sizes", DEPTHS, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_gradients_match_finite_differences(layer_sizes, weight_decay):
    mlp, x, y = tiny_batch(layer_sizes)
    loss, _, _, grads = mlp.loss_and_grads(x, y, weight_decay)
    assert loss == pytest.approx(total_loss(mlp, x, y, weight_decay), rel=1e-14)
    h = 1e-6
    for param, grad in zip(mlp.params, grads, strict=True):
        numeric = np.zeros_like(param)
        for i in np.ndindex(param.shape):
            saved = param[i]
            param[i] = saved + h
            up = total_loss(mlp, x, y, weight_decay)
            param[i] = saved - h
            down = total_loss(mlp, x, y, weight_decay)
            param[i] = saved
            numeric[i] = (up - down) / (2 * h)
        assert relative_error(grad, numeric) < 1e-6
        np.testing.assert_allclose(grad, numeric, atol=1e-8)


def test_a_wrong_gradient_fails_the_finite_difference_check():
    mlp, x, y = tiny_batch([6, 4, 3])
    _, _, _, grads = mlp.loss_and_grads(x, y)
    grads[0][0, 0] += 1e-3  # the size of a typical slip, e.g. a missing mask entry
    h, param, numeric = 1e-6, mlp.params[0], np.zeros_like(mlp.params[0])
    for i in np.ndindex(param.shape):
        saved = param[i]
        param[i] = saved + h
        up = total_loss(mlp, x, y, 0.0)
        param[i] = saved - h
        down = total_loss(mlp, x, y, 0.0)
        param[i] = saved
        numeric[i] = (up - down) / (2 * h)
    assert relative_error(grads[0], numeric) > 1e-6


@pytest.mark.parametrize("layer_sizes", DEPTHS, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_loss_and_gradients_match_torch_autograd(layer_sizes, weight_decay):
    mlp, x, y = tiny_batch(layer_sizes, seed=1, n=16)
    loss, data_loss, logits, grads = mlp.loss_and_grads(x, y, weight_decay)

    params = [torch.tensor(p, requires_grad=True) for p in mlp.params]
    h = torch.tensor(x)
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        if i + 2 < len(params):
            h = torch.relu(h)
    ce = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    reference = ce + 0.5 * weight_decay * sum((w**2).sum() for w in params[0::2])
    reference.backward()

    np.testing.assert_allclose(logits, h.detach().numpy(), rtol=0, atol=1e-12)
    assert data_loss == pytest.approx(ce.item(), rel=0, abs=1e-10)
    assert loss == pytest.approx(reference.item(), rel=0, abs=1e-10)
    for grad, p in zip(grads, params, strict=True):
        assert grad.shape == p.shape
        np.testing.assert_allclose(grad, p.grad.numpy(), rtol=0, atol=1e-10)


def test_float32_network_computes_in_float32():
    mlp = MLP([784, 128, 10], rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((32, 784)).astype(np.float32)
    _, _, logits, grads = mlp.loss_and_grads(x, np.arange(32) % 10, weight_decay=1e-4)
    assert logits.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads)
    assert mlp.logits(x).dtype == np.float32
    assert mlp.num_parameters() == 784 * 128 + 128 + 128 * 10 + 10


def test_he_initialisation_scale():
    w, b = F.he_init(np.random.default_rng(0), 400, 300)
    assert w.shape == (400, 300) and w.dtype == np.float32
    assert np.all(b == 0)
    assert w.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_softmax_cross_entropy_stays_finite_for_huge_logits(scale):
    logits = np.array([[scale, 0.0, -scale], [0.0, scale, scale], [-scale, -scale, -scale]], dtype=np.float32)
    labels = np.array([0, 2, 1])
    loss, grad = F.softmax_cross_entropy(logits, labels)
    probs = F.softmax(logits)
    assert np.isfinite(loss) and np.all(np.isfinite(grad)) and np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)
    assert not np.any((grad != 0) & (np.abs(grad) < np.finfo(np.float32).tiny))  # no slow subnormal gradients
    reference = torch.nn.functional.cross_entropy(torch.tensor(logits, dtype=torch.float64), torch.tensor(labels))
    assert loss == pytest.approx(reference.item(), rel=1e-6)
    np.testing.assert_allclose(
        F.log_softmax(logits.astype(np.float64)), torch.log_softmax(torch.tensor(logits, dtype=torch.float64), 1)
    )


def test_relu_backward_is_a_mask():
    z = np.array([[-1.0, 0.0, 2.0]])
    a = F.relu_forward(z)
    np.testing.assert_array_equal(a, [[0.0, 0.0, 2.0]])
    np.testing.assert_array_equal(F.relu_backward(np.array([[5.0, 6.0, 7.0]]), a), [[0.0, 0.0, 7.0]])


def test_first_layer_skips_the_input_gradient():
    x, w, dout = np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4))
    dx, dw, db = F.linear_backward(dout, x, w, need_dx=False)
    assert dx is None and dw.shape == (3, 4) and db.shape == (4,)
