"""The torch classifiers behind the registry entries `linear`, `mlp` and `cnn`: the model interface on top of
`fmnist.models.nets` (the networks), `fmnist.engine.torch_backend` and the shared loop.

A saved model is a folder: `weights.safetensors` (the state dict) and `model.json` (class, hyper-parameters,
normalisation statistics). Loading never unpickles anything. Weights are saved from the CPU and load on the CPU,
whatever device trained them; `to_device` moves a model (training and prediction then run there).
"""

import dataclasses
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from fmnist.engine import loop, precision
from fmnist.engine.augment import tta_logits
from fmnist.engine.torch_backend import TorchBackend, predict, to_tensor
from fmnist.errors import HparamError, UserError
from fmnist.files import (
    anything,
    atomic_path,
    mapping,
    number,
    read_versioned,
    shown,
    table,
    text,
    validated,
    write_json,
)
from fmnist.models import nets, registry, trust

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
    uses_torch = True  # runs where `to_device` puts it
    trust = None  # the temperature and the unknown rule (fmnist.models.trust), set at the end of `fit`

    def __init__(self, **hparams):
        self.hparams = registry.spec(self.registry_name).complete(hparams)
        self.mean, self.std = 0.0, 1.0
        self.device = "cpu"
        self.observers = ()  # called after every epoch of `fit` (fmnist.engine.loop.LoopConfig.observers)
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

    def to_device(self, device):
        """Run on `device` (a resolved kind: "cpu", "cuda", ...) from now on; returns the device used."""
        self.device = device
        self.module = self.module.to(device)
        return device

    def fit(self, splits, *, seed, progress=True, resumer=None, on_epoch=None):
        """Train on splits.x_train, validate on splits.x_val every epoch; returns the per-epoch history.

        resumer and on_epoch(row): see `fmnist.engine.loop.fit`.
        """
        self.mean, self.std = float(splits.mean), float(splits.std)
        device = self.device
        self.hparams = precision.settled(self.hparams, device)
        # The data cross to the device once, here; batches, augmentation and validation stay there.
        train = (to_tensor(splits.x_train, self.mean, self.std, device), torch.from_numpy(splits.y_train).to(device))
        val = (to_tensor(splits.x_val, self.mean, self.std, device), splits.y_val)
        config = loop.LoopConfig.from_hparams(self.registry_name, self.hparams, drop_last=True, progress=progress)
        config = dataclasses.replace(config, observers=tuple(self.observers))
        # A private RNG state: the seed fixes the initial weights and dropout without touching the caller's.
        with torch.random.fork_rng(devices=_rng_devices(device)):
            torch.manual_seed(seed)
            # Built on the CPU, from the CPU generator, then moved: the same initial weights on every device.
            self.module = self._placed(self.build_module()).to(device)
            if hasattr(self.module, "prepare"):  # e.g. whitening filters from the training images
                self.module.prepare(train[0][:PREPARE_IMAGES])
            backend_args = {"seed": seed, "fill": -self.mean / self.std, "channels_last": self.channels_last}
            backend_args["total_steps"] = config.epochs * config.steps_per_epoch(len(train[0]))
            if torch.distributed.is_initialized():  # launched by torchrun: this rank's share of every batch
                from fmnist.engine import parallel

                if device != "cpu":
                    raise UserError(f"--device {device}: data-parallel training (torchrun, gloo) runs on the CPU")
                backend, resumer = parallel.backend(self.module, self.hparams, resumer, **backend_args)
            else:
                backend = TorchBackend(self.module, self.hparams, **backend_args)
            backend.set_levels(self.mean, self.std)
            history = loop.fit(backend, train, val, config, resumer, on_epoch)
        trust.calibrate(self, splits)
        return history

    def restore(self, module_state, splits):
        """Become the model that `fit(splits, ...)` left with this state dict (for a resumed composite model)."""
        self.mean, self.std = float(splits.mean), float(splits.std)
        self.module.load_state_dict(module_state)

    def _run(self, images, method=None):
        """The module (or `method`) on uint8 images, on the model's device; the result on the CPU."""
        x = to_tensor(_as_images(images), self.mean, self.std, self.device)
        return predict(self.module, x, channels_last=self.channels_last, method=method).cpu()

    def predict_logits(self, images, tta=None):
        """uint8 (N, 28, 28) -> float32 (N, 10). tta: the test-time augmentation level (see
        `fmnist.engine.augment.tta_logits`); None: the model's own `tta` hyper-parameter (0 if it has none)."""
        level = self.hparams.get("tta", 0) if tta is None else int(tta)
        return tta_logits(lambda x: self._run(x).numpy(), _as_images(images), level)

    def num_parameters(self):
        return sum(p.numel() for p in self.module.parameters())

    def save(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}  # device-free
        with atomic_path(folder / WEIGHTS) as tmp:
            tmp.write_bytes(safetensors_bytes(tensors))  # bytes written by Python: a full disk is an OSError
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
        """The model `save(folder)` wrote. The hyper-parameters' shapes are compared with the weight file's
        header on torch's meta device first, so a tampered model.json cannot make it allocate a huge network."""
        folder = Path(folder)
        meta = read_metadata(folder, cls)
        hparams = registry.spec(cls.registry_name).from_json(meta["hparams"], where=folder / METADATA)
        try:
            with safe_open(str(folder / WEIGHTS), framework="pt") as fh:
                shapes = {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}  # noqa: SIM118
            with torch.device("meta"):
                expected = {k: tuple(v.shape) for k, v in cls(**hparams).module.state_dict().items()}
            if shapes != expected:
                raise UserError(
                    f"{folder / WEIGHTS}: weights do not fit the {cls.registry_name} model {METADATA} describes"
                )
            state = load_file(str(folder / WEIGHTS))
        except (OSError, SafetensorError) as exc:
            raise UserError(f"{folder / WEIGHTS}: cannot read weights ({exc})") from None
        bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
        if bad is not None:
            raise UserError(f"{folder / WEIGHTS}: {bad} holds NaN or infinite values")
        model = cls(**hparams)
        model.mean, model.std = float(meta["mean"]), float(meta["std"])
        try:
            model.module.load_state_dict(state)
        except RuntimeError as exc:
            raise UserError(f"{folder / WEIGHTS}: weights do not fit a {cls.registry_name} model ({exc})") from None
        return model


def _rng_devices(device):
    """The accelerators whose generators fork_rng keeps private (CUDA's current one; none on the CPU)."""
    return [torch.cuda.current_device()] if device == "cuda" else []


# Pixel statistics of the training images, scaled to [0, 1]: a std of 0 would divide by zero.
METADATA_SCHEMA = mapping(
    {"class": text(), "hparams": table(text(), anything), "mean": number(0, 1), "std": number(high=1, above=0)}
)


def read_metadata(folder, cls):
    path = Path(folder) / METADATA
    meta = read_versioned(path, "format", FORMAT, missing="file not found (not a saved model folder)")
    validated(path, meta, METADATA_SCHEMA)
    expected = f"{cls.__module__}:{cls.__qualname__}"
    if meta["class"] != expected:
        raise UserError(f"{path}: holds a {shown(meta['class'])} model, expected {expected}")
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
