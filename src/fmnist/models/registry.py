"""The table of models and the single source of their hyper-parameters.

Its keys are the CLI's choices; nothing else in the code asks which kind a model is. Each entry names the class
that implements it (imported only when needed, so `fmnist data ...` never loads torch), its hyper-parameters
(default, meaning, allowed values) and the presets that override them. The CLI's flags, their help and the
checks on every value, from the command line, a preset or a JSON file, all come from here.

Every model class answers the same small interface:
    cls(**hparams)                       missing ones take the registry's defaults; bad ones raise HparamError
    fit(splits, *, seed, progress=True, resumer=None) -> list of per-epoch history rows (see fmnist.engine.loop)
    predict_logits(images uint8 (N, 28, 28), tta=None) -> float32 (N, 10)   tta None: the model's own setting
    num_parameters() -> int
    save(folder) / cls.load(folder)
and the CNN also `features(images) -> float32 (N, D)`.
"""

import dataclasses
import importlib

from fmnist.errors import HparamError, UserError
from fmnist.models.hparams import (
    Hparam,
    loop_hparams,
    precision_hparam,
    scratch_hparams,
    torch_augment_hparams,
    torch_hparams,
)


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    target: str  # "module:Class"
    summary: str
    hparams: dict  # name -> Hparam
    presets: dict  # preset name -> {hparam: value}
    reuses: tuple = ()  # names of trained models passed to the constructor as keyword arguments
    search: dict = dataclasses.field(default_factory=dict)  # hparam -> Hparam.search, for `fmnist tune`
    check: object = None  # values -> None or (hparam, problem): a rule across hyper-parameters

    def __post_init__(self):
        # Each space lands on its Hparam, next to the default and bounds it must stay within.
        unknown = sorted(set(self.search) - set(self.hparams))
        if unknown:
            raise ValueError(f"{self.name}: search space for {unknown[0]!r}, not a hyper-parameter")
        hparams = {k: dataclasses.replace(h, search=self.search.get(k, h.search)) for k, h in self.hparams.items()}
        object.__setattr__(self, "hparams", hparams)

    def load_class(self):
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)

    def complete(self, given):
        """Defaults, then `given`; every value checked. Raises HparamError naming the first bad one."""
        unknown = sorted(set(given) - set(self.hparams))
        if unknown:
            raise HparamError(self.name, unknown[0], "not a hyper-parameter of this model")
        values = {name: h.default for name, h in self.hparams.items()}
        values.update({k: self.hparams[k].coerce(v) for k, v in given.items()})
        for name, value in values.items():
            if (problem := self.hparams[name].problem(value)) is not None:
                raise HparamError(self.name, name, problem)
        if self.check is not None and (fault := self.check(values)) is not None:
            raise HparamError(self.name, *fault)
        return values

    def resolve(self, preset="fast", overrides=None, where=None):
        """Defaults, then the preset, then explicit overrides (None means: not given); every value checked.
        where: the file the preset and overrides come from (errors then name it, as in `from_json`)."""
        if preset not in self.presets:
            shown = f"{where}: preset" if where else "preset"
            raise UserError(f"{shown} {preset!r}: choose one of {', '.join(self.presets)}")
        given = dict(self.presets[preset])
        given.update({k: v for k, v in (overrides or {}).items() if v is not None and k in self.hparams})
        return self.from_json(given, where)

    def from_json(self, hparams, where=None):
        """Hyper-parameters read back from JSON (which turns tuples into lists), checked. where: the file they
        come from; a bad value is then a UserError naming it and the entry (never a flag nobody passed)."""
        if where is None:
            return self.complete(hparams)
        if not isinstance(hparams, dict):
            raise UserError(f"{where}: hparams is not a JSON object")
        try:
            return self.complete(hparams)
        except HparamError as exc:
            problem = exc.message if len(exc.message) <= 200 else exc.message[:197] + "..."
            raise UserError(f"{where}: hparams.{exc.name}: {problem} (for a {self.name} model)") from None


def to_json(hparams):
    """Hyper-parameters as JSON keeps them: tuples as lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in hparams.items()}


CNN_ARCHS = {"whitened": 3, "plain": 5}  # fmnist.models.nets.CNNS and the widths each takes (torch not imported)


def _cnn_widths(values):
    arch, widths = values["arch"], values["widths"]
    if len(widths) != CNN_ARCHS[arch]:
        return "widths", f"{widths!r}: the {arch} CNN takes {CNN_ARCHS[arch]} widths"
    return None


REGISTRY = {
    "linear": Spec(
        name="linear",
        target="fmnist.models.classifiers:LinearClassifier",
        summary="multinomial logistic regression in torch (784 -> 10)",
        hparams={
            **loop_hparams(20, 256, 3e-3, 10, 0.25),
            **torch_hparams("adamw", 1e-4, 0.0),
            **precision_hparam("fp32"),
        },
        presets={"fast": {}, "best": {}},
        search={
            "lr": ("log", 3e-4, 3e-2),
            "weight_decay": ("log", 1e-6, 1e-2),
            "batch_size": ("choice", (128, 256, 512)),
        },
    ),
    "mlp": Spec(
        name="mlp",
        target="fmnist.models.classifiers:MLPClassifier",
        summary="multi-layer perceptron in torch (784 -> hidden... -> 10, ReLU, dropout)",
        hparams={
            "hidden": Hparam((512, 256), "hidden layer widths", 1, 65_536),
            "dropout": Hparam(0.2, "dropout probability after each hidden layer", 0, 0.99),
            **loop_hparams(30, 256, 2e-3, 8, 0.25),
            # no label smoothing: at 0.1 validation accuracy was the same but no temperature mended its
            # probabilities (calibrated validation NLL 0.290 vs 0.270; bench/NOTES.md, "The MLP's label smoothing")
            **torch_hparams("adamw", 1e-2, 0.0),
            **torch_augment_hparams(False, 0),
            **precision_hparam("fp32"),
        },
        presets={"fast": {}, "best": {}},
        search={
            "lr": ("log", 3e-4, 1e-2),
            "weight_decay": ("log", 1e-4, 1e-1),
            "dropout": ("float", 0.0, 0.5),
            "label_smoothing": ("float", 0.0, 0.2),
        },
    ),
    "cnn": Spec(
        name="cnn",
        target="fmnist.models.classifiers:CNNClassifier",
        summary="CNN: a whitened three-group network (fast) or five conv-BN-ReLU layers and a feature layer (best)",
        hparams={
            "arch": Hparam(
                "whitened",
                "whitened: frozen whitening stem, three conv groups, max-pool head (airbench-like); "
                "plain: five convolutions, dropout, a fully connected feature layer",
                choices=tuple(CNN_ARCHS),
            ),
            "widths": Hparam((32, 64, 128), "channels of the 3 groups (whitened) or 5 convolutions (plain)", 1, 4096),
            "pools": Hparam((1, 3, 5), "plain: the convolutions (1-5) followed by 2x2 max-pooling", 1, 5),
            "feature_dim": Hparam(128, "plain: size of the feature vector (before the classifier)", 1, 65_536),
            "dropout": Hparam(0.0, "plain: dropout probability before and after the feature layer", 0, 0.99),
            "tta": Hparam(
                1, "test-time augmentation when predicting: 0 none, 1 + mirror, 2 + mirror and 1 px moves", 0, 2
            ),
            **loop_hparams(11, 512, 0.5, 10, 0.23, "triangle"),
            **torch_hparams("sgd", 2e-3, 0.2, momentum=0.85, bias_lr=64.0, lookahead=5),
            **torch_augment_hparams(True, 1),
            **precision_hparam("auto"),
        },
        # fast: the airbench-like recipe screened on validation (bench/NOTES.md). best: two convolutions at full
        # resolution and wider late layers pay off given about 20 minutes (chosen on validation); bf16 where `auto`
        # picks it (bench/NOTES.md, "The best preset in bf16").
        presets={
            "fast": {},
            "best": {
                "arch": "plain",
                "widths": (16, 24, 48, 64, 128),
                "pools": (2, 4, 5),
                "feature_dim": 256,
                "dropout": 0.1,
                "epochs": 48,
                "batch_size": 256,
                "lr": 0.1,
                "warmup": 0.25,
                "weight_decay": 5e-4,
                "label_smoothing": 0.1,
                "schedule": "cosine",
                "momentum": 0.9,
                "bias_lr": 1.0,
                "lookahead": 0,
                "tta": 0,  # mirror averaging was chosen on validation for the whitened net only
            },
        },
        check=_cnn_widths,
        search={
            "lr": ("log", 0.05, 2.0),
            "weight_decay": ("log", 1e-4, 1e-2),
            "label_smoothing": ("float", 0.0, 0.3),
            "momentum": ("float", 0.7, 0.95),
        },
    ),
    "scratch-mlp": Spec(
        name="scratch-mlp",
        target="fmnist.models.scratch.classifier:ScratchClassifier",
        summary="MLP written from scratch in NumPy (784-128-10 ReLU, softmax cross-entropy)",
        hparams={
            **scratch_hparams((128,), 5e-4),
            **loop_hparams(30, 128, 1e-3, 10, 0.0),
            "flip": Hparam(False, "augment: mirror images left-right at random"),
            "shift": Hparam(0, "augment: random shifts of up to this many pixels", 0, 27),
            "shift_prob": Hparam(1.0, "augment: the fraction of images shifted (the others stay centred)", 0, 1),
        },
        # chosen on validation (bench/NOTES.md): best shifts half the images by up to 1 pixel for 120 epochs
        presets={
            "fast": {"epochs": 15},
            "best": {"epochs": 120, "shift": 1, "shift_prob": 0.5, "patience": 120},
        },
        search={
            "lr": ("log", 1e-4, 1e-2),
            "weight_decay": ("log", 1e-6, 1e-2),
            "batch_size": ("choice", (64, 128, 256)),
        },
    ),
    "hybrid": Spec(
        name="hybrid",
        target="fmnist.models.hybrid:HybridClassifier",
        summary="the CNN's features, standardised, classified by the from-scratch NumPy MLP",
        hparams={
            "cnn_preset": Hparam(
                "fast",
                "preset of the CNN trained first (unless compare passes its trained CNN)",
                choices=("fast", "best"),
            ),
            "tta": Hparam(1, "test-time augmentation when predicting, as the cnn's", 0, 2),
            **scratch_hparams((256,), 5e-4),
            **loop_hparams(20, 128, 1e-3, 10, 0.0),
        },
        presets={"fast": {}, "best": {"cnn_preset": "best", "tta": 0}},  # tta: chosen on the fast CNN's features
        reuses=("cnn",),
    ),
}


def spec(name):
    if name not in REGISTRY:
        raise UserError(f"model {name!r}: choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build(name, preset="fast", **overrides):
    """A new, untrained model from its registry entry: defaults, the preset, then `overrides`."""
    entry = spec(name)
    return entry.load_class()(**entry.resolve(preset, overrides))
