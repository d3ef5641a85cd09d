"""Training throughput of the fast CNN under thread policies, on an idle machine and with one core held busy.

    flock /tmp/fmnist-cpu.lock python bench/bench_threads.py [--seconds 6] [--policies a,b,...] [--out FILE]

Each policy runs in a fresh process (OpenMP reads OMP_WAIT_POLICY / GOMP_SPINCOUNT once, when torch starts),
first on the idle machine, then while a single-threaded busy loop that this benchmark starts (and kills) holds
one core. Workload: the fast cnn preset's training steps (the package's backend, random data), images/s
after a warm-up. Prints the CPU model, date, a table, then JSON (written to bench/results/threads-DATE.json, or
--out). The policy `free-cores` is the proposal:
threads = the cores not used by other processes (from /proc/stat over 0.2 s, within the affinity mask),
re-measured every couple of seconds while training; `OMP_NUM_THREADS` or an explicit count always wins.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import record

NAME = "threads"
POLICIES = {
    # name: (environment, thread rule)
    "all-cores": ({}, "all"),  # torch's default: one thread per core
    "one-thread": ({}, "one"),
    "all-cores-passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, "all"),
    "all-cores-spin10k": ({"GOMP_SPINCOUNT": "10000"}, "all"),
    "free-at-start": ({}, "free"),
    "free-cores": ({}, "recheck"),  # the proposal: free cores at start, re-checked every 2 s
    "free-cores-passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, "recheck"),
}
BUSY_LOOP = [sys.executable, "-c", "while True: pass"]


class CoreMeter:
    """How many of our allowed cores other processes keep busy, from /proc/stat minus our own CPU time."""

    def __init__(self):
        self.cores = sorted(os.sched_getaffinity(0))
        self.last = self._snapshot()

    def _snapshot(self):
        busy = total = 0
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.cores:
                    ticks = [int(v) for v in fields[:8]]
                    idle = ticks[3] + ticks[4]  # idle + iowait
                    busy, total = busy + sum(ticks) - idle, total + sum(ticks)
        times = os.times()
        return busy, total, (times.user + times.system) * os.sysconf("SC_CLK_TCK")

    def others_busy(self):
        """Cores' worth of CPU used by other processes since the last call."""
        busy, total, own = self._snapshot()
        last_busy, last_total, last_own = self.last
        self.last = (busy, total, own)
        elapsed = max(total - last_total, 1) / len(self.cores)  # ticks per core
        return max(0.0, (busy - last_busy - (own - last_own)) / elapsed)

    def free(self):
        return max(1, len(self.cores) - round(self.others_busy()))


def choose_threads(override=None, environ=os.environ, meter=None, sample_seconds=0.2):
    """The thread count of the policy proposed for the package: an explicit count, else OMP_NUM_THREADS if the
    user set it, else the cores that no other process is using (measured over `sample_seconds`)."""
    if override:
        return override
    if environ.get("OMP_NUM_THREADS", "").isdigit() and int(environ["OMP_NUM_THREADS"]) > 0:
        return int(environ["OMP_NUM_THREADS"])
    meter = meter or CoreMeter()
    time.sleep(sample_seconds)
    return meter.free()


def worker(rule, seconds, recheck_seconds=2.0):
    """Run training steps for `seconds` after a warm-up; print images/s and the thread counts used."""
    import torch

    from fmnist.engine.torch_backend import TorchBackend
    from fmnist.models import registry

    meter = CoreMeter()
    threads = {"all": len(meter.cores), "one": 1}.get(rule) or choose_threads(meter=meter)
    torch.set_num_threads(threads)
    spec = registry.spec("cnn")
    hparams = spec.resolve("fast")
    model = spec.load_class()(**hparams)
    torch.manual_seed(0)
    x, y = torch.randn(4096, 1, 28, 28), torch.randint(0, 10, (4096,))
    model.module.prepare(x[:1024])  # the frozen whitening stem, as fit prepares it
    backend = TorchBackend(model.module, hparams, seed=0, fill=0.0, total_steps=10**6, channels_last=True)
    batch, used, images = hparams["batch_size"], [threads], 0

    def step(i):
        start = (i * batch) % (len(x) - batch)
        backend.train_step(x[start : start + batch], y[start : start + batch], 0.01)

    for i in range(8):
        step(i)
    start = last_check = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        step(i)
        i += 1
        images += batch
        if rule == "recheck" and time.perf_counter() - last_check > recheck_seconds:
            last_check = time.perf_counter()
            free = meter.free()
            if free != threads:
                threads = free
                torch.set_num_threads(threads)
                used.append(threads)
    print(json.dumps({"images_per_s": images / (time.perf_counter() - start), "threads": used}))


def run_policy(name, seconds, busy):
    env_extra, rule = POLICIES[name]
    env = os.environ | env_extra
    env.pop("OMP_NUM_THREADS", None)
    loop = subprocess.Popen(BUSY_LOOP) if busy else None
    try:
        if busy:
            time.sleep(0.5)  # let the loop settle on a core
        out = subprocess.run(
            [sys.executable, __file__, "--worker", rule, "--seconds", str(seconds)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
    return json.loads(out.strip().splitlines()[-1])


def median_run(runs):
    speeds = [r["images_per_s"] for r in runs]
    return {"images_per_s": statistics.median(speeds), "all": [round(v) for v in speeds], "threads": runs[0]["threads"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per policy and condition")
    parser.add_argument("--repeats", type=int, default=1, help="runs per policy and condition (median)")
    parser.add_argument("--policies", help="comma-separated subset of: " + ", ".join(POLICIES))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="write the JSON here (default: bench/results/threads-DATE.json)")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.seconds)
        return
    names = args.policies.split(",") if args.policies else list(POLICIES)
    # Repeats interleave the policies so that a drift in the machine's speed affects them all alike.
    runs = {name: {"idle": [], "busy": []} for name in names}
    for _ in range(args.repeats):
        for name in names:
            for condition in ("idle", "busy"):
                runs[name][condition].append(run_policy(name, args.seconds, condition == "busy"))
    results = {name: {c: median_run(r) for c, r in conditions.items()} for name, conditions in runs.items()}
    single_idle = results.get("one-thread", {}).get("idle", {}).get("images_per_s")
    head = record.header()
    print(record.title("fast cnn training under thread policies", head))
    print(f"{'policy':34} {'idle img/s':>11} {'busy img/s':>11} {'busy/1-thread idle':>19}  threads (busy)")
    for name, r in results.items():
        ratio = f"{r['busy']['images_per_s'] / single_idle:.2f}" if single_idle else "-"
        print(
            f"{name:34} {r['idle']['images_per_s']:11.0f} {r['busy']['images_per_s']:11.0f} {ratio:>19}  "
            f"{r['busy']['threads']}"
        )
    report = {
        "benchmark": "threads",
        "seconds": args.seconds,
        "repeats": args.repeats,
        "results": results,
    }
    print(json.dumps(report))
    record.save(NAME, report, args.out, head=head)


if __name__ == "__main__":
    main()
