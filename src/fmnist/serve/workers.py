"""`fmnist serve --workers N`: N server processes behind one listening socket, for machines with many cores.

One process serves with one inference thread and decodes uploads under one GIL, so it uses about one core
however many there are. Here the parent verifies the run directory (a bad one is the CLI's one-line error,
before anything listens), binds the socket, and hands it to uvicorn's own process supervisor, which starts N
fresh (spawned, not forked: torch's thread pools do not survive a fork) workers that load the run again and
accept on the shared socket. Each has its own batching thread and cores / N torch threads, so that together
they never ask for more threads than there are cores; `/health` names the worker (its pid) that answered.
"""

import contextlib
import os
import signal
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess

from fmnist.engine import threads
from fmnist.errors import UserError
from fmnist.serve import app as served_app
from fmnist.serve import graceful, limits, loading, operate
from fmnist.serve import metrics as server_metrics

RUN_DIR = "FMNIST_SERVE_RUN_DIR"  # what the spawned workers load; the parent sets it before they start
THREADS = "FMNIST_SERVE_THREADS"
RUNTIME = "FMNIST_SERVE_RUNTIME"  # "torch:auto", "onnx:cpu", ...
KEY_FILE, RATE = "FMNIST_SERVE_KEY_FILE", "FMNIST_SERVE_RATE"  # each worker reads and hashes the keys itself


def threads_per_worker(workers, cores=None):
    """Torch threads for each of `workers` processes: the cores this process may use, shared out."""
    return max(1, (threads.usable_cores() if cores is None else cores) // workers)


def worker_app():
    """The app factory each worker process calls (uvicorn's factory=True): the run loaded in this process."""
    run_dir, runtime = os.environ[RUN_DIR], tuple(os.environ[RUNTIME].split(":", 1))
    # Until it serves, SIGTERM ends a worker at once: it has accepted nothing yet, and while it loads it holds the
    # shared listening socket open, so connections would queue there for nobody once the others have stopped.
    serving_handler = signal.signal(signal.SIGTERM, lambda _signum, _frame: os._exit(0))
    if getattr(getattr(serving_handler, "__self__", None), "should_exit", False):  # uvicorn's server got it already,
        os._exit(0)  # while this worker was importing (which is most of its start)
    try:
        served, default = loading.load_run(run_dir, runtime)
    finally:
        signal.signal(signal.SIGTERM, serving_handler)
    served_app.quiet_image_warnings()
    access = operate.Access(os.environ.get(KEY_FILE) or None, float(os.environ[RATE]))
    operation = operate.operation_for(access, lambda: loading.load_run(run_dir, runtime), "127.0.0.1")
    return served_app.create_app(served, default, threads=int(os.environ[THREADS]), operation=operation)


class Supervisor(Multiprocess):
    """uvicorn's supervisor, telling the metrics which workers are gone (replaced after a kill, or by SIGHUP's
    rolling restart), so their live gauges stop counting. On SIGTERM the socket first refuses new connections
    and the workers accept what the kernel queued (fmnist.serve.graceful); then, from the signal handler itself,
    the parent closes its copy of the listening socket and passes SIGTERM on to the workers: its loop may be
    busy for seconds pinging loaded workers, and a connection left queued when the last copy closes is reset."""

    def __init__(self, config, sockets, metrics_dir):
        super().__init__(config, sockets)
        self.metrics_dir = metrics_dir
        for sig in (signal.SIGTERM, signal.SIGINT):  # let go of the socket at once (see handle_term)
            signal.signal(sig, self._stop_listening)

    def _stop_listening(self, signum, _frame):
        if not self.should_exit.is_set():  # the workers still accept meanwhile (at most graceful.DRAIN_WAIT)
            graceful.refuse_new(self.sockets)
            graceful.wait_accepted(self.sockets)
        self.should_exit.set()  # no replacement starts from now on
        for sock in self.sockets:
            sock.close()
        for process in self.processes:  # each drains now, not once the loop has pinged every busy worker
            with contextlib.suppress(OSError, TypeError):
                os.kill(process.pid, signal.SIGTERM)
        self.signal_queue.append(signum)

    def keep_subprocess_alive(self):
        try:
            self._marking_dead(super().keep_subprocess_alive)
        except ValueError:  # a replacement started as SIGTERM closed the socket: nothing to replace any more
            if not self.should_exit.is_set():
                raise

    def restart_all(self):
        self._marking_dead(super().restart_all)

    def _marking_dead(self, step):
        before = {process.pid for process in self.processes}
        step()
        for pid in before - {process.pid for process in self.processes}:
            server_metrics.mark_dead(pid, self.metrics_dir)


def run(run_dir, *, host="127.0.0.1", port=8000, workers=2, runtime=("torch", "auto"), access=operate.OPEN):
    """Verify the run, listen, then serve with `workers` processes until Ctrl-C or SIGTERM."""
    if workers < 1:
        raise UserError(f"--workers {workers}: need at least 1")
    operate.operation_for(access, None, host)  # the key file read once here: a bad one is the CLI's error
    os.environ[KEY_FILE], os.environ[RATE] = access.key_file or "", str(access.rate)
    os.environ[operate.WORKER_OF_MANY] = "1"
    served, default = loading.load_run(run_dir, runtime)  # the one check; the workers load the same, verified, files
    sock = served_app.listen(host, port)
    threads = threads_per_worker(workers)
    os.environ[RUN_DIR], os.environ[THREADS] = str(run_dir), str(threads)
    os.environ[RUNTIME] = ":".join(runtime)
    shown_host = f"[{host}]" if ":" in host else host
    names = ", ".join(name + (" (default)" if name == default else "") for name in served)
    del served  # the parent only supervises
    print(
        f"serving {run_dir}: {names} at http://{shown_host}:{sock.getsockname()[1]}/ "
        f"({workers} worker processes, {threads} torch thread{'s' if threads > 1 else ''} each)",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        f"{__name__}:worker_app",
        factory=True,
        workers=workers,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        **limits.config_options(),  # each worker bounds request heads as the single server does
    )
    with sock, server_metrics.multiprocess_dir() as metrics_dir:
        Supervisor(config, [sock], metrics_dir).run()
    return 0
