"""Which convolution kernels the fast CNN's bf16 training step runs, and whether its bf16 stem agrees with fp32.

    .venv/bin/python bench/bench_kernels.py [--images 1000] [--steps 3] [--out FILE]

pytorch#183815 reports bf16 convolutions falling back to slow kernels in some 2.13 builds, and #163347 a wrong tiny
bf16 convolution on AMD. Two checks on this machine:
- the frozen whitening stem (a 1-channel 3x3 convolution, the tiny one) on `--images` training images, in fp32 and
  under bf16 autocast as a training step runs it: the largest difference relative to the fp32 output's scale;
- a child process runs `--steps` bf16 training steps of the fast preset with ONEDNN_VERBOSE=1; every convolution
  primitive oneDNN executes is counted by its implementation name (`ref` would be the slow reference code).
Prints the CPU model, date, a table, then JSON; writes the JSON to bench/results/kernels-DATE.json (or --out).
"""

import argparse
import collections
import json
import os
import subprocess
import sys

import record

NAME = "kernels"
STEPS_CHILD = """
import sys, torch
from fmnist.data import dataset
from fmnist.models import registry
from fmnist.engine.torch_backend import TorchBackend, to_tensor
splits = dataset.split(dataset.load(), 0)
hparams = registry.spec("cnn").resolve("fast") | {"precision": "bf16"}
model = registry.spec("cnn").load_class()(**hparams)
x = to_tensor(splits.x_train[:2048], float(splits.mean), float(splits.std))
y = torch.from_numpy(splits.y_train[:2048])
model.module.prepare(x)
backend = TorchBackend(model.module, hparams, seed=0, fill=0.0, total_steps=100, channels_last=True)
batch = hparams["batch_size"]
for step in range(int(sys.argv[1])):
    start = step * batch % (len(x) - batch)
    backend.train_step(x[start : start + batch], y[start : start + batch], 0.01)
"""


def stem_difference(images):
    """max |bf16 - fp32| / max |fp32| of the whitening stem's output on the first `images` training images."""
    import torch

    from fmnist.data import dataset
    from fmnist.engine.torch_backend import to_tensor
    from fmnist.models import registry

    splits = dataset.split(dataset.load(), 0)
    model = registry.spec("cnn").load_class()(**registry.spec("cnn").resolve("fast"))
    x = to_tensor(splits.x_train[:images], float(splits.mean), float(splits.std))
    model.module.prepare(x)
    stem = model.module.stem.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fp32 = stem(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = stem(x).float()
    scale = fp32.abs().max().item()
    return {
        "max_abs_difference": (bf16 - fp32).abs().max().item(),
        "fp32_max_abs": scale,
        "max_relative_difference": (bf16 - fp32).abs().max().item() / scale,
        "mean_relative_difference": ((bf16 - fp32).abs().mean() / fp32.abs().mean()).item(),
    }


def convolution_kernels(steps):
    """{implementation: count} of the convolutions oneDNN executes in `steps` bf16 training steps."""
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    out = subprocess.run([sys.executable, "-c", STEPS_CHILD, str(steps)], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"bench_kernels: the child failed: {out.stderr.strip().splitlines()[-1:]}")
    kinds = collections.Counter()
    for line in out.stdout.splitlines():
        fields = line.split(",")
        if len(fields) > 5 and fields[0] == "onednn_verbose" and "exec" in fields and "convolution" in fields:
            at = fields.index("convolution")
            kinds[f"{fields[at + 1]} ({fields[at + 2]})"] += 1
    return dict(kinds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", help="write the JSON here (default: bench/results/kernels-DATE.json)")
    args = parser.parse_args()
    from fmnist.report.tables import table

    head = record.header()
    report = {"images": args.images}
    report["stem"] = stem_difference(args.images)
    report["convolutions"] = convolution_kernels(args.steps)
    report["ref_kernels"] = sum(n for kind, n in report["convolutions"].items() if kind.startswith("ref"))
    print(record.title("bf16 kernels of the fast cnn", head))
    print(
        f"stem on {args.images} training images: max relative difference bf16 vs fp32 "
        f"{report['stem']['max_relative_difference']:.2e} (mean {report['stem']['mean_relative_difference']:.2e})"
    )
    print(table(("oneDNN convolution (implementation, propagation)", "executions"), report["convolutions"].items()))
    print(json.dumps(report, indent=1))
    record.save(NAME, report, args.out, head=head)


if __name__ == "__main__":
    main()
