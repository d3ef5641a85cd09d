"""The torch classifiers behind the registry entries `linear`, `mlp` and `cnn`: the model interface on top of
`fmnist.models.nets` (the networks), `fmnist.models.torch_backend` and the shared loop.

A saved model is a folder: `weights.safetensors` (the state dict) and `model.json` (class, hyper-parameters,
normalisation statistics). Loading never unpickles anything.
"""

from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fmnist.engine import loop, precision
from fmnist.errors import HparamError, UserError
from fmnist.files import atomic_path, read_json, write_json
from fmnist.models import nets, registry, trust
from fmnist.models.augment import tta_logits
from fmnist.models.torch_backend import TorchBackend, predict, to_tensor

WEIGHTS = "weights.safetensors"
METADATA = "model.json"
PREPARE_IMAGES = 5000  # what a network derives from the training images (whitening) needs no more
FORMAT = 3  # 2: classes under fmnist.models, the shared loop's hyper-parameters; 3: the 3x3 whitening stem


def _as_images(images):
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise UserError(f"images: expected uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    return images


class TorchClassifier:
    """Common behaviour; a subclass names its registry entry and builds its network from the hyper-parameters."""

    registry_name = ""
    channels_last = False
    trust = None  # the temperature and the unknown rule (fmnist.models.trust), set at the end of `fit`

    def __init__(self, **hparams):
        self.hparams = registry.spec(self.registry_name).complete(hparams)
        self.mean, self.std = 0.0, 1.0
        try:
            self.module = self._placed(self.build_module())
        except (ValueError, TypeError, RuntimeError) as exc:
            # a network names the argument at fault first ("widths: ..."): the error names that flag
            name, _, problem = str(exc).partition(": ")
            name, problem = (name, problem) if name in self.hparams else ("hyper-parameters", str(exc))
            raise HparamError(self.registry_name, name, problem) from exc

    def build_module(self):
        raise NotImplementedError

    def _placed(self, module):
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def fit(self, splits, *, seed, progress=True, resumer=None, on_epoch=None):
        """Train on splits.x_train, validate on splits.x_val every epoch; returns the per-epoch history.

        resumer and on_epoch(row): see `fmnist.engine.loop.fit`.
        """
        self.mean, self.std = float(splits.mean), float(splits.std)
        self.hparams = precision.settled(self.hparams)
        train = (to_tensor(splits.x_train, self.mean, self.std), torch.from_numpy(splits.y_train))
        val = (to_tensor(splits.x_val, self.mean, self.std), splits.y_val)
        config = loop.LoopConfig.from_hparams(self.registry_name, self.hparams, drop_last=True, progress=progress)
        # A private RNG state: the seed fixes the initial weights and dropout without touching the caller's.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = self._placed(self.build_module())
            if hasattr(self.module, "prepare"):  # e.g. whitening filters from the training images
                self.module.prepare(train[0][:PREPARE_IMAGES])
            backend_args = {"seed": seed, "fill": -self.mean / self.std, "channels_last": self.channels_last}
            backend_args["total_steps"] = config.epochs * config.steps_per_epoch(len(train[0]))
            if torch.distributed.is_initialized():  # launched by torchrun: this rank's share of every batch
                from fmnist.models import parallel

                backend, resumer = parallel.wrap(self.module, self.hparams, resumer, **backend_args)
            else:
                backend = TorchBackend(self.module, self.hparams, **backend_args)
            history = loop.fit(backend, train, val, config, resumer, on_epoch)
        trust.calibrate(self, splits)
        return history

    def restore(self, module_state, splits):
        """Become the model that `fit(splits, ...)` left with this state dict (for a resumed composite model)."""
        self.mean, self.std = float(splits.mean), float(splits.std)
        self.module.load_state_dict(module_state)

    def _run(self, images, method=None):
        x = to_tensor(_as_images(images), self.mean, self.std)
        return predict(self.module, x, channels_last=self.channels_last, method=method)

    def predict_logits(self, images, tta=None):
        """uint8 (N, 28, 28) -> float32 (N, 10). tta: the test-time augmentation level (see
        `fmnist.models.augment.tta_logits`); None: the model's own `tta` hyper-parameter (0 if it has none)."""
        level = self.hparams.get("tta", 0) if tta is None else int(tta)
        return tta_logits(lambda x: self._run(x).numpy(), _as_images(images), level)

    def num_parameters(self):
        return sum(p.numel() for p in self.module.parameters())

    def save(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in self.module.state_dict().items()}
        with atomic_path(folder / WEIGHTS) as tmp:
            save_file(tensors, str(tmp))
        meta = {
            "format": FORMAT,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "hparams": registry.to_json(self.hparams),
            "mean": self.mean,
            "std": self.std,
        }
        write_json(folder / METADATA, meta)

    @classmethod
    def load(cls, folder):
        folder = Path(folder)
        meta = read_metadata(folder, cls)
        model = cls(**registry.spec(cls.registry_name).from_json(meta["hparams"]))
        model.mean, model.std = float(meta["mean"]), float(meta["std"])
        try:
            state = load_file(str(folder / WEIGHTS))
        except (OSError, SafetensorError) as exc:
            raise UserError(f"{folder / WEIGHTS}: cannot read weights ({exc})") from exc
        try:
            model.module.load_state_dict(state)
        except RuntimeError as exc:
            raise UserError(f"{folder / WEIGHTS}: weights do not fit a {cls.registry_name} model ({exc})") from exc
        return model


def read_metadata(folder, cls):
    path = Path(folder) / METADATA
    meta = read_json(path, "file not found (not a saved model folder)")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise UserError(f"{path}: format {found!r}, this version reads format {FORMAT} (retrain the model)")
    expected = f"{cls.__module__}:{cls.__qualname__}"
    if meta.get("class") != expected:
        raise UserError(f"{path}: holds a {meta.get('class')!r} model, expected {expected}")
    return meta


class LinearClassifier(TorchClassifier):
    registry_name = "linear"

    def build_module(self):
        return nets.Linear()


class MLPClassifier(TorchClassifier):
    registry_name = "mlp"

    def build_module(self):
        return nets.MLP(tuple(self.hparams["hidden"]), self.hparams["dropout"])


class CNNClassifier(TorchClassifier):
    registry_name = "cnn"
    channels_last = True  # twice the batched inference speed (bench/NOTES.md)

    def build_module(self):
        return nets.CNNS[self.hparams["arch"]].from_hparams(self.hparams)

    def features(self, images):
        """uint8 (N, 28, 28) -> float32 (N, D): the vector the classifier (the last linear layer) reads."""
        return self._run(images, method=self.module.features).numpy()

    def logits_and_features(self, images):
        """(predict_logits(images), features(images)) with one pass of the network per view, not two: what the
        unknown rule needs when serving (the logits agree with `predict_logits` to float rounding)."""
        images = _as_images(images)
        level = self.hparams.get("tta", 0)
        if level > 1:
            return self.predict_logits(images), self.features(images)
        features = self._run(images, method=self.module.features)
        with torch.inference_mode():
            logits = self.module.head(features)
            if level == 1:
                mirrored = self._run(np.ascontiguousarray(images[:, :, ::-1]), method=self.module.features)
                logits = (logits + self.module.head(mirrored)) / 2
        return logits.numpy(), features.numpy()
