"""How many threads training uses: the cores this process may use, unless the user says.

torch's arithmetic depends on the thread count (a reduction split two ways adds in another order), so the
default must not depend on what else the machine does at the second a run starts: it is the number of CPUs in
this process's affinity mask (`os.sched_getaffinity`), a fact of the machine and the launch, not of its load.
Under torchrun the ranks of one machine share them. The count is recorded in config.json and reused by --resume.
The command line also lets waiting threads sleep (`wait_passively`), so that load arriving mid-run slows training
instead of collapsing it.
"""

import os
import sys

from fmnist.errors import UserError


def usable_cores():
    """The CPUs this process may run on (its affinity mask; the CPU count where there is no such call)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def choose(requested=None, environ=None, ranks=1):
    """The thread count: `requested` (--threads), else OMP_NUM_THREADS if set, else the usable cores shared
    among the `ranks` processes of this machine (torchrun's local world size)."""
    if requested is not None:
        if requested < 1:
            raise UserError(f"--threads {requested}: must be at least 1")
        return requested
    given = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "")
    if given.isascii() and given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, usable_cores() // max(1, ranks))


def wait_passively(environ=None):
    """Unless the user chose, let OpenMP threads that wait for work sleep instead of spinning (before torch loads).

    Spinning threads that wait on each other collapse when another program takes one of their cores: training ran
    at 0.49x the speed of one idle thread with a busy loop started mid-run, 0.85x when they wait passively, for
    12 % less speed on an idle machine (bench/bench_busy.py, bench/NOTES.md). The arithmetic is the same."""
    (os.environ if environ is None else environ).setdefault("OMP_WAIT_POLICY", "PASSIVE")


def apply(count):
    """Set NumPy's BLAS threads and torch's intra-op threads (if a torch model is in use: the NumPy models never
    load torch). The from-scratch MLP's matrix products add in another order with another BLAS thread count, so
    its bits would otherwise follow whatever OMP_NUM_THREADS said when NumPy was first imported, not the run's
    recorded count."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(count, user_api="blas")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
