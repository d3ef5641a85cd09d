"""The hybrid: the CNN's feature vectors, standardised with train statistics, classified by the NumPy MLP.

The CNN is either trained here (with the registry's `cnn` preset named by `cnn_preset`) or passed in already
trained (`HybridClassifier(cnn=trained_cnn, ...)`), so `compare` reuses the CNN it trained in the same run.
Features of the train and validation images are extracted once; the scratch MLP trains on them.

Saved as a folder: cnn/ (the CNN's own save), mlp/ (the scratch MLP's own save), feature_stats.safetensors
(the standardisation) and model.json (the hybrid's hyper-parameters).
"""

import time
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file
from safetensors.numpy import save as safetensors_bytes

from fmnist.engine.augment import tta_logits
from fmnist.errors import UserError
from fmnist.files import atomic_path, read_versioned, write_json
from fmnist.models import registry, trust
from fmnist.models.classifiers import CNNClassifier
from fmnist.models.scratch.classifier import ScratchClassifier

NAME = "hybrid"
STATS = "feature_stats.safetensors"
METADATA = "model.json"
OWN_HPARAMS = ("cnn_preset", "tta")  # the hybrid's own; the others are its MLP's
FORMAT = "fmnist-hybrid/2"  # 2: the MLP's hyper-parameters all listed in the registry


class HybridClassifier:
    registry_name = NAME
    uses_torch = True  # its CNN runs where `to_device` puts it; the MLP in NumPy on the CPU
    trust = None  # the temperature and the unknown rule (fmnist.models.trust), set at the end of `fit`

    def __init__(self, cnn=None, **hparams):
        self.hparams = registry.spec(NAME).complete(hparams)
        self.cnn = cnn
        self.device = cnn.device if cnn is not None else "cpu"
        self.observers = ()  # watch the MLP's epochs (fmnist.engine.loop.LoopConfig.observers)
        # Every hyper-parameter but these is the MLP's: the registry lists them all for the hybrid.
        self.mlp = ScratchClassifier(**{k: v for k, v in self.hparams.items() if k not in OWN_HPARAMS})
        self.feature_mean = self.feature_std = None
        self.cnn_history = []  # the CNN's own history when it was trained here

    def to_device(self, device):
        """Run the CNN part on `device` from now on; returns it."""
        self.device = device
        if self.cnn is not None:
            self.cnn.to_device(device)
        return device

    def fit(self, splits, *, seed, progress=True, resumer=None, on_epoch=None):
        """Train the CNN unless one was given, then the scratch MLP on standardised CNN features.

        Returns the MLP's history; its `seconds` include the CNN's training (if done here) and the feature
        extraction, so they count the hybrid's whole training time. resumer, on_epoch: see `fmnist.engine.loop.fit`
        (on_epoch sees the MLP's epochs);
        an interruption during the MLP's training saves the CNN trained here with the MLP's state.
        """
        done = ((resumer and resumer.saved) or {}).get("cnn_trained")
        trained_here = self.cnn is None
        if trained_here:
            # a refit's CNN (keep "last") trains its preset's epochs on all its images, as the MLP does
            cnn_hparams = registry.spec("cnn").resolve(self.hparams["cnn_preset"], {"keep": self.hparams["keep"]})
            self.cnn = CNNClassifier(**cnn_hparams)
            self.cnn.to_device(self.device)
            if done is None:
                cnn_resumer = resumer.scoped("cnn") if resumer else None
                self.cnn_history = self.cnn.fit(splits, seed=seed, progress=progress, resumer=cnn_resumer)
            else:
                resumer.restore(lambda saved: self.cnn.restore(saved["cnn_trained"]["cnn"], splits))
                self.cnn_history = done["history"]
        # The CNN's own history counts its time across interrupted sessions; the features are extracted anew.
        start = time.perf_counter()
        train_features = self.cnn.features(splits.x_train)
        self.feature_mean = train_features.mean(axis=0)
        std = train_features.std(axis=0)
        # A feature that is constant on train (a ReLU unit that never fires) carries nothing: scale it by 1.
        self.feature_std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
        val_features = self.features(splits.x_val)
        before = time.perf_counter() - start + (self.cnn_history[-1]["seconds"] if self.cnn_history else 0.0)

        def cnn_trained():
            if not trained_here:
                return {}
            return {"cnn_trained": {"cnn": self.cnn.module.state_dict(), "history": self.cnn_history}}

        self.mlp.observers = self.observers
        history = self.mlp.fit_features(
            (self._standardise(train_features), splits.y_train),
            (val_features, splits.y_val),
            seed=seed,
            progress=progress,
            resumer=resumer.scoped("mlp", cnn_trained) if resumer else None,
            on_epoch=on_epoch,
        )
        trust.calibrate(self, splits)
        return [row | {"seconds": row["seconds"] + before} for row in history]

    def _standardise(self, features):
        return (features - self.feature_mean) / self.feature_std

    def _ready(self):
        if self.cnn is None or self.feature_mean is None:
            raise UserError(f"{NAME}: the model has not been trained or loaded")

    def features(self, images):
        """uint8 (N, 28, 28) -> float32 (N, D): the CNN's features, standardised as the MLP sees them."""
        self._ready()
        return self._standardise(self.cnn.features(images)).astype(np.float32)

    def predict_logits(self, images, tta=None):
        """uint8 (N, 28, 28) -> float32 (N, 10). tta: the test-time augmentation level (see
        `fmnist.engine.augment.tta_logits`); None: the `tta` hyper-parameter."""
        level = self.hparams["tta"] if tta is None else int(tta)
        logits = tta_logits(lambda x: self.mlp.logits_from_arrays(self.features(x)), np.asarray(images), level)
        return logits.astype(np.float32)

    def logits_and_features(self, images):
        """(predict_logits(images), features(images)), the features computed once (for the unknown rule)."""
        images = np.asarray(images)
        if self.hparams["tta"] > 1:
            return self.predict_logits(images), self.features(images)
        features = self.features(images)
        logits = self.mlp.logits_from_arrays(features)
        if self.hparams["tta"] == 1:
            mirrored = self.features(np.ascontiguousarray(images[:, :, ::-1]))
            logits = (logits + self.mlp.logits_from_arrays(mirrored)) / 2
        return logits.astype(np.float32), features

    def num_parameters(self):
        """Both parts: inference runs the CNN's feature layers and the MLP."""
        self._ready()
        return self.cnn.num_parameters() + self.mlp.num_parameters()

    def save(self, folder):
        self._ready()
        folder = Path(folder)
        self.cnn.save(folder / "cnn")
        self.mlp.save(folder / "mlp")
        with atomic_path(folder / STATS) as tmp:
            tmp.write_bytes(safetensors_bytes({"mean": self.feature_mean, "std": self.feature_std}))
        write_json(folder / METADATA, {"format": FORMAT, "hparams": registry.to_json(self.hparams)})

    @classmethod
    def load(cls, folder):
        folder = Path(folder)
        path = folder / METADATA
        meta = read_versioned(path, "format", FORMAT, missing=f"file not found (not a saved {NAME} model folder)")
        hparams = registry.spec(NAME).from_json(meta.get("hparams"), where=path)
        model = cls(cnn=CNNClassifier.load(folder / "cnn"), **hparams)
        model.mlp = ScratchClassifier.load(folder / "mlp")
        try:
            stats = load_file(str(folder / STATS))
            model.feature_mean, model.feature_std = stats["mean"], stats["std"]
        except (OSError, SafetensorError, KeyError) as exc:
            raise UserError(f"{folder / STATS}: cannot read the feature statistics ({exc})") from None
        width = model.mlp.mlp.layer_sizes[0]
        for key, low in (("mean", -np.inf), ("std", 0.0)):
            values = stats[key]
            if values.shape != (width,) or not np.isfinite(values).all() or not (values > low).all():
                raise UserError(
                    f"{folder / STATS}: {key} must be {width} finite numbers" + (" above 0" if low == 0 else "")
                )
        if model.mlp.hparams["hidden"] != hparams["hidden"]:
            raise UserError(f"{path}: hparams.hidden differs from the MLP's own model.json")
        return model
