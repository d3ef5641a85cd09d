"""The shared training loop against a scripted backend: what it asks of a backend, and what it decides."""

import numpy as np
import pytest

from fmnist.engine import loop
from fmnist.engine.schedule import learning_rate, warmup_steps
from fmnist.errors import Diverged

N_VAL = 20


class Scripted:
    """A backend whose validation accuracy per epoch is scripted; its 'weights' are the number of steps taken."""

    def __init__(self, accuracies, losses=None, bad_step=None):
        self.accuracies, self.losses, self.bad_step = accuracies, losses, bad_step
        self.steps, self.shuffles, self.lrs, self.batches, self.evaluations = 0, 0, [], [], 0

    def shuffle(self, n):
        self.shuffles += 1
        return np.random.default_rng(self.shuffles).permutation(n)

    def train_step(self, x, y, lr):
        self.steps += 1
        self.lrs.append(lr)
        self.batches.append(len(x))
        objective = float("nan") if self.steps == self.bad_step else 1.0
        return objective, 1.0, len(x) // 2

    def logits(self, x):
        accuracy = self.accuracies[self.evaluations]
        right = round(accuracy * len(x))
        logits = np.zeros((len(x), 10), np.float32)
        logits[:right, 0] = 1.0  # the labels are all 0: the first `right` rows are right
        logits[right:, 1] = 1.0
        if self.losses is not None:
            logits *= self.losses[self.evaluations]  # larger margins, lower loss at the same accuracy
        self.evaluations += 1
        return logits

    def weights(self):
        return self.steps

    def load_weights(self, weights):
        self.steps = weights

    def state(self):
        return {"steps": self.steps}

    def load_state(self, saved):
        self.steps = saved["steps"]


def data(n=100):
    return (np.zeros((n, 3), np.float32), np.zeros(n, np.int64)), (np.zeros((N_VAL, 3)), np.zeros(N_VAL, np.int64))


def config(**settings):
    return loop.LoopConfig(**{"name": "t", "epochs": 5, "batch_size": 30, "lr": 0.1, "patience": 10} | settings)


def test_every_epoch_is_shuffled_batched_and_scheduled():
    backend = Scripted([0.5] * 5)
    history = loop.fit(backend, *data(100), config(warmup=0.25, progress=False))
    assert backend.shuffles == 5 and backend.batches == [30, 30, 30, 10] * 5
    total = 20
    assert backend.lrs == [learning_rate(s, total, 0.1, warmup_steps(0.25, total)) for s in range(total)]
    assert [row["lr"] for row in history] == [backend.lrs[4 * e - 1] for e in range(1, 6)]
    assert [row["accuracy"] for row in history] == [(15 * 3 + 5) / 100] * 5


def test_drop_last_keeps_whole_batches_only():
    backend = Scripted([0.5] * 2)
    loop.fit(backend, *data(100), config(epochs=2, drop_last=True, progress=False))
    assert backend.batches == [30, 30, 30] * 2


def test_patience_stops_and_the_best_weights_are_kept():
    backend = Scripted([0.5, 0.7, 0.6, 0.7, 0.65, 0.9])
    history = loop.fit(backend, *data(60), config(epochs=6, patience=3, progress=False))
    assert len(history) == 5  # epoch 2 is best; 3, 4 (a tie, but not lower loss) and 5 bring nothing
    assert backend.steps == 2 * 2  # the weights of epoch 2: two steps per epoch
    assert loop.best_epoch(history) == 2


def test_keep_last_runs_every_epoch_and_keeps_the_last_weights():
    """A refit (keep "last") trains on its validation images: they neither stop it nor choose its weights."""
    backend = Scripted([0.5, 0.7, 0.6, 0.7, 0.65, 0.4])
    history = loop.fit(backend, *data(60), config(epochs=6, patience=3, keep="last", progress=False))
    assert len(history) == 6
    assert backend.steps == 6 * 2  # the last epoch's weights, though epoch 2 scored best on validation


def test_a_tie_in_accuracy_keeps_the_earlier_epoch():
    backend = Scripted([0.5, 0.7, 0.7], losses=[1.0, 1.0, 4.0])
    history = loop.fit(backend, *data(60), config(epochs=3, progress=False))
    assert history[2]["val_loss"] < history[1]["val_loss"]  # lower loss, same accuracy: not an improvement
    assert backend.steps == 2 * 2 and loop.best_epoch(history) == 2


def test_divergence_before_any_epoch_restores_the_initial_weights():
    backend = Scripted([0.5] * 5, bad_step=3)
    with pytest.raises(
        Diverged, match=r"t: training loss became nan at epoch 1, batch 3 with lr [\d.]+ \(no epoch finished"
    ):
        loop.fit(backend, *data(100), config(progress=False))
    assert backend.steps == 0


def test_divergence_later_keeps_the_best_epoch():
    backend = Scripted([0.5, 0.6, 0.4], bad_step=11)
    with pytest.raises(Diverged, match=r"epoch 3, batch 3 .*weights of epoch 2 kept"):
        loop.fit(backend, *data(100), config(progress=False))
    assert backend.steps == 8


def test_empty_sets_are_refused():
    with pytest.raises(ValueError, match="must not be empty"):
        loop.fit(Scripted([]), (np.zeros((0, 3)), np.zeros(0)), data()[1], config(progress=False))
