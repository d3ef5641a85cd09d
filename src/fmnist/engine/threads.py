"""How many threads training uses: the cores that are free when it starts, unless the user says.

Two busy threads on a core another process holds make torch's OpenMP regions wait on each other: training
then runs several times slower than on one thread (bench/NOTES.md). So the default counts the cores this
process may use (its CPU affinity) that were idle over a short look at /proc/stat. The count is chosen once,
recorded in config.json and reused by --resume: torch's arithmetic depends on it, and with it the bit-exact
continuation of a run.
"""

import os
import sys
import time
from pathlib import Path

from fmnist.errors import UserError

IDLE_SHARE = 0.5  # a core idle at least half of the look counts as free


def cpu_times(stat_text):
    """/proc/stat text -> {cpu index: (idle ticks, total ticks)} for each cpuN line."""
    times = {}
    for line in stat_text.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(f) for f in fields]
            times[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks[:8]))  # idle + iowait; without guest time
    return times


def idle_cpus(before, after, allowed):
    """The CPUs in `allowed` idle for at least IDLE_SHARE between two `cpu_times` snapshots."""
    free = []
    for cpu in sorted(allowed):
        if cpu in before and cpu in after:
            idle, total = (a - b for a, b in zip(after[cpu], before[cpu], strict=True))
            if total <= 0 or idle / total >= IDLE_SHARE:
                free.append(cpu)
    return free


def free_cores(look=0.25):
    """How many of this process's allowed CPUs are free now (at least 1); all of them where /proc is absent."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    stat = Path("/proc/stat")
    try:
        before = cpu_times(stat.read_text())
        time.sleep(look)
        after = cpu_times(stat.read_text())
    except OSError:
        return len(allowed)
    return max(1, len(idle_cpus(before, after, allowed)))


def choose(requested=None, environ=None):
    """The thread count: `requested` (--threads), else OMP_NUM_THREADS if the user set it, else the free cores."""
    if requested is not None:
        if requested < 1:
            raise UserError(f"--threads {requested}: must be at least 1")
        return requested
    given = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "")
    return int(given) if given.isdigit() and int(given) > 0 else free_cores()


def apply(count):
    """Set torch's intra-op threads, if a torch model is in use (the NumPy models never load torch)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
