"""The table of models and the single source of their hyper-parameters.

Its keys are the CLI's choices; nothing else in the code asks which kind a model is. Each entry names the class
that implements it (imported only when needed, so `fmnist data ...` never loads torch), its hyper-parameters
(default, meaning, allowed values) and the presets that override them. The CLI's flags, their help and the
checks on every value, from the command line, a preset or a JSON file, all come from here.

Every model class answers the same small interface:
    cls(**hparams)                       missing ones take the registry's defaults; bad ones raise HparamError
    fit(splits, *, seed, progress=True, resumer=None) -> list of per-epoch history rows (see fmnist.engine.loop)
    predict_logits(images uint8 (N, 28, 28)) -> float32 (N, 10)
    num_parameters() -> int
    save(folder) / cls.load(folder)
and the CNN also `features(images) -> float32 (N, D)`.
"""

import dataclasses
import importlib
import math

from fmnist.errors import HparamError, UserError


@dataclasses.dataclass(frozen=True)
class Hparam:
    """One hyper-parameter: its default (whose type is the value's type), meaning and allowed values.

    low / high bound a number, or every entry of a tuple, inclusively; choices lists a string's values;
    length, if not 0, is the number of entries a tuple must have. search, if not empty, is where `fmnist tune`
    looks: ("log", low, high), ("float", low, high), ("int", low, high) or ("choice", (values...)).
    """

    default: object
    help: str
    low: float = -math.inf
    high: float = math.inf
    choices: tuple = ()
    length: int = 0
    search: tuple = ()

    def problem(self, value):
        """None if `value` is allowed, else why not (for an error message)."""
        kind = type(self.default)
        if kind is tuple:
            if not isinstance(value, tuple) or not value or (self.length and len(value) != self.length):
                return f"{value!r}: expected {self.length or 'one or more'} whole numbers"
            return next(filter(None, (self._number_problem(v, int) for v in value)), None)
        if kind is bool:
            return None if isinstance(value, bool) else f"{value!r}: expected true or false"
        if kind is str:
            return None if value in self.choices else f"{value!r}: choose one of {', '.join(self.choices)}"
        return self._number_problem(value, kind)

    def _number_problem(self, value, kind):
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
            return f"{value!r}: expected {'a whole number' if kind is int else 'a number'}"
        if not (math.isfinite(value) and self.low <= value <= self.high):
            return f"{value} is outside [{self.low:g}, {self.high:g}]"
        return None

    def allowed(self):
        """The allowed values in words, for --help: 'one of ...' or '[low, high]' ('' for a flag)."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if isinstance(self.default, bool):
            return ""
        return f"[{self.low:g}, {self.high:g}]" + (" each" if isinstance(self.default, tuple) else "")

    def coerce(self, value):
        """A value read back from JSON or a preset: lists become tuples, whole floats of int entries ints."""
        if isinstance(self.default, tuple) and isinstance(value, list | tuple):
            return tuple(value)
        if type(self.default) is int and isinstance(value, float) and value.is_integer():
            return int(value)
        return value


def loop_hparams(epochs, batch_size, lr, patience, warmup):
    """The hyper-parameters of the shared training loop (fmnist.engine.loop), with this model's defaults."""
    return {
        "epochs": Hparam(epochs, "maximum training epochs", 1, 10_000),
        "batch_size": Hparam(batch_size, "mini-batch size", 1, 65_536),
        "lr": Hparam(lr, "peak learning rate of the schedule", 1e-8, 100.0),
        "warmup": Hparam(warmup, "fraction of the steps spent warming the learning rate up linearly", 0.0, 0.9),
        "patience": Hparam(patience, "epochs without validation improvement before stopping", 1, 10_000),
    }


def torch_hparams(optimizer, weight_decay, label_smoothing):
    return {
        "optimizer": Hparam(optimizer, "sgd (Nesterov momentum 0.9) or adamw", choices=("sgd", "adamw")),
        "weight_decay": Hparam(weight_decay, "decoupled (AdamW) or L2 (SGD) weight decay, not on biases or BN", 0, 1),
        "label_smoothing": Hparam(label_smoothing, "label smoothing of the training loss", 0, 1),
    }


def torch_augment_hparams(flip, shift):
    return {
        "flip": Hparam(flip, "augment: mirror images left-right at random"),
        "shift": Hparam(shift, "augment: random shifts of up to this many pixels", 0, 27),
        "erase": Hparam(0.0, "augment: probability of erasing a random rectangle", 0, 1),
    }


def scratch_hparams(hidden, weight_decay):
    """The from-scratch MLP's own hyper-parameters (the scratch-mlp model and the hybrid's classifier)."""
    return {
        "hidden": Hparam(hidden, "hidden layer widths", 1, 65_536),
        "optimizer": Hparam("adam", "adam, sgd (heavy-ball momentum) or nesterov", choices=("adam", "sgd", "nesterov")),
        "momentum": Hparam(0.9, "momentum of sgd and nesterov", 0, 0.999),
        "weight_decay": Hparam(weight_decay, "L2 penalty on the weight matrices (0.5 * wd * sum of squares)", 0, 1),
        "schedule": Hparam("cosine", "learning rate per step: cosine (down to zero) or constant", choices=SCHEDULES),
    }


SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    target: str  # "module:Class"
    summary: str
    hparams: dict  # name -> Hparam
    presets: dict  # preset name -> {hparam: value}
    reuses: tuple = ()  # names of trained models passed to the constructor as keyword arguments
    search: dict = dataclasses.field(default_factory=dict)  # hparam -> Hparam.search, for `fmnist tune`

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
        return values

    def resolve(self, preset="fast", overrides=None):
        """Defaults, then the preset, then explicit overrides (None means: not given); every value checked."""
        if preset not in self.presets:
            raise UserError(f"preset {preset!r}: choose one of {', '.join(self.presets)}")
        given = dict(self.presets[preset])
        given.update({k: v for k, v in (overrides or {}).items() if v is not None and k in self.hparams})
        return self.complete(given)

    def from_json(self, hparams):
        """Hyper-parameters read back from JSON (which turns tuples into lists), checked."""
        return self.complete(hparams)


def to_json(hparams):
    """Hyper-parameters as JSON keeps them: tuples as lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in hparams.items()}


REGISTRY = {
    "linear": Spec(
        name="linear",
        target="fmnist.models.classifiers:LinearClassifier",
        summary="multinomial logistic regression in torch (784 -> 10)",
        hparams={**loop_hparams(20, 256, 3e-3, 10, 0.25), **torch_hparams("adamw", 1e-4, 0.0)},
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
            **torch_hparams("adamw", 1e-2, 0.1),
            **torch_augment_hparams(False, 0),
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
        summary="five-convolution CNN with batch norm, max-pooling, dropout and a feature layer",
        hparams={
            "widths": Hparam((16, 32, 32, 64, 64), "channels of the five convolutions", 1, 4096, length=5),
            "pools": Hparam((1, 3, 5), "the convolutions (1-5) followed by 2x2 max-pooling", 1, 5),
            "feature_dim": Hparam(128, "size of the feature vector (the layer before the classifier)", 1, 65_536),
            "dropout": Hparam(0.0, "dropout probability before and after the feature layer", 0, 0.99),
            **loop_hparams(18, 256, 0.1, 10, 0.25),
            **torch_hparams("sgd", 5e-4, 0.1),
            **torch_augment_hparams(True, 1),
        },
        # best: two convolutions at full resolution and wider late layers pay off given about 20 minutes
        # (chosen on validation; see the README's figures)
        presets={
            "fast": {},
            "best": {
                "widths": (16, 24, 48, 64, 128),
                "pools": (2, 4, 5),
                "feature_dim": 256,
                "dropout": 0.1,
                "epochs": 48,
            },
        },
        search={
            "lr": ("log", 0.01, 0.3),
            "weight_decay": ("log", 1e-5, 2e-3),
            "dropout": ("float", 0.0, 0.3),
            "label_smoothing": ("float", 0.0, 0.2),
            "feature_dim": ("choice", (64, 128, 256)),
        },
    ),
    "scratch-mlp": Spec(
        name="scratch-mlp",
        target="fmnist.scratch.classifier:ScratchClassifier",
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
            **scratch_hparams((256,), 5e-4),
            **loop_hparams(20, 128, 1e-3, 10, 0.0),
        },
        presets={"fast": {}, "best": {"cnn_preset": "best"}},
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
