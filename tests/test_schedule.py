"""The one learning-rate schedule of both backends."""

import itertools
import math

import pytest
import torch

from fmnist.engine.schedule import learning_rate, warmup_steps


def test_cosine_schedule_matches_torch_cosine_annealing():
    total, peak = 50, 0.3
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    for step in range(total):
        assert learning_rate(step, total, peak) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-12)
        opt.step()
        sched.step()
    assert learning_rate(total, total, peak) == pytest.approx(0.0, abs=1e-15)


def test_warmup_then_cosine_and_constant():
    lrs = [learning_rate(s, 100, 1.0, 10) for s in range(100)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[10] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert [learning_rate(s, 100, 0.2, 2, "constant") for s in (0, 1, 2, 99)] == [0.1, 0.2, 0.2, 0.2]
    with pytest.raises(ValueError, match="cosine, constant, triangle"):
        learning_rate(0, 10, 1.0, shape="linear")


def test_triangle_rises_from_a_fifth_of_the_peak_then_falls_to_seven_hundredths():
    lrs = [learning_rate(s, 100, 2.0, 20, "triangle") for s in range(101)]
    assert lrs[0] == pytest.approx(0.4) and lrs[10] == pytest.approx(1.2) and lrs[20] == pytest.approx(2.0)
    assert lrs[100] == pytest.approx(0.14) and lrs[60] == pytest.approx(2.0 * (1 - 0.93 * 0.5))
    assert all(a < b for a, b in itertools.pairwise(lrs[:21])) and all(a > b for a, b in itertools.pairwise(lrs[20:]))


def test_one_cycle_warmup_matches_torch_lambda_lr_to_float32():
    total, peak = 70, 0.1
    warm = warmup_steps(0.25, total)
    assert warm == 18 and warmup_steps(0.0, total) == 0 and warmup_steps(0.001, total) == 1

    def factor(step):  # the one-cycle shape as a LambdaLR factor, written independently
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    for step in range(total):
        ours = torch.tensor(learning_rate(step, total, peak, warm), dtype=torch.float32)
        assert torch.equal(ours, torch.tensor(opt.param_groups[0]["lr"], dtype=torch.float32)), step
        opt.step()
        sched.step()
