"""`GET /metrics`: the server's counters in the Prometheus text format, with the official client library.

One process keeps its metrics in a registry of its own (one per app, so tests can run several). Under
`serve --workers N` each worker counts in files of a directory the parent owns (the library's multiprocess
mode: PROMETHEUS_MULTIPROC_DIR, in the environment each spawned worker starts with, so set before it imports
the library), and whichever worker answers `/metrics` adds up every worker's files, those of workers that died
included, so no count goes backwards. The parent marks a dead worker's gauge files dead (`mark_dead`) and
removes the directory when it stops.
"""

import contextlib
import os
import shutil
import tempfile

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"  # the variable prometheus_client itself reads
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
IMAGE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServerMetrics:
    """The server's metrics; every method is cheap and thread-safe (the library locks)."""

    def __init__(self):
        self.multiprocess = bool(os.environ.get(MULTIPROC_DIR))
        # Under multiprocess mode the values live in files; a private registry keeps tests' apps apart otherwise.
        self.registry = CollectorRegistry(auto_describe=True)
        own = {"registry": self.registry}
        self.requests = Counter("fmnist_requests", "HTTP requests answered", ["endpoint", "status", "model"], **own)
        self.latency = Histogram(
            "fmnist_request_seconds", "time to answer a request", ["endpoint"], buckets=LATENCY_BUCKETS, **own
        )
        self.request_images = Histogram(
            "fmnist_request_images", "images classified per /predict request", buckets=IMAGE_BUCKETS, **own
        )
        self.batch_images = Histogram(
            "fmnist_batch_images", "images per forward pass of the inference worker", buckets=IMAGE_BUCKETS, **own
        )
        self.queue = Gauge(
            "fmnist_queue_images", "images waiting for the inference worker", multiprocess_mode="livesum", **own
        )
        self.unknown = Counter("fmnist_unknown_answers", "images answered unknown", ["model"], **own)
        self.refused = Counter("fmnist_refused_uploads", "requests or images refused, by reason", ["reason"], **own)

    def answered(self, endpoint, status, model, seconds):
        self.requests.labels(endpoint, str(status), model or "").inc()
        self.latency.labels(endpoint).observe(seconds)

    def classified(self, model, images, unknown, unreadable):
        """A /predict answer: the images it classified, how many were unknown, how many files were not images."""
        self.request_images.observe(images)
        if unknown:
            self.unknown.labels(model).inc(unknown)
        if unreadable:
            self.refusal("not_an_image", unreadable)

    def refusal(self, reason, count=1):
        self.refused.labels(reason).inc(count)

    def queued(self, images):
        self.queue.inc(images)

    def batch(self, images):
        """The inference worker took `images` off its queue for one forward pass."""
        self.queue.dec(images)
        self.batch_images.observe(images)

    def exposition(self):
        """The text `/metrics` answers: this process's registry, or every worker's files."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        gathered = CollectorRegistry()
        multiprocess.MultiProcessCollector(gathered)
        return generate_latest(gathered)


@contextlib.contextmanager
def multiprocess_dir():
    """For the parent of `--workers`: a fresh directory for the workers' metric files, named in the environment
    the workers inherit, removed (and the variable restored) when serving ends."""
    previous = os.environ.get(MULTIPROC_DIR)
    folder = tempfile.mkdtemp(prefix="fmnist-metrics-")
    os.environ[MULTIPROC_DIR] = folder
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if previous is None:
            os.environ.pop(MULTIPROC_DIR, None)
        else:
            os.environ[MULTIPROC_DIR] = previous


def mark_dead(pid, folder):
    """A worker that exited: its live gauges stop counting (its counters stay in the totals)."""
    multiprocess.mark_process_dead(pid, folder)
