"""What runs a served model: torch (the model itself, on its --device) or onnxruntime on its exported graph.

Both answer `predict_logits(uint8 images (N, 28, 28)) -> float32 (N, 10)`, so the server, its batching worker and
`fmnist.predict.answers` do not know which one they hold. The ONNX graph already contains the test-time
augmentation and the calibration temperature (fmnist.rundir.export), so its logits are the final ones.
"""

import numpy as np

from fmnist.engine import devices
from fmnist.models import trust
from fmnist.rundir import export

RUNTIMES = ("torch", "onnx")


class OnnxModel:
    """A model's exported graph on onnxruntime (CPU), in place of the model."""

    runtime = "onnx"

    def __init__(self, session, set_record=None):
        self.session = session
        self.set_record = set_record  # the model's prediction-set scores (fmnist.predict.sets.record_of)

    def predict_logits(self, images):
        images = np.ascontiguousarray(images, dtype=np.uint8)
        return self.session.run([export.OUTPUTS[0]], {export.INPUT: images})[0]


def prepare(model, folder, manifest, runtime=("torch", "auto")):
    """The object that answers for a loaded model: runtime = (torch or onnx, the torch models' device)."""
    name, device = runtime
    if name not in RUNTIMES:
        raise ValueError(f"runtime {name!r}: choose one of {', '.join(RUNTIMES)}")
    if name == "onnx":
        return OnnxModel(export.session(folder, manifest, model), (trust.of(model) or {}).get("sets"))
    model.to_device(devices.for_model(manifest["kind"], type(model).uses_torch, device))
    return model
