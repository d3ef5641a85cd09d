"""Throughput and latency of `fmnist serve` over HTTP: 8 concurrent keep-alive clients, one image per request.

    flock /tmp/fmnist-cpu.lock .venv/bin/python bench/bench_serve.py RUN_DIR [--workers 1,2] [--seconds 15]
        [--runtimes torch,onnx] [--out FILE]

Starts the real server (`python -m fmnist serve RUN_DIR [--workers N]`, once per N) on a free loopback port and
drives it from one
asyncio loop with plain sockets, so the client costs little of the CPU the server needs. Each request sends one
product-style JPEG (a test item upscaled 6x on white, as a shop shows it); every answer is checked against
the model run in this process. Prints the CPU, the date, a JSON document and a table; writes the JSON to
bench/results/serve-DATE.json (or --out).
"""

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

import record
from fmnist.predict import answers
from fmnist.predict import images as image_files
from fmnist.rundir import checkpoint

NAME = "serve"
TARGETS = {"requests_per_s": 300, "p99_ms": 100, "speedup_of_2_workers": 1.3}
PHOTOS = 64


def photos(run_dir):
    """PHOTOS product-style JPEGs made from the run's test images (beside the model or one level up)."""
    run_dir = Path(run_dir)
    source = next((p for p in (run_dir, run_dir.parent) if (p / "test_images.npz").exists()), None)
    if source is None:
        sys.exit(f"bench_serve: no test_images.npz in {run_dir} or its parent")
    items = np.load(source / "test_images.npz")["images"][:PHOTOS]
    encoded = []
    for item in items:
        photo = Image.new("L", (28 * 6 + 70, 28 * 6 + 60), 255)
        photo.paste(Image.fromarray(255 - item).resize((168, 168), Image.Resampling.BICUBIC), (30, 40))
        buffer = io.BytesIO()
        photo.convert("RGB").save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return encoded


def request_bytes(port, name, content):
    boundary = b"fmnistbench"
    disposition = b'Content-Disposition: form-data; name="files"; filename="' + name.encode() + b'"\r\n'
    body = b"--%s\r\n%sContent-Type: image/jpeg\r\n\r\n%s\r\n--%s--\r\n" % (boundary, disposition, content, boundary)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary.decode()}\r\n\r\n"
    )
    return head.encode() + body


async def client(port, requests, expected, stop_at, latencies, wrong, offset):
    """One keep-alive connection sending requests back to back until `stop_at` (time.perf_counter)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    index = offset
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        writer.write(requests[index % len(requests)])
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(int(length.split(b":")[1]))
        latencies.append(time.perf_counter() - start)
        ok = head.startswith(b"HTTP/1.1 200 ")
        if not ok or json.loads(body)["predictions"][0]["class_index"] != expected[index % len(requests)]:
            wrong.append(index)
        index += 1
    writer.close()


async def drive(port, requests, expected, clients, seconds):
    latencies, wrong = [], []
    stop_at = time.perf_counter() + seconds
    start = time.perf_counter()
    await asyncio.gather(*(client(port, requests, expected, stop_at, latencies, wrong, i * 7) for i in range(clients)))
    return latencies, wrong, time.perf_counter() - start


def start_server(run_dir, model, workers, runtime, log):
    """(server process, port, model name). `log`: an open file for the server's standard error (its access log:
    a line per request, so never a pipe nobody reads — it would fill up and block the server mid-benchmark)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "fmnist", "serve", str(run_dir), "--port", str(port), "--workers", str(workers)]
    command += ["--runtime", runtime]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/models", timeout=1) as response:
                listing = json.load(response)
            break
        except OSError:
            time.sleep(0.2)
    else:
        server.kill()
        sys.exit("bench_serve: the server did not start (--log FILE keeps its standard error)")
    chosen = model or listing["default"]
    return server, port, chosen


def percentile(values, q):
    return float(np.percentile(values, q)) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by fmnist train or compare")
    parser.add_argument("--model", help="for a compare run: which model (default: the server's default)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections (default: 8)")
    parser.add_argument("--workers", default="1", help="server processes, one measurement each (e.g. 1,2)")
    parser.add_argument("--seconds", type=float, default=15, help="measured time (default: 15)")
    parser.add_argument("--out", metavar="FILE", help="write the JSON here (default: bench/results/serve-DATE.json)")
    parser.add_argument("--runtimes", default="torch", help="what runs the models, one measurement each: torch,onnx")
    parser.add_argument("--log", metavar="FILE", help="the server's standard error (access log) goes here")
    args = parser.parse_args()

    images = photos(args.run_dir)
    runs, model_name = [], args.model
    for runtime in [r.strip() for r in args.runtimes.split(",")]:
        for workers in [int(n) for n in args.workers.split(",")]:
            latencies, wrong, elapsed, model_name = measure(args, images, workers, runtime)
            runs.append({"runtime": runtime, **summary(workers, latencies, wrong, elapsed)})
    return report(args, model_name, images, runs)


def measure(args, images, workers, runtime):
    """(latencies, wrong answers, seconds, model name) of one server with `workers` processes."""
    with open(args.log or os.devnull, "ab") as log:
        server, port, model_name = start_server(args.run_dir, args.model, workers, runtime, log)
    try:
        single = (Path(args.run_dir) / checkpoint.MANIFEST).exists()
        model, _ = checkpoint.load(Path(args.run_dir) if single else Path(args.run_dir) / model_name)
        seen = np.stack([image_files.to_fashion_mnist(image_files.load_image("p.jpg", content=c)) for c in images])
        expected = answers.probabilities(model, seen).argmax(1).tolist()
        del model  # the server needs the CPU from here on
        query = f"?model={model_name}" if args.model else ""
        requests = [request_bytes(port, f"photo{i}.jpg", c) for i, c in enumerate(images)]
        requests = [r.replace(b"POST /predict ", f"POST /predict{query} ".encode(), 1) for r in requests]
        asyncio.run(drive(port, requests, expected, args.clients, 2))  # warm-up: threads, caches, allocator
        latencies, wrong, elapsed = asyncio.run(drive(port, requests, expected, args.clients, args.seconds))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return latencies, wrong, elapsed, model_name


def summary(workers, latencies, wrong, elapsed):
    return {
        "workers": workers,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "wrong_answers": len(wrong),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        **{f"p{q}_ms": round(percentile(latencies, q), 2) for q in (50, 90, 99)},
        "max_ms": round(max(latencies) * 1000, 2),
    }


def show(results, head):
    print(record.title("fmnist serve over HTTP", head))
    print(json.dumps(results, indent=2))
    print(
        f"\n{'model':<12}{'runtime':>8}{'workers':>8}{'clients':>8}{'requests':>10}{'req/s':>9}{'vs 1':>7}"
        f"{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'wrong':>7}"
    )
    for run in results["runs"]:
        print(
            f"{results['model']:<12}{run['runtime']:>8}{run['workers']:>8}{results['clients']:>8}{run['requests']:>10}"
            f"{run['requests_per_s']:>9.1f}{run.get('speedup', ''):>7}"
            f"{run['p50_ms']:>9.2f}{run['p90_ms']:>9.2f}{run['p99_ms']:>9.2f}{run['wrong_answers']:>7}"
        )
    print(
        f"targets: >= {TARGETS['requests_per_s']} req/s, p99 <= {TARGETS['p99_ms']} ms, 0 wrong; 2 workers >= "
        f"{TARGETS['speedup_of_2_workers']}x 1 worker: " + ("met" if results["meets_targets"] else "NOT met")
    )


def report(args, model_name, images, runs):
    for run in runs:  # against one worker of the same runtime
        one = next((r for r in runs if r["workers"] == 1 and r["runtime"] == run["runtime"]), None)
        if one is not None and run is not one:
            run["speedup"] = round(run["requests_per_s"] / one["requests_per_s"], 2)
    head = record.header()
    results = {
        "benchmark": "fmnist serve over HTTP",
        "run_dir": str(args.run_dir),
        "model": model_name,
        "clients": args.clients,
        "image": f"JPEG {Image.open(io.BytesIO(images[0])).size[0]}x{Image.open(io.BytesIO(images[0])).size[1]},"
        f" {statistics.mean(map(len, images)) / 1000:.1f} kB on average",
        "runs": runs,
        "targets": TARGETS,
    }
    best = max(runs, key=lambda run: run["requests_per_s"])
    twos = [run for run in runs if run["workers"] == 2 and "speedup" in run]
    results["meets_targets"] = (
        best["requests_per_s"] >= TARGETS["requests_per_s"]
        and all(run["p99_ms"] <= TARGETS["p99_ms"] and not run["wrong_answers"] for run in runs)
        and all(two["speedup"] >= TARGETS["speedup_of_2_workers"] for two in twos)
    )
    show(results, head)
    record.save(NAME, results, args.out, head=head)
    return 0 if results["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
