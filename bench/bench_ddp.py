"""Seconds per epoch of the fast CNN in 1 and 2 processes (torchrun, gloo) on this machine, and the all-reduce.

    flock /tmp/fmnist-cpu.lock .venv/bin/python bench/bench_ddp.py [--epochs 2] [--subset N] [--out FILE]

1 process is `fmnist train cnn` as usual (all cores); 2 processes is the same command under torchrun on
loopback, each rank with half the cores. The all-reduce figure is gloo summing a buffer the size of the CNN's
gradients between 2 processes, the communication DDP adds to every step. Prints the CPU, the date, a table,
then JSON.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import record
from fmnist.report.tables import table

NAME = "ddp"
LOOPBACK = {"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]


def environment(threads=None):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "OMP_NUM_THREADS")} | LOOPBACK
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    return env | ({"OMP_NUM_THREADS": str(threads)} if threads else {})


def epoch_seconds(processes, args):
    """Mean seconds per epoch (training and validation) of `fmnist train cnn` in `processes` processes."""
    with tempfile.TemporaryDirectory() as folder:
        launcher = TORCHRUN if processes > 1 else [sys.executable]
        command = [*launcher, "-m", "fmnist", "train", "cnn", "--epochs", str(args.epochs), "--no-progress"]
        command += ["--out", f"{folder}/run"] + (["--subset", str(args.subset)] if args.subset else [])
        threads = max(1, (os.cpu_count() or 1) // processes)
        subprocess.run(command, check=True, env=environment(threads), capture_output=True, text=True)
        with open(f"{folder}/run/history.csv", newline="") as file:
            rows = list(csv.DictReader(file))
    return float(rows[-1]["seconds"]) / len(rows), len(rows)


def allreduce_worker(repeats):
    """Run by each torchrun rank: time gloo's all-reduce of a CNN-gradient-sized buffer; rank 0 prints JSON."""
    import torch
    import torch.distributed as dist

    from fmnist.models import registry

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    size = registry.build("cnn").num_parameters()
    buffer = torch.ones(size)
    for _ in range(5):
        dist.all_reduce(buffer)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(repeats):
        dist.all_reduce(buffer)
    seconds = (time.perf_counter() - start) / repeats
    if dist.get_rank() == 0:
        print(json.dumps({"parameters": size, "allreduce_ms": round(seconds * 1e3, 3)}))
    dist.destroy_process_group()


def allreduce_cost(repeats):
    command = [*TORCHRUN, str(Path(__file__).resolve()), "--allreduce-worker", "--repeats", str(repeats)]
    done = subprocess.run(command, check=True, env=environment(1), capture_output=True, text=True)
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, help="train images (default: all 48,000)")
    parser.add_argument("--repeats", type=int, default=200, help="all-reduces timed")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/ddp-DATE.json)")
    parser.add_argument("--allreduce-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.allreduce_worker:
        return allreduce_worker(args.repeats)
    per_epoch = {n: epoch_seconds(n, args) for n in (1, 2)}
    comm = allreduce_cost(args.repeats)
    steps = (args.subset or 48_000) // 256  # the fast preset's global batch; drop_last
    head = record.header()
    result = {
        "train_images": args.subset or 48_000,
        "epochs": args.epochs,
        "seconds_per_epoch": {str(n): round(s, 2) for n, (s, _) in per_epoch.items()},
        "speedup_2_processes": round(per_epoch[1][0] / per_epoch[2][0], 2),
        "allreduce_ms_per_step": comm["allreduce_ms"],
        "allreduce_share_of_2_process_step": round(comm["allreduce_ms"] / 1e3 * steps / per_epoch[2][0], 3),
        "gradient_parameters": comm["parameters"],
    }
    print(record.title("fmnist train cnn in 1 and 2 processes", head))
    rows = [
        (f"{n} process{'es' if n > 1 else ''}", f"{s:.2f}", f"{per_epoch[1][0] / s:.2f}x")
        for n, (s, _) in per_epoch.items()
    ]
    print(table(("fast CNN", "s / epoch", "speed-up"), rows))
    print(
        f"gloo all-reduce of {comm['parameters']:,} gradients: {comm['allreduce_ms']:.2f} ms per step "
        f"({result['allreduce_share_of_2_process_step']:.1%} of a 2-process epoch)"
    )
    if result["speedup_2_processes"] < 1.1:
        print("No gain from 2 processes here: they share the same cores, which one process already uses.")
    print(json.dumps(result, indent=2))
    record.save(NAME, result, args.out, head=head)


if __name__ == "__main__":
    main()
