"""The from-scratch MLP's side of the training loop: hand-written forward, backward and update, NumPy only."""

import math

import numpy as np


class NumpyBackend:
    """An `fmnist.models.scratch.mlp.MLP` trained by `fmnist.engine.loop.fit`.

    optimizer: an `fmnist.models.scratch.optim` optimizer over mlp.params. augment: None, or a function
    (batch (B, D), numpy Generator) -> the batch to train on. `seed` fixes the batch order ([seed, 1]) and the
    augmentation ([seed, 2]); the initial weights are the MLP's own business.
    """

    def __init__(self, mlp, optimizer, *, weight_decay, seed, augment=None):
        self.mlp, self.optimizer, self.weight_decay, self.augment = mlp, optimizer, weight_decay, augment
        self.shuffle_rng = np.random.default_rng([seed, 1])
        self.augment_rng = np.random.default_rng([seed, 2])

    def shuffle(self, n):
        return self.shuffle_rng.permutation(n)

    def train_step(self, x, y, lr):
        if self.augment is not None:
            x = self.augment(x, self.augment_rng)
        self.optimizer.lr = lr
        # Overflow shows as a non-finite loss, which the loop reports once, instead of as NumPy warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            loss, data_loss, logits, grads = self.mlp.loss_and_grads(x, y, self.weight_decay)
            if not math.isfinite(loss):
                return loss, data_loss, 0
            self.optimizer.step(grads)
        return loss, data_loss, int(np.count_nonzero(logits.argmax(axis=1) == y))

    def logits(self, x):
        with np.errstate(over="ignore", invalid="ignore"):
            return self.mlp.logits(x)

    def weights(self):
        return self.mlp.copy_params()

    def load_weights(self, weights):
        self.mlp.set_params(weights)

    def state(self):
        return {
            "params": self.mlp.params,
            "optimizer": self.optimizer.state_dict(),
            "shuffle_rng": self.shuffle_rng.bit_generator.state,
            "augment_rng": self.augment_rng.bit_generator.state,
        }

    def load_state(self, saved):
        self.mlp.set_params(saved["params"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.shuffle_rng.bit_generator.state = saved["shuffle_rng"]
        self.augment_rng.bit_generator.state = saved["augment_rng"]
