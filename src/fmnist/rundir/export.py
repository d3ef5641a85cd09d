"""`fmnist export`: a run's model as one ONNX graph that runs without fmnist, from the images a user has.

The graph's input `images` is uint8 (N, 28, 28), N any batch size, exactly as the dataset's IDX files store an
image: row by row, 0 the background and 255 the darkest ink (a photo of a dark garment on white is inverted
first; `fmnist predict --save-preprocessed` shows what that conversion gives). Inside: the model's normalisation,
its test-time augmentation (mirror averaging for the fast CNN and the hybrid) and its calibration temperature
(1 for a model without one). Outputs: `logits` float32 (N, 10), the calibrated logits, `probabilities`
float32 (N, 10), their softmax, and `sets` bool (N, 10), the prediction set at the default coverage (95 %,
class-conditional; fmnist.models.sets): its ten thresholds are constants of the graph, the sets widen with the
unknown-input score computed in the graph (fmnist.rundir.export_sets), and the metadata entries `set_coverage`,
`set_score`, `set_thresholds` and `set_widen` (JSON) say which; a model without set scores marks every class.
Class i is named by the `class_names` metadata entry (JSON).

The torch models export their own network; the NumPy MLP and the hybrid export a torch graph of their weights
that computes what their NumPy forward pass computes. The exporter is torch.onnx.export(..., dynamo=True); a
model it cannot capture falls back to the TorchScript exporter, and the metadata entry `exporter` says which.
Written next to the checkpoint (RUN_DIR/model.onnx) unless --out says otherwise, atomically.
"""

import contextlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmnist import __version__
from fmnist.data.dataset import CLASS_NAMES, SIDE
from fmnist.errors import UserError
from fmnist.files import atomic_path
from fmnist.models import sets, trust
from fmnist.models.contracts import Classifier
from fmnist.rundir import checkpoint, export_sets

FILE = "model.onnx"
INPUT, OUTPUTS = "images", ("logits", "probabilities", "sets")
SET_OUTPUT = OUTPUTS[2]
INPUT_CONVENTION = "images: uint8 (N, 28, 28) as the dataset stores them, 0 = background, 255 = ink"


class Normalised(nn.Module):
    """Pixels 0..255 (N, 1, 28, 28) float -> `net`'s output on (x / 255 - mean) / std, as fmnist's torch models."""

    def __init__(self, net, mean, std):
        super().__init__()
        self.net, self.mean, self.std = net, float(mean), float(std)

    def forward(self, x):
        return self.net((x / 255.0 - self.mean) / self.std)


class Features(nn.Module):
    """A CNN's feature vector as a module (the hybrid reads it)."""

    def __init__(self, cnn):
        super().__init__()
        self.cnn = cnn

    def forward(self, x):
        return self.cnn.features(x)


class DenseReLU(nn.Module):
    """The NumPy MLP's layers as torch ones: x @ W + b, ReLU between (W kept as NumPy lays it out, (D_in, D_out))."""

    def __init__(self, weights, biases):
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(torch.from_numpy(np.array(w)), False) for w in weights])
        self.biases = nn.ParameterList([nn.Parameter(torch.from_numpy(np.array(b)), False) for b in biases])

    def forward(self, x):
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w + b
            x = torch.relu(x) if i < last else x
        return x


class ScratchNet(nn.Module):
    """scratch-mlp on pixels 0..255 (N, 1, 28, 28): normalise_flat's arithmetic, then the dense layers."""

    def __init__(self, mlp, mean, std):
        super().__init__()
        self.dense = DenseReLU(mlp.weights, mlp.biases)
        self.mean, self.std = float(np.float32(mean)), float(np.float32(std))

    def forward(self, x):
        return self.dense((x.flatten(1) * float(np.float32(1 / 255.0)) - self.mean) / self.std)


class HybridNet(nn.Module):
    """The hybrid: the CNN's features, standardised with the train statistics, then the dense layers."""

    def __init__(self, hybrid):
        super().__init__()
        self.features = Normalised(Features(hybrid.cnn.module), hybrid.cnn.mean, hybrid.cnn.std)
        self.register_buffer("feature_mean", torch.from_numpy(np.array(hybrid.feature_mean, np.float32)))
        self.register_buffer("feature_std", torch.from_numpy(np.array(hybrid.feature_std, np.float32)))
        self.dense = DenseReLU(hybrid.mlp.mlp.weights, hybrid.mlp.mlp.biases)

    def forward(self, x):
        return self.dense((self.features(x) - self.feature_mean) / self.feature_std)


class Graph(nn.Module):
    """uint8 images (N, 28, 28) -> (calibrated logits, probabilities, prediction sets), test-time augmentation
    included. sets: the SetRule (fmnist.rundir.export_sets) of the model's LAC sets at the default level."""

    def __init__(self, body, tta, temperature, sets):
        super().__init__()
        self.body, self.tta, self.temperature, self.sets = body, int(tta), float(temperature), sets

    def pair(self, x):
        return self.body(x) if not self.tta else (self.body(x) + self.body(x.flip(-1))) / 2

    def forward(self, images):
        x = images.to(torch.float32).unsqueeze(1)
        logits = self.pair(x)
        if self.tta == 2:  # moved one pixel down-right and up-left, the gap left at 0 (fmnist.engine.augment)
            down = F.pad(x, (1, 0, 1, 0))[:, :, :SIDE, :SIDE]
            up = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
            logits = (logits + (self.pair(down) + self.pair(up)) / 2) / 2
        logits = logits / self.temperature
        probs = torch.softmax(logits, dim=1)
        return logits, probs, self.sets(x, logits, probs)


def temperature(model):
    """The model's calibration temperature where it has one (fmnist.models.trust, fitted in every fit), else 1."""
    record = trust.of(model)
    value = record.get("temperature") if isinstance(record, dict) else None
    return float(value) if isinstance(value, int | float) and value > 0 else 1.0


def set_thresholds(model):
    """The ten thresholds of the graph's `sets` output at the default coverage; +inf (every class) for a model
    without set scores. Only the LAC score is drawn in the graph (the one fmnist fits)."""
    record = (trust.of(model) or {}).get("sets")
    if record is None:
        return np.full(len(CLASS_NAMES), np.inf)
    if record["score"] != "lac":
        raise UserError(f"the {record['score']} set score cannot be exported; only lac is drawn in the graph")
    return sets.thresholds(record, sets.DEFAULT)


def graph_of(model):
    """The export graph of any fmnist model (torch classifiers, scratch-mlp, hybrid), on the CPU, in eval mode."""
    if hasattr(model, "module"):  # the torch classifiers
        net = Normalised(_cpu_copy(model.module), model.mean, model.std)
        features = Normalised(Features(net.net), model.mean, model.std) if hasattr(model, "features") else None
        level = model.hparams.get("tta", 0)
    elif hasattr(model, "cnn"):  # the hybrid
        net, level = HybridNet(_cpu_hybrid(model)), model.hparams["tta"]
        features = export_sets.Standardised(net)
    else:
        net, level, features = ScratchNet(model._trained(), model.mean, model.std), 0, None
    return Graph(net, level, temperature(model), export_sets.rule(model, set_thresholds(model), features)).eval()


def _cpu_copy(module):
    import copy

    return copy.deepcopy(module).cpu().to(memory_format=torch.contiguous_format).eval()


def _cpu_hybrid(hybrid):
    import copy

    clone = copy.copy(hybrid)
    clone.cnn = copy.copy(hybrid.cnn)
    clone.cnn.module = _cpu_copy(hybrid.cnn.module)
    return clone


def to_onnx(model: Classifier, metadata=None):
    """The ONNX ModelProto of `model`'s graph with metadata entries (str -> str); dynamo where it works."""
    try:
        import onnx  # noqa: F401 (the exporters need it; checked here for a clear message)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError(f"fmnist export needs {exc.name}: pip install 'fmnist[onnx]'") from None
    graph = graph_of(model)
    example = (torch.zeros(2, SIDE, SIDE, dtype=torch.uint8),)
    with _quiet():
        proto, exporter = _export(graph, example)
    entries = {"exporter": exporter, "input": INPUT_CONVENTION, **(metadata or {})}
    _set_metadata(proto, entries | {"class_names": json.dumps(list(CLASS_NAMES))})
    return proto


@contextlib.contextmanager
def _quiet():
    """The exporters' warnings (torchvision ops it skips, deprecations) are about them, not about the user's run."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export(graph, example):
    """(ModelProto, which exporter made it)."""
    try:
        program = torch.onnx.export(
            graph,
            example,
            dynamo=True,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
        return program.model_proto, "torch.onnx.export(dynamo=True)"
    except Exception:  # torch.export raises many kinds for a graph it cannot capture: the older exporter then
        return _torchscript(graph, example), "torch.onnx.export(dynamo=False)"


def _torchscript(graph, example):
    import io

    import onnx

    buffer = io.BytesIO()
    axes = {INPUT: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUTS}}
    torch.onnx.export(
        graph, example, buffer, dynamo=False, input_names=[INPUT], output_names=list(OUTPUTS), dynamic_axes=axes
    )
    return onnx.load_from_string(buffer.getvalue())


def _set_metadata(proto, entries):
    del proto.metadata_props[:]
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)


def metadata_of(folder, manifest, model):
    """The metadata entries of a run's exported model: what it is, where from, which fmnist wrote it."""
    return {
        "fmnist_version": __version__,
        "model": manifest["kind"],
        "run": str(Path(folder).resolve()),
        "checkpoint": manifest["weights"],  # a new save names a new folder: a stale export is recognisable
        "temperature": repr(temperature(model)),
        "tta": str(getattr(model, "hparams", {}).get("tta", 0)),
        "set_coverage": repr(sets.DEFAULT),
        "set_score": (trust.of(model) or {}).get("sets", {}).get("score", "none"),
        "set_thresholds": json.dumps([float(t) if np.isfinite(t) else None for t in set_thresholds(model)]),
        "set_widen": json.dumps((trust.of(model) or {}).get("sets", {}).get("widen")),
    }


def read_metadata(path_or_proto):
    """An exported file's (or ModelProto's) metadata entries as a dict."""
    import onnx

    proto = path_or_proto if hasattr(path_or_proto, "metadata_props") else onnx.load(str(path_or_proto))
    return {entry.key: entry.value for entry in proto.metadata_props}


def export_one(folder, out=None):
    """Export the model of one run directory to `out` (default: next to its checkpoint); returns the path."""
    import onnx

    model, manifest = checkpoint.load(folder)
    proto = to_onnx(model, metadata_of(folder, manifest, model))
    path = Path(out) if out else Path(folder) / FILE
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return path


def export_run(run_dir, out=None):
    """Export every model of a run directory (one for `train`, each of a compare's); returns the paths."""
    folders = checkpoint.models_of(run_dir)
    if out and len(folders) > 1:
        names = ", ".join(folder.name for folder in folders)
        raise UserError(f"--out {out}: {run_dir} holds several models ({names}); export one, e.g. {folders[0]}")
    return [export_one(folder, out) for folder in folders]


def session(folder, manifest, model, threads=1):
    """An onnxruntime session for the model of run directory `folder`: its model.onnx where that is the export of
    this very checkpoint, else a fresh export in memory."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("--runtime onnx needs onnxruntime: pip install 'fmnist[onnx]'") from None
    path = Path(folder) / FILE
    if path.is_file() and read_metadata(path).get("checkpoint") == manifest["weights"]:
        source = path.read_bytes()
    else:
        source = to_onnx(model, metadata_of(folder, manifest, model)).SerializeToString()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
