"""One thread runs every inference of the server, batching the images of requests that arrive together.

On a 2-core machine, eight request threads each calling torch at once fight over torch's own intra-op threads
and are 5-10 times slower than one caller. A single worker never oversubscribes, and batching what queued
up while it was busy makes each forward pass cheaper per image than one pass per request.
"""

import concurrent.futures
import queue
import threading

import numpy as np

MAX_BATCH = 256  # images per forward pass: beyond this, batching gains nothing and latency grows


class InferenceWorker:
    """`submit(name, images)` -> a Future of `run(name, stacked images)`'s rows for those images.

    metrics, if given, hears `queued(images)` on each submit and `batch(images)` as each forward pass starts."""

    def __init__(self, run, metrics=None):
        self._run = run
        self._metrics = metrics
        self._jobs = queue.SimpleQueue()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._loop, name="fmnist-inference", daemon=True)
        self._thread.start()

    def stop(self):
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def alive(self):
        return self._thread is not None and self._thread.is_alive()

    def submit(self, name, images):
        if self._metrics is not None:
            self._metrics.queued(len(images))
        future = concurrent.futures.Future()
        self._jobs.put((name, images, future))
        return future

    def _next_batch(self, first):
        """`first` and whatever else is queued now, up to MAX_BATCH images; None in the list means stop."""
        batch, count = [first], len(first[1])
        while count < MAX_BATCH:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            batch.append(job)
            if job is None:
                break
            count += len(job[1])
        return batch

    def _loop(self):
        while (first := self._jobs.get()) is not None:
            batch = self._next_batch(first)
            jobs = [job for job in batch if job is not None]
            for name in dict.fromkeys(name for name, _, _ in jobs):
                self._run_group([job for job in jobs if job[0] == name])
            if len(jobs) < len(batch):
                return

    def _run_group(self, jobs):
        """One forward pass for all jobs of one model; each Future gets its own rows (or the exception)."""
        if self._metrics is not None:
            self._metrics.batch(sum(len(images) for _, images, _ in jobs))
        jobs = [job for job in jobs if job[2].set_running_or_notify_cancel()]
        if not jobs:
            return
        try:
            rows = self._run(jobs[0][0], np.concatenate([images for _, images, _ in jobs]))
        except Exception as exc:  # handed to the request that asked, which turns it into its response
            for _, _, future in jobs:
                future.set_exception(exc)
            return
        start = 0
        for _, images, future in jobs:
            future.set_result(rows[start : start + len(images)])
            start += len(images)
