"""`ScratchClassifier`: the NumPy MLP behind the common model interface, and its weight files.

Two levels: `fit(splits, seed=...)` / `predict_logits(images)` work on uint8 images and standardise them with
the train-split statistics the model keeps; `fit_features` / `logits_from_arrays` work on any float (N, D)
features exactly as given, so a caller with its own features (the hybrid) brings its own standardisation.
Training is the shared loop (`fmnist.engine.loop`) driving a `NumpyBackend`: no torch anywhere.
"""

import itertools
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from safetensors.numpy import save as safetensors_bytes

from fmnist import files
from fmnist.data import dataset
from fmnist.engine import loop
from fmnist.errors import Diverged, UserError
from fmnist.models import registry, trust
from fmnist.models.scratch import augment
from fmnist.models.scratch.backend import NumpyBackend
from fmnist.models.scratch.mlp import MLP
from fmnist.models.scratch.optim import make_optimizer

NAME = "scratch-mlp"
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "model.json"
FORMAT = "fmnist-scratch-mlp/2"  # 2: the hyper-parameters of the shared loop (warmup as a fraction)


class ScratchClassifier:
    registry_name = NAME
    uses_torch = False  # NumPy: always on the CPU
    trust = None  # the temperature and the unknown rule (fmnist.models.trust), set at the end of `fit`

    def __init__(self, **hparams):
        self.hparams = registry.spec(NAME).complete(hparams)
        self.observers = ()  # called after every epoch of `fit` (fmnist.engine.loop.LoopConfig.observers)
        self.mlp = None
        self.mean = self.std = None  # pixel statistics of the train split, set by `fit`
        self.best_epoch = 0

    def to_device(self, device):
        """NumPy runs on the CPU whatever `device` says; returns "cpu" (the caller tells the user)."""
        return "cpu"

    # -- training ------------------------------------------------------------------------------------------

    def fit(self, splits, *, seed, progress=True, resumer=None, on_epoch=None):
        """Train on splits.x_train, validate on splits.x_val every epoch; returns the per-epoch history."""
        self.mean, self.std = float(splits.mean), float(splits.std)
        train = (dataset.normalise_flat(splits.x_train, self.mean, self.std), splits.y_train)
        val = (dataset.normalise_flat(splits.x_val, self.mean, self.std), splits.y_val)
        history = self.fit_features(train, val, seed=seed, progress=progress, resumer=resumer, on_epoch=on_epoch)
        trust.calibrate(self, splits)
        return history

    def fit_features(self, train, val, *, seed, progress=True, resumer=None, on_epoch=None):
        """Train on float features train = (x (N, D), int labels (N,)); validate on val = ((M, D), (M,)).

        Features are used as given (no standardisation). `seed` fixes the initialisation ([seed, 0]), the
        shuffle and the augmentation. Augmentation (the flip and shift hyper-parameters) needs images,
        x (N, 784), standardised with the model's `mean` and `std` (which `fit` sets). Returns the loop's history; the
        model ends with the weights of the best validation accuracy.
        """
        train, val = _as_features(*train, "training"), _as_features(*val, "validation")
        if train[0].shape[1] != val[0].shape[1]:
            raise ValueError(f"{NAME} features: training and validation widths differ")
        hp = self.hparams
        self.mlp = MLP([train[0].shape[1], *hp["hidden"], dataset.NUM_CLASSES], rng=np.random.default_rng([seed, 0]))
        optimizer = make_optimizer(hp["optimizer"], self.mlp.params, hp["lr"], hp["momentum"])
        backend = NumpyBackend(
            self.mlp, optimizer, weight_decay=hp["weight_decay"], seed=seed, augment=self._augmenter(train)
        )
        config = loop.LoopConfig.from_hparams(NAME, hp, progress=progress, observers=tuple(self.observers))
        try:
            history = loop.fit(backend, train, val, config, resumer, on_epoch)
        except Diverged as exc:
            self.best_epoch = exc.best_epoch
            raise
        self.best_epoch = loop.best_epoch(history)
        return history

    def _augmenter(self, train):
        hp = self.hparams
        if not (hp["flip"] or hp["shift"]):
            return None
        if train[0].shape[1] != augment.SIDE**2 or self.mean is None:
            raise ValueError(f"{NAME} flip/shift: augment images only, not feature arrays")
        fill = (0.0 - self.mean) / self.std  # a blank pixel, standardised
        return lambda x, rng: augment.augment(
            x, flip=hp["flip"], shift=hp["shift"], fill=fill, rng=rng, shift_prob=hp["shift_prob"]
        )

    # -- inference -----------------------------------------------------------------------------------------

    def _trained(self):
        if self.mlp is None:
            raise UserError(f"{NAME}: the model has not been trained or loaded")
        return self.mlp

    def logits_from_arrays(self, x):
        """Float features (N, D), already prepared as in `fit_features` -> float32 logits (N, 10)."""
        mlp = self._trained()
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != mlp.layer_sizes[0]:
            raise ValueError(f"{NAME} input: shape {x.shape}, expected (N, {mlp.layer_sizes[0]})")
        return mlp.logits(x)

    def _flat(self, images):
        if self.mean is None:
            raise UserError(f"{NAME}: trained on feature arrays, so it takes features (logits_from_arrays), not images")
        return dataset.normalise_flat(np.asarray(images), self.mean, self.std)

    def predict_logits(self, images):
        """uint8 images (N, 28, 28) -> float32 logits (N, 10)."""
        return self.logits_from_arrays(self._flat(images))

    def num_parameters(self):
        return self._trained().num_parameters()

    # -- weight files --------------------------------------------------------------------------------------

    def save(self, folder):
        """Write weights.safetensors and model.json (layer sizes, hparams, pixel statistics), each atomically."""
        mlp = self._trained()
        folder = Path(folder)
        tensors = {}
        for i, (w, b) in enumerate(zip(mlp.weights, mlp.biases, strict=True)):
            tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"] = w, b
        with files.atomic_path(folder / WEIGHTS_FILE) as tmp:
            tmp.write_bytes(safetensors_bytes(tensors, metadata={"format": FORMAT}))  # a full disk: an OSError
        meta = {
            "format": FORMAT,
            "layer_sizes": mlp.layer_sizes,
            "hparams": registry.to_json(self.hparams),
            "mean": self.mean,
            "std": self.std,
            "best_epoch": self.best_epoch,
        }
        files.write_json(folder / META_FILE, meta)

    @classmethod
    def load(cls, folder):
        """Rebuild a model written by `save`, bit for bit; every field and tensor checked before it is used."""
        folder = Path(folder)
        meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
        for path in (meta_path, weights_path):
            if not path.is_file():
                raise UserError(f"{path}: file not found (not a {NAME} model folder?)")
        meta = files.validated(meta_path, files.read_versioned(meta_path, "format", FORMAT), META_SCHEMA)
        hparams = registry.spec(NAME).from_json(meta["hparams"], where=meta_path)
        sizes = meta["layer_sizes"]
        if sizes[-1] != dataset.NUM_CLASSES or tuple(sizes[1:-1]) != tuple(hparams["hidden"]):
            raise UserError(f"{meta_path}: layer_sizes {files.shown(sizes)} do not match hparams.hidden and 10 classes")
        if (meta["mean"] is None) != (meta["std"] is None):
            raise UserError(f"{meta_path}: mean and std must both be numbers (images) or both null (features)")
        try:
            tensors = load_file(str(weights_path))
        except Exception as exc:  # safetensors raises its own error types for a damaged header
            raise UserError(f"{weights_path}: unreadable safetensors file ({exc})") from None
        names = [f"layers.{i}.{kind}" for i in range(len(sizes) - 1) for kind in ("weight", "bias")]
        shapes = [shape for n_in, n_out in itertools.pairwise(sizes) for shape in ((n_in, n_out), (n_out,))]
        if {k: t.shape for k, t in tensors.items()} != dict(zip(names, shapes, strict=True)):
            raise UserError(f"{weights_path}: tensors {files.shown(sorted(tensors))} do not match layer sizes {sizes}")
        if not all(np.isfinite(t).all() for t in tensors.values()):
            raise UserError(f"{weights_path}: holds NaN or infinite weights")
        model = cls(**hparams)
        model.mean, model.std, model.best_epoch = meta["mean"], meta["std"], meta["best_epoch"]
        model.mlp = MLP(sizes)
        try:
            model.mlp.set_params([tensors[name] for name in names])
        except ValueError as exc:
            raise UserError(f"{weights_path}: {exc}") from None
        return model


META_SCHEMA = files.mapping(
    {
        "layer_sizes": files.listing(files.whole(1, 65_536), low=2, high=66),
        "hparams": files.table(files.text(), files.anything),
        "mean": files.number(0, 1, null=True),  # pixel statistics; null for a model of feature arrays
        "std": files.number(high=1, above=0, null=True),
        "best_epoch": files.whole(0, 10_000),
    }
)


def _as_features(x, y, which):
    """Check and convert (N, D) features to float32 and (N,) labels to int64."""
    x, y = np.asarray(x), np.asarray(y)
    problem = None
    if x.ndim != 2 or len(x) == 0 or not np.issubdtype(x.dtype, np.floating):
        problem = f"features: shape {x.shape} dtype {x.dtype}, expected a non-empty float (N, D) array"
    elif y.shape != (len(x),) or y.min() < 0 or y.max() >= dataset.NUM_CLASSES:
        problem = f"labels: shape {y.shape}, expected ({len(x)},) classes 0-{dataset.NUM_CLASSES - 1}"
    if problem:
        raise ValueError(f"{NAME} {which} {problem}")
    return np.asarray(x, dtype=np.float32), y.astype(np.int64, copy=False)
