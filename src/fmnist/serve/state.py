"""Which models answer now, whether the server is ready, and replacing the models on request.

The models in service are one `(served, default)` pair, replaced whole by one assignment, so a request that took
it answers from one set of models however a reload goes. A reload (SIGHUP or POST /admin/reload) loads and
verifies the run directory again beside the models in service (checksums, class names, a probe image: what a
start does) and only then swaps; if anything fails, the old models keep answering and the reason is returned.
Reloads take turns. `/readyz` is 503 until models are in service, while the inference worker is not running,
and from SIGTERM on (draining: the server finishes what it accepted, and a balancer should send no more).
"""

import signal
import sys
import threading


class ServingState:
    """`loader()` -> ({name: ServedModel}, default name): the run directory loaded and verified."""

    def __init__(self, loader, current=None):
        self.loader = loader
        self.current = current  # (served, default), or None before the first load ends
        self.draining = False
        self.worker_alive = lambda: False  # set by the app to its inference worker's check
        self.reloading = threading.Lock()

    @property
    def served(self):
        return self.current[0] if self.current else {}

    def readiness(self):
        """(ready?, why not)."""
        if self.draining:
            return False, "shutting down"
        if self.current is None:
            return False, "loading the models"
        if not self.worker_alive():
            return False, "the inference worker is not running"
        return True, "ready"

    def reload(self):
        """Load and verify the run again, then put it in service; the UserError (old models kept) if it fails."""
        with self.reloading:
            self.current = self.loader()
        return self.current

    def load_in_background(self, log=sys.stderr):
        """The first load, in a thread, while the server already answers the probes (503 until it ends)."""

        def load():
            try:
                self.reload()
            except Exception as exc:  # a run that no longer loads: said once, /readyz stays 503
                print(f"fmnist serve: cannot load the models: {exc}", file=log, flush=True)

        threading.Thread(target=load, name="fmnist-load", daemon=True).start()

    def on_sighup(self, log=sys.stderr):
        """SIGHUP: reload in a thread (a signal handler must not wait), the outcome as one line on `log`."""

        def reload():
            try:
                served, _ = self.reload()
            except Exception as exc:  # any failure keeps the old models
                print(f"fmnist serve: reload failed, still serving the previous models: {exc}", file=log, flush=True)
                return
            print(f"fmnist serve: reloaded {', '.join(versions(served))}", file=log, flush=True)

        threading.Thread(target=reload, name="fmnist-reload", daemon=True).start()

    def drain_on_sigterm(self):
        """From SIGTERM on, /readyz says 503; uvicorn's own handler (called next) then drains and stops."""
        previous = signal.getsignal(signal.SIGTERM)

        def drain(signum, frame):
            self.draining = True
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, drain)


def versions(served):
    return [f"{name}@{one.version}" for name, one in served.items()]
