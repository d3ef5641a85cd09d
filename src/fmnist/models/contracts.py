"""The Classifier protocol: what every model of the registry answers, whatever it is built on.

linear, mlp and cnn (`fmnist.models.classifiers`), scratch-mlp (`fmnist.models.scratch.classifier`) and the
hybrid (`fmnist.models.hybrid`) all satisfy it; the jobs, the run directory, prediction, the report and the API
take a `Classifier` and nothing more specific, except where they ask for `FeatureClassifier`'s features.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Classifier(Protocol):
    """A trainable, savable model on uint8 (N, 28, 28) images with 10 classes."""

    registry_name: ClassVar[str]  # its name in `fmnist.models.registry`
    uses_torch: ClassVar[bool]  # runs where `to_device` puts it (False: NumPy on the CPU)
    hparams: dict[str, Any]
    trust: Any  # once fitted (`fmnist.models.trust.calibrate`): the temperature and the unknown rule

    def to_device(self, device: str) -> str:
        """Run on `device` (a resolved kind: "cpu", "cuda", ...) from now on; returns the device used."""
        ...

    def fit(
        self,
        splits: Any,
        *,
        seed: int,
        progress: bool = True,
        resumer: Any = None,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> list[dict]:
        """Train on splits.x_train, select on splits.x_val (a `fmnist.data.dataset.Splits`); the per-epoch
        history rows. Fits the model's temperature and unknown rule on validation at the end."""
        ...

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 28, 28) -> float32 (N, 10), before the temperature."""
        ...

    def num_parameters(self) -> int: ...

    def save(self, folder: Path) -> None:
        """Weights (safetensors) and a JSON description into `folder`; never a pickle."""
        ...

    @classmethod
    def load(cls, folder: Path) -> "Classifier":
        """The model `save(folder)` wrote, verified."""
        ...


@runtime_checkable
class FeatureClassifier(Classifier, Protocol):
    """A classifier with a feature layer (the cnn and the hybrid): for the feature-space plot and the hybrid."""

    def features(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 28, 28) -> float32 (N, F), the layer before the classifier."""
        ...

    def logits_and_features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both in one pass: float32 (N, 10) and (N, F)."""
        ...
