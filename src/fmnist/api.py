"""The Python API: what a notebook or a script needs to train, compare, explain and use the models.

    from fmnist import api
    splits = api.load_splits(seed=0)                   # the verified 48,000 / 12,000 / 10,000 split
    cnn = api.fit(api.model("cnn"), splits)            # any registry model, its preset, any hyper-parameter
    result = api.evaluate(cnn, splits)                 # the report's metrics: accuracy, F1, confusion, ...
    api.learning_curves(cnn)                           # a matplotlib Figure: shown inline in Jupyter

Every model is trained by the same code as `fmnist train` (the same classes, seeds, threads and precision), so the same
model, preset and seed give the same accuracy here and on the command line. Figures are returned, never shown
or saved behind your back: `fig.savefig("file.png")` writes one. Mistakes raise `fmnist.errors.UserError` with a
one-line message naming the thing at fault.

This is the only module of the API that reaches into fmnist's internals; scripts and notebooks import it, not them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from tqdm.auto import tqdm

from fmnist.data import dataset as data
from fmnist.data.dataset import CLASS_NAMES
from fmnist.errors import UserError
from fmnist.jobs import compare as compare_runs
from fmnist.jobs import settings, train
from fmnist.models import registry, trust
from fmnist.models.contracts import Classifier
from fmnist.predict import answers, images, sets
from fmnist.predict.explain import attribute as explain_module
from fmnist.report import attributions, plots, tables
from fmnist.report import trust as trust_report
from fmnist.rundir import checkpoint, layout

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from fmnist.predict.explain.attribute import Explanation, Target

__all__ = [
    "CLASS_NAMES",
    "Model",
    "assess",
    "calibration",
    "compare",
    "confusion_matrix",
    "convergence",
    "evaluate",
    "examples",
    "explain",
    "explanation_checks",
    "explanation_figure",
    "feature_space",
    "fit",
    "learning_curves",
    "load",
    "load_splits",
    "misclassified",
    "model",
    "predict",
    "predict_image",
    "prediction_figure",
    "prediction_sets",
    "probabilities",
    "table",
    "templates",
    "vectors",
]


@dataclasses.dataclass
class Model:
    """A registry model by name, with its settings and, once trained or loaded, its per-epoch history.

    Attributes:
        name: the registry name (linear, mlp, cnn, scratch-mlp, hybrid).
        preset: `fast` or `best`.
        hparams: every hyper-parameter's value.
        classifier: the model object itself: `predict_logits(images)`, `save(folder)`, and `features(images)`
            for the CNN and the hybrid.
        reuses: trained models this one builds on (the hybrid's CNN).
        history: column (epoch, loss, accuracy, val_loss, val_accuracy, seconds, lr) -> float64 (epochs,);
            None until trained.
        train_seconds: the training time; None until trained.
        seed: the seed it was trained with.
    """

    name: str
    preset: str
    hparams: dict[str, Any]
    classifier: Classifier
    reuses: dict[str, Model] = dataclasses.field(default_factory=dict)  # registry name -> trained Model for the class
    history: dict[str, np.ndarray] | None = None
    train_seconds: float | None = None
    seed: int | None = None

    def __repr__(self) -> str:
        state = f"trained, {len(self.history['epoch'])} epochs" if self.history else "not trained"
        return f"Model({self.name!r}, preset={self.preset!r}, {state})"


def load_splits(seed: int = 0, subset: int | None = None, data_dir: str | Path | None = None) -> data.Splits:
    """The verified dataset split as `fmnist train --seed SEED [--subset N]` splits it.

    Args:
        seed: the seed of the stratified 80/20 train / validation split.
        subset: train on the first `subset` images and validate and test on a quarter as many (a quick look);
            None: all of them.
        data_dir: the folder of the four IDX files (default: `$FMNIST_DATA_DIR`, the Debian package, then
            `~/.cache/fmnist`).

    Returns:
        A `fmnist.data.dataset.Splits`: `x_train`, `x_val`, `x_test` uint8 images (N, 28, 28), `y_train`,
        `y_val`, `y_test` int64 labels (N,); `mean` and `std`, the train pixels' statistics.

    Raises:
        UserError: the files are missing or fail their checks.
    """
    splits = data.split(data.load(data_dir), seed)
    return splits.quick(subset) if subset else splits


def model(name: str, preset: str = "fast", **hparams: Any) -> Model:
    """An untrained model of the registry with its preset's hyper-parameters.

    Args:
        name: linear, mlp, cnn, scratch-mlp or hybrid.
        preset: `fast` or `best`.
        **hparams: hyper-parameters that override the preset's (e.g. `epochs=5`; None keeps the preset's
            value). The hybrid accepts `cnn=` a trained CNN `Model`, whose features it then uses instead of
            training its own CNN.

    Returns:
        A `Model`, not trained yet.

    Raises:
        UserError: an unknown model, preset or hyper-parameter, or a value out of its range.
    """
    spec = registry.spec(name)
    reuses = {key: hparams.pop(key) for key in spec.reuses if hparams.get(key) is not None}
    for key, reused in reuses.items():
        if not isinstance(reused, Model) or reused.name != key or not reused.history:
            raise UserError(f"{name} {key}=: expected a trained {key!r} Model, got {reused!r}")
    unknown = sorted(set(hparams) - set(spec.hparams))
    if unknown:
        raise UserError(f"{name}: unknown hyper-parameter {unknown[0]!r} (known: {', '.join(spec.hparams)})")
    values = spec.resolve(preset, hparams)
    return Model(name, preset, values, _build(name, values, reuses), reuses)


def _build(name, hparams, reuses):
    """The model object, constructed as `fmnist train` constructs it."""
    return registry.spec(name).load_class()(**hparams, **{key: m.classifier for key, m in reuses.items()})


def _check_splits(splits):
    if not isinstance(splits, data.Splits):
        raise UserError(f"splits: expected the result of api.load_splits(), got {type(splits).__name__}")


def _history_columns(rows):
    return {key: np.array([row[key] for row in rows], dtype=np.float64) for key in layout.HISTORY_COLUMNS}


def fit(
    model: Model,
    splits: data.Splits,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = None,
    device: str = "auto",
) -> Model:
    """Train `model` from scratch on `splits.x_train`, choosing its best epoch on `splits.x_val`.

    The same model, preset and seed give the same weights here and with `fmnist train`: threads and precision
    are settled as there. The model's temperature and unknown-input rule are fitted on validation at the end.

    Args:
        model: from `model()`.
        splits: from `load_splits()`.
        seed: fixes the initial weights, the batch order and the augmentation, as `fmnist train --seed` does.
        progress: show a progress bar (a widget in Jupyter, text in a terminal).
        threads: torch threads (default: as `fmnist train` chooses them).
        device: auto, cpu, cuda, mps or xpu, as `fmnist train --device` (the NumPy models stay on the CPU).

    Returns:
        The same `Model`, trained: `history` holds one float64 value per epoch for each column (epoch, loss,
        accuracy, val_loss, val_accuracy, seconds, lr); `train_seconds` the training time.
    """
    if not isinstance(model, Model):
        raise UserError(f"model: expected the result of api.model(), got {type(model).__name__}")
    _check_splits(splits)
    setup = settings.for_splits(splits, seed=seed, threads=threads, progress=progress)
    model.classifier = _build(model.name, model.hparams, model.reuses)
    model.classifier.to_device(train.model_device(registry.spec(model.name), device))
    start = time.perf_counter()
    rows = train.fit_model(model.classifier, setup)
    model.train_seconds = time.perf_counter() - start
    model.history, model.seed = _history_columns(rows), seed
    return model


def compare(
    names: str | Iterable[str],
    splits: data.Splits,
    preset: str = "fast",
    seed: int = 0,
    progress: bool = True,
    **hparams: Any,
) -> dict[str, Model]:
    """Train several models on the same split, as `fmnist compare` does.

    Args:
        names: model names, a list or a comma-separated string; trained in registry order, so that the hybrid
            reuses the CNN trained here.
        splits: from `load_splits()`.
        preset: `fast` or `best`, for every model.
        seed: as `fit`'s.
        progress: show progress bars.
        **hparams: applied to every model that has them (e.g. `epochs=5` caps every model).

    Returns:
        `{name: trained Model}` in training order.

    Raises:
        UserError: an unknown model, or a hyper-parameter no model named has.
    """
    names = compare_runs.parse_models(names if isinstance(names, str) else ",".join(names))
    unknown = sorted(set(hparams).difference(*(registry.spec(name).hparams for name in names)))
    if unknown:
        raise UserError(f"compare: no model among {', '.join(names)} has a hyper-parameter {unknown[0]!r}")
    trained: dict[str, Model] = {}
    for name in tqdm(names, desc="models", unit="model", disable=not progress):
        spec = registry.spec(name)
        reused = {key: trained[key] for key in spec.reuses if key in trained}
        given = {key: value for key, value in hparams.items() if key in spec.hparams}
        trained[name] = fit(model(name, preset, **given, **reused), splits, seed=seed, progress=progress)
    return trained


def load(run_dir: str | Path, device: str = "auto") -> Model:
    """A model saved by `fmnist train` or `fmnist compare`, its checksums verified.

    Args:
        run_dir: a `fmnist train` run directory, or one model's folder of a `fmnist compare` run.
        device: where to place it, as `fit`'s.

    Returns:
        The trained `Model` with its recorded history, settings, training time and seed.

    Raises:
        UserError: the folder is not a run, or a file fails its checks.
    """
    classifier, manifest = checkpoint.load(run_dir, calibrated=True)
    classifier.to_device(train.model_device(registry.spec(manifest["kind"]), device))
    folder = checkpoint.resolve(run_dir)
    saved = layout.load_model_run(folder, manifest["kind"], "rerun `fmnist train`")
    config = saved.config
    hparams = registry.spec(saved.name).from_json(config["hparams"], where=folder / layout.CONFIG)
    loaded = Model(saved.name, config.get("preset", "fast"), hparams, classifier, history=saved.history)
    loaded.train_seconds, loaded.seed = float(saved.metrics["train_seconds"]), config["seed"]
    return loaded


def _trained(model: Model) -> Classifier:
    if not isinstance(model, Model):
        raise UserError(f"model: expected an api Model, got {type(model).__name__}")
    if model.history is None:
        raise UserError(f"{model.name}: not trained yet — call api.fit(model, splits) or api.load(run_dir)")
    return model.classifier


def probabilities(model: Model, images: np.ndarray) -> np.ndarray:
    """Calibrated class probabilities: softmax(logits / T), T the temperature `fit` set on validation.

    Args:
        model: a trained `Model`.
        images: uint8 (N, 28, 28), or one (28, 28) image.

    Returns:
        float64 (N, 10); row i sums to 1, and its argmax is the model's own prediction.
    """
    return answers.probabilities(_trained(model), _images(images))


def assess(model: Model, images: np.ndarray) -> trust.Assessment:
    """What the model says about images: calibrated probabilities and the unknown verdict.

    Args:
        model: a trained `Model`.
        images: uint8 (N, 28, 28), or one (28, 28) image.

    Returns:
        A `fmnist.models.trust.Assessment`: `probs` float64 (N, 10) calibrated, `ood_score` float64 (N,)
        (higher: less like clothing) and `unknown` bool (N,), True where an image does not look like any class.
    """
    return answers.assess(_trained(model), _images(images))


def predict(model: Model, images: np.ndarray) -> np.ndarray:
    """Predicted classes.

    Args:
        model: a trained `Model`.
        images: uint8 (N, 28, 28), or one (28, 28) image.

    Returns:
        int64 (N,) class indices; `CLASS_NAMES[i]` names class i.
    """
    return probabilities(model, images).argmax(axis=1)


def prediction_sets(model: Model, images: np.ndarray, coverage: float = sets.DEFAULT) -> np.ndarray:
    """Prediction sets: the classes that hold the true class at a stated coverage, for every class.

    Class-conditional split conformal from the validation scores `fit` stored: for images like the validation
    ones, each class's true images are covered at least `coverage` of the time. Any level, no refit. A row may be
    empty (no class typical enough at that level). A mask composes with NumPy:
    `mask[np.arange(n), labels].mean()` is the coverage, `mask.sum(1)` the sizes.

    Args:
        model: a trained `Model` (fitted or loaded by this fmnist).
        images: uint8 (N, 28, 28), or one (28, 28) image.
        coverage: the level, strictly between 0 and 1 (default 0.95).

    Returns:
        bool (N, 10): row i marks image i's set; `CLASS_NAMES[c]` names class c.
    """
    try:
        level = sets.coverage_value(coverage)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    classifier = _trained(model)
    mask = sets.mask(classifier, answers.assess(classifier, _images(images)), level)
    if mask is None:
        raise UserError(f"{model.name}: no prediction sets (made by an older fmnist); api.fit it again")
    return mask


def _images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) as given, or one (28, 28) image as a batch of one."""
    given = np.asarray(images)
    batch = given[None] if given.ndim == 2 else given
    if batch.dtype != np.uint8 or batch.shape[1:] != (data.SIDE, data.SIDE):
        raise UserError(f"images: expected uint8 (N, 28, 28) or (28, 28), got {given.dtype} {given.shape}")
    return batch


def evaluate(model: Model, splits: data.Splits) -> dict[str, Any]:
    """The report's figures for one model, what its `metrics.json` holds.

    Args:
        model: a trained `Model`.
        splits: the split it was trained on.

    Returns:
        A dict: `val_accuracy` and `test_accuracy` (floats in [0, 1]), `parameters`, `train_seconds`, `epochs`,
        `inference_images_per_s`, and under `"val"` and `"test"` the detailed metrics: accuracy, log-loss,
        per-class and macro precision / recall / F1, the confusion matrix (10 x 10 counts), the most-confused
        pairs; `calibration` and `unknown` for a calibrated model.
    """
    classifier = _trained(model)
    _check_splits(splits)
    facts = {"model": model.name, "parameters": int(classifier.num_parameters())}
    history = cast("dict[str, np.ndarray]", model.history)  # not None: _trained checked it
    facts |= {"train_seconds": model.train_seconds, "epochs": len(history["epoch"])}
    return train.measure(classifier, splits, facts)[1]


def table(results: dict[str, dict[str, Any]]) -> str:
    """The `fmnist compare` table as text.

    Args:
        results: `{name: evaluate(...)}`.

    Returns:
        The table, one line per model.
    """
    return tables.comparison(results)


def vectors(images: np.ndarray, splits: data.Splits) -> np.ndarray:
    """Images as the MLPs see them: flattened and standardised with the train split's pixel statistics.

    Args:
        images: uint8 (N, 28, 28), or one (28, 28) image.
        splits: the split whose `mean` and `std` standardise them.

    Returns:
        float32 (N, 784).
    """
    return data.normalise_flat(_images(images), splits.mean, splits.std)


def predict_image(
    model: Model, path: str | Path, top_k: int = 3, box: tuple[int, int, int, int] | None = None
) -> answers.Prediction:
    """Classify an image file, converted to 28x28 the way Fashion-MNIST was made from product photos (a photo
    that is not a plain-background product shot has its garment cut out first).

    Args:
        model: a trained `Model`.
        path: any format Pillow reads (PNG, JPEG, GIF, BMP, TIFF, WebP, ...).
        top_k: how many classes to return.
        box: (x0, y0, x1, y1), where the garment is, in the photo's pixels; None: found by the cut-out.

    Returns:
        A `fmnist.predict.answers.Prediction`: `path`, `image` (the uint8 (28, 28) the model saw), `top`
        (`((class index, probability), ...)`, most probable first), `unknown`, and `cutout` (the garment on
        white, or None).

    Raises:
        UserError: the file is missing or not a usable image.
    """
    predictions, failures = answers.predict_files(_trained(model), [path], top_k, box=box)
    if failures:
        raise failures[0]
    return predictions[0]


# -- figures: each returns a matplotlib Figure ----------------------------------------------------------------


def examples(splits: data.Splits, per_class: int = 8, seed: int = 0) -> Figure:
    """A grid of random training images, one row per class.

    Args:
        splits: from `load_splits()`.
        per_class: images per row.
        seed: which images.

    Returns:
        A matplotlib `Figure`.
    """
    return plots.class_grid(splits.x_train, splits.y_train, per_class=per_class, seed=seed)


def learning_curves(model: Model) -> Figure:
    """Train and validation loss and accuracy per epoch.

    Args:
        model: a trained `Model`.

    Returns:
        A matplotlib `Figure`.
    """
    _trained(model)
    return plots.learning_curves(model.history, f"{model.name}: learning curves")


def convergence(models: dict[str, Model]) -> Figure:
    """Validation accuracy of several models per epoch and per second of training.

    Args:
        models: `{name: trained Model}`.

    Returns:
        A matplotlib `Figure`.
    """
    for m in models.values():
        _trained(m)
    return plots.convergence({name: m.history for name, m in models.items()})


def confusion_matrix(result: dict[str, Any], split: str = "test") -> Figure:
    """Counts and row-normalised confusion matrix of an `evaluate` result.

    Args:
        result: from `evaluate()`.
        split: `val` or `test`.

    Returns:
        A matplotlib `Figure`.
    """
    if split not in layout.SPLITS:
        raise UserError(f"split {split!r}: choose one of {', '.join(layout.SPLITS)}")
    title = f"{result['model']}: {split} confusion matrix"
    return plots.confusion(result[split]["confusion_matrix"], title)


def calibration(model: Model, splits: data.Splits, split: str = "test") -> Figure:
    """The reliability diagram of the model's top-1 probabilities, before and after its temperature.

    Args:
        model: a trained, calibrated `Model`.
        splits: the split it was trained on.
        split: `val` or `test`.

    Returns:
        A matplotlib `Figure`.
    """
    classifier = _trained(model)
    _check_splits(splits)
    if split not in layout.SPLITS:
        raise UserError(f"split {split!r}: choose one of {', '.join(layout.SPLITS)}")
    record = trust.of(classifier)
    if record is None:
        raise UserError(f"{model.name}: not calibrated (made by an older fmnist); api.fit it again")
    images, labels = (splits.x_test, splits.y_test) if split == "test" else (splits.x_val, splits.y_val)
    logits = classifier.predict_logits(images)
    title = f"{model.name}: reliability ({split})"
    return trust_report.reliability_figure(logits, labels, record["temperature"], title)


def misclassified(model: Model, splits: data.Splits, count: int = 24) -> Figure | None:
    """The model's most confident mistakes on the test split.

    Args:
        model: a trained `Model`.
        splits: the split it was trained on.
        count: how many mistakes to show.

    Returns:
        A matplotlib `Figure`, or None if the model makes no mistake.
    """
    probs = probabilities(model, splits.x_test)
    title = f"{model.name}: most confident test mistakes"
    return plots.misclassified(splits.x_test, splits.y_test, probs, title, count=count)


def feature_space(model: Model, splits: data.Splits, sample: int = train.FEATURE_SAMPLE, seed: int = 0) -> Figure:
    """The feature vectors of test images in 2-D (PCA and t-SNE), coloured by class.

    Args:
        model: a trained `Model` with a feature layer (the cnn or the hybrid).
        splits: the split it was trained on.
        sample: how many test images.
        seed: which images, and t-SNE's seed.

    Returns:
        A matplotlib `Figure`.
    """
    classifier = _trained(model)
    if not hasattr(classifier, "features"):
        raise UserError(f"{model.name}: has no feature layer (the cnn and the hybrid have one)")
    pick = np.random.default_rng(seed).permutation(len(splits.x_test))[:sample]
    features = classifier.features(splits.x_test[pick])
    return plots.feature_space(features, splits.y_test[pick], f"{model.name}: feature space by class", seed=seed)


def prediction_figure(prediction: answers.Prediction) -> Figure:
    """What `predict_image` saw (the 28x28 image) beside its top classes and their probabilities.

    Args:
        prediction: from `predict_image()`.

    Returns:
        A matplotlib `Figure`.
    """
    title = images.shown(prediction.path.name)
    if prediction.unknown:
        title += f": unknown, {answers.UNKNOWN_TEXT}"
    return plots.prediction(prediction.image, prediction.top, title)


def explain(model: Model, images: np.ndarray, method: str | None = None, target: Target = None) -> Explanation:
    """Why the model decided: an attribution map per image.

    Args:
        model: a trained `Model`.
        images: uint8 (N, 28, 28), or one (28, 28) image.
        method: smoothgrad (None: the default), saliency, integrated-gradients, occlusion, or grad-cam (cnn
            and hybrid).
        target: the class to explain, an index or a name, one for all images or one per image; None: each
            image's predicted class.

    Returns:
        A `fmnist.predict.explain.attribute.Explanation`: `maps` float32 (N, 28, 28) (positive: evidence for
        the target), `targets` int64 (N,), `probabilities` float64 (N, 10), `method`, and `delta`, integrated
        gradients' convergence delta (else None).
    """
    return explain_module.explain(_trained(model), _images(images), method, target)


def explanation_figure(explanation: Explanation, images: np.ndarray, count: int = 10) -> Figure:
    """Images above their attribution maps (red: evidence for the class, blue: against).

    Args:
        explanation: from `explain()`.
        images: the uint8 (N, 28, 28) images it explains.
        count: how many to show, from the first.

    Returns:
        A matplotlib `Figure`.
    """
    images = _images(images)[:count]
    pairs = zip(explanation.targets, explanation.probabilities, strict=True)
    titles = [f"{CLASS_NAMES[t]} {p[t]:.0%}" for t, p in pairs]
    return attributions.pairs(images, explanation.maps[:count], titles[:count], f"why: {explanation.method}")


def templates(model: Model) -> Figure:
    """The linear model's ten class templates: its weight per pixel for each class.

    Args:
        model: a trained `linear` `Model`.

    Returns:
        A matplotlib `Figure`.
    """
    return attributions.templates(explain_module.templates(_trained(model)), f"{model.name}: class templates")


def explanation_checks(model: Model, images: np.ndarray, method: str | None = None) -> dict[str, str | float]:
    """Do the maps mean something? The deletion and model-randomisation checks on your images.

    Args:
        model: a trained `Model`.
        images: uint8 (N, 28, 28).
        method: as `explain`'s.

    Returns:
        `{"method": str, "deletion_wins": float, "randomisation_spearman": float}`: the share of images whose
        most-attributed tenth of pixels, blacked out, lowers the class's probability more than a random tenth,
        and the median rank correlation with a re-initialised network's maps.
    """
    from fmnist.predict.explain import evidence

    return evidence.summary(_trained(model), _images(images), method)
