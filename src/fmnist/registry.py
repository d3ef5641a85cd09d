"""The table of models. Its keys are the CLI's choices; nothing else in the code asks which kind a model is.

Each entry names the class that implements it (imported only when needed, so `fmnist data ...` never loads
torch), its hyper-parameters with defaults and help, and the presets that override them.

Every model class answers the same small interface:
    cls(**hparams)
    fit(splits, *, seed, progress=True) -> list of per-epoch history rows
    predict_logits(images uint8 (N, 28, 28)) -> float32 (N, 10)
    num_parameters() -> int
    save(folder) / cls.load(folder)
and the CNN also `features(images) -> float32 (N, D)`.
"""

import dataclasses
import importlib

from fmnist.errors import UserError


@dataclasses.dataclass(frozen=True)
class Spec:
    target: str  # "module:Class"
    summary: str
    hparams: dict  # name -> (default, help)
    presets: dict  # preset name -> {hparam: value}
    reuses: tuple = ()  # names of trained models passed to the constructor as keyword arguments

    def load_class(self):
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)

    def resolve(self, preset="fast", overrides=None):
        """Defaults, then the preset, then explicit overrides (None means: not given)."""
        if preset not in self.presets:
            raise UserError(f"preset {preset!r}: choose one of {', '.join(self.presets)}")
        values = {name: default for name, (default, _) in self.hparams.items()}
        values.update(self.presets[preset])
        values.update({k: v for k, v in (overrides or {}).items() if v is not None and k in self.hparams})
        return values


REGISTRY = {
    "scratch-mlp": Spec(
        target="fmnist.scratch.model:ScratchClassifier",
        summary="MLP written from scratch in NumPy (784-128-10 ReLU, softmax cross-entropy)",
        hparams={
            "hidden": ((128,), "hidden layer widths"),
            "epochs": (20, "maximum training epochs"),
            "batch_size": (128, "mini-batch size"),
            "lr": (1e-3, "peak learning rate"),
            "optimizer": ("adam", "sgd (Nesterov momentum) or adam"),
            "weight_decay": (0.0, "L2 weight decay"),
            "patience": (5, "epochs without validation improvement before stopping"),
        },
        presets={"fast": {}, "best": {}},
    ),
}


def spec(name):
    if name not in REGISTRY:
        raise UserError(f"model {name!r}: choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build(name, hparams):
    return spec(name).load_class()(**hparams)
