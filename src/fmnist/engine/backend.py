"""The Backend protocol: what a model gives the one training loop (`fmnist.engine.loop.fit`).

Two backends exist: `fmnist.engine.torch_backend.TorchBackend` (a torch module, on any device, optionally
data-parallel) and `fmnist.models.scratch.backend.NumpyBackend` (the from-scratch MLP). The loop owns batches,
learning rates, validation, best weights, patience and the resumable state; a backend owns the maths.
"""

from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    """One model's training maths. `x` and `y` are whatever the backend keeps its data in (torch tensors or
    NumPy arrays): the loop only slices them with the index arrays `shuffle` gives."""

    def shuffle(self, n: int) -> Any:
        """The epoch's order of `n` training images, from the backend's own seeded generator: int (n,)."""
        ...

    def train_step(self, x: Any, y: Any, lr: float) -> tuple[float, float, int]:
        """One update on a batch x (B, ...), y (B,) -> (objective, loss, correct): what was minimised (checked
        for divergence), the plain cross-entropy (for the history), the number of right answers."""
        ...

    def logits(self, x: Any) -> np.ndarray:
        """Validation logits: x (N, ...) -> float32 (N, 10)."""
        ...

    def weights(self) -> Any:
        """A copy of the weights, for the best-on-validation snapshot."""
        ...

    def load_weights(self, weights: Any) -> None:
        """Put back a copy `weights()` made."""
        ...

    def state(self) -> dict[str, Any]:
        """Weights, optimizer and generators as a tree of arrays, for resuming."""
        ...

    def load_state(self, saved: dict[str, Any]) -> None:
        """Continue exactly from a tree `state()` made."""
        ...
