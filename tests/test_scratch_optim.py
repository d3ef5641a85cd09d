"""Hand-written optimizers and schedule against torch.optim on the same gradients, in float64."""

import numpy as np
import pytest
import torch

from fmnist.models.scratch.optim import FLUSH_EVERY, Adam, flush_subnormals, make_optimizer

SHAPES = [(5, 4), (4,), (4, 3), (3,)]


def gradient_sequence(steps, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]


def run_both(ours, theirs_factory, steps=5, lrs=None):
    """Apply the same gradients to our optimizer and to torch's; return both parameter lists."""
    params = [np.random.default_rng(42).standard_normal(s) for s in SHAPES]
    tensors = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = ours(params)
    reference = theirs_factory(tensors)
    for i, grads in enumerate(gradient_sequence(steps)):
        if lrs is not None:
            opt.lr = lrs[i]
            for group in reference.param_groups:
                group["lr"] = lrs[i]
        for t, g in zip(tensors, grads, strict=True):
            t.grad = torch.tensor(g)
        reference.step()
        opt.step([g.copy() for g in grads])
    return params, [t.detach().numpy() for t in tensors]


@pytest.mark.parametrize(
    ("name", "momentum", "nesterov"), [("sgd", 0.9, False), ("nesterov", 0.9, True), ("sgd", 0.0, False)]
)
def test_sgd_matches_torch(name, momentum, nesterov):
    ours, theirs = run_both(
        lambda p: make_optimizer(name, p, lr=0.05, momentum=momentum),
        lambda t: torch.optim.SGD(t, lr=0.05, momentum=momentum, nesterov=nesterov),
        lrs=[0.05, 0.04, 0.03, 0.02, 0.01],
    )
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_one_nesterov_step_differs_from_plain_momentum():
    plain, _ = run_both(lambda p: make_optimizer("sgd", p, 0.1), lambda t: torch.optim.SGD(t, 0.1), steps=2)
    nesterov, _ = run_both(lambda p: make_optimizer("nesterov", p, 0.1), lambda t: torch.optim.SGD(t, 0.1), steps=2)
    assert not np.allclose(plain[0], nesterov[0])


@pytest.mark.parametrize("steps", [1, 7])
def test_adam_matches_torch(steps):
    ours, theirs = run_both(
        lambda p: Adam(p, lr=1e-2),
        lambda t: torch.optim.Adam(t, lr=1e-2),
        steps=steps,
        lrs=[1e-2 * (1 - i / 10) for i in range(steps)],
    )
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_adam_in_float32_stays_float32():
    params = [np.ones((3, 2), dtype=np.float32)]
    opt = make_optimizer("adam", params, 1e-3)
    opt.step([np.full((3, 2), 0.5, dtype=np.float32)])
    assert params[0].dtype == np.float32
    np.testing.assert_allclose(params[0], 1 - 1e-3, rtol=1e-5)  # Adam's first step has size lr


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="rmsprop"):
        make_optimizer("rmsprop", [], 0.1)


def test_momenta_decaying_to_zero_never_linger_as_subnormal_numbers():
    params = [np.ones(1000, dtype=np.float32)]
    opt = Adam(params, lr=1e-3)
    opt.step([np.full(1000, 1e-30, dtype=np.float32)])
    for _ in range(191):  # m decays by 0.9 a step: 1e-31 * 0.9**191 is subnormal, unless flushed
        opt.step([np.zeros(1000, dtype=np.float32)])
    assert opt.t % FLUSH_EVERY == 0
    assert not np.any(opt.m[0]) and params[0].dtype == np.float32


def test_flush_subnormals_keeps_normal_numbers():
    tiny = np.finfo(np.float32).tiny
    values = np.array([tiny / 4, -tiny / 2, tiny, -1.5, 0.0], dtype=np.float32)
    flush_subnormals([values], [np.empty_like(values)])
    np.testing.assert_array_equal(values, np.array([0, 0, tiny, -1.5, 0], dtype=np.float32))
