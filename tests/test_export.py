"""fmnist export: the ONNX graph of each of the five models answers as `fmnist predict` does (onnxruntime).

A compare of all five models trained for seconds on a subset; the full 10,000-image check is bench/bench_export.py.
"""

import json

import numpy as np
import onnx
import onnxruntime
import pytest

from fmnist import __version__
from fmnist.cli.parser import main
from fmnist.data.dataset import CLASS_NAMES
from fmnist.jobs import compare as compare_runs
from fmnist.jobs.settings import Setup
from fmnist.models import registry
from fmnist.predict import answers, sets
from fmnist.rundir import checkpoint, export
from fmnist.serve import loading

MODELS = tuple(registry.REGISTRY)
TOLERANCE = 1e-4  # max |difference| of a probability against fmnist's own


@pytest.fixture(scope="module")
def compared(splits, dataset, tmp_path_factory):
    """A compare of the five models (1 epoch, 1,000 images), each exported next to its checkpoint."""
    out = tmp_path_factory.mktemp("export") / "compare"
    setup = Setup(splits.quick(1000), dataset, seed=0, progress=False, device="cpu")
    results = compare_runs.compare(list(MODELS), setup, out, {"epochs": 1})
    assert main(["export", str(out)]) == 0
    return out, setup, results


def run(path, images):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_onnx_answers_as_fmnist_predict_at_batch_1_and_1000(compared, splits, name):
    out, _, _ = compared
    model, _ = checkpoint.load(out / name)
    images = splits.x_test[:1000]
    logits, probs, in_set = run(out / name / export.FILE, images)
    expected = answers.probabilities(model, images)
    assert logits.shape == probs.shape == in_set.shape == (1000, 10) and probs.dtype == np.float32
    assert np.array_equal(in_set, sets.mask(model, answers.assess(model, images), sets.DEFAULT))  # fmnist's sets
    assert np.array_equal(probs.argmax(1), expected.argmax(1))
    assert np.abs(probs - expected).max() <= TOLERANCE
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    for i in range(3):  # batch size 1
        _, one, _ = run(out / name / export.FILE, images[i : i + 1])
        assert one.shape == (1, 10) and np.abs(one[0] - expected[i]).max() <= TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_exported_test_accuracy_equals_metrics_json(compared, name):
    out, setup, results = compared
    _, probs, _ = run(out / name / export.FILE, setup.splits.x_test)
    accuracy = float((probs.argmax(1) == setup.splits.y_test).mean())
    recorded = json.loads((out / name / "metrics.json").read_text())["test_accuracy"]
    assert accuracy == recorded == results[name]["test_accuracy"]


@pytest.mark.slow
def test_metadata_names_the_classes_the_version_and_the_run(compared):
    out, _, _ = compared
    for name in MODELS:
        path = out / name / export.FILE
        meta = export.read_metadata(path)
        assert json.loads(meta["class_names"]) == list(CLASS_NAMES)
        assert meta["fmnist_version"] == __version__ and meta["model"] == name
        assert meta["run"] == str((out / name).resolve())
        assert meta["checkpoint"] == json.loads((out / name / checkpoint.MANIFEST).read_text())["weights"]
        assert meta["exporter"] == "torch.onnx.export(dynamo=True)"
        graph = onnx.load(str(path)).graph
        assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == list(export.OUTPUTS)
        assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
        batch = graph.input[0].type.tensor_type.shape.dim[0]
        assert batch.dim_param and not batch.dim_value  # dynamic


@pytest.mark.slow
def test_the_onnx_runtime_serves_what_torch_serves(compared, splits):
    out, _, _ = compared
    torch_side, default = loading.load_run(out, ("torch", "cpu"))
    onnx_side, same_default = loading.load_run(out, ("onnx", "cpu"))
    assert default == same_default and set(torch_side) == set(onnx_side) == set(MODELS)
    images = splits.x_test[:64]
    for name in MODELS:
        assert onnx_side[name].model.runtime == "onnx"
        expected = answers.probabilities(torch_side[name].model, images)
        assert np.abs(answers.probabilities(onnx_side[name].model, images) - expected).max() <= TOLERANCE


def test_the_graph_applies_the_temperature_and_the_mirror_average(splits):
    """Unit level, no export: the module the export traces, for a CNN given a temperature."""
    import torch

    from fmnist.models.classifiers import CNNClassifier

    model = CNNClassifier(widths=(4, 8, 8), tta=1)
    model.mean, model.std = 0.3, 0.35
    model.trust = {"temperature": 2.0}  # what fmnist.models.trust.calibrate sets
    images = splits.x_test[:8]
    with torch.no_grad():
        logits, probs, in_set = export.graph_of(model)(torch.from_numpy(images.copy()))
    np.testing.assert_allclose(logits.numpy(), model.predict_logits(images) / 2.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs.numpy(), torch.softmax(logits, 1).numpy(), rtol=1e-6)
    assert in_set.all()  # no set scores: every class, no promise narrower than that
    model.trust = None  # a model without calibration: 1
    assert export.temperature(model) == 1.0


def test_out_with_several_models_is_a_one_line_error(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / checkpoint.MANIFEST).write_text("{}")
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "holds several models (a, b)" in capsys.readouterr().err
