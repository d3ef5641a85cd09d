"""`fmnist serve --workers 2` under steady load and faults: a worker SIGKILLed, a slowloris crowd, then SIGTERM.

    .venv/bin/python bench/bench_load.py RUN_DIR [--seconds 120] [--rate 60] [--out FILE]

Sends one-image /predict requests at a fixed rate (open loop: a slow answer does not slow the sender) for
--seconds. At a third of the time one worker is SIGKILLed (counted: the requests that failed, and the seconds until
the next answer); from half to two thirds 200 slowloris connections trickle a request head a byte a second (the
latency of the normal clients is measured apart for that window). At the end the server gets SIGTERM while the
load still runs: every request it accepted must be answered, and it must exit 0 (seconds counted). Prints requests
a second, p50/p99, errors by kind and the server's resident memory (parent and workers) after 1,000 requests and
at the end; writes JSON through bench/record.py (bench/results/load-DATE.json, or --out).
"""

import argparse
import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

import record

NAME = "load"


def photo():
    array = np.full((120, 80, 3), 255, np.uint8)
    array[20:100, 15:60] = (40, 40, 40)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def family(pid):
    """The server's pid and its children's (the workers)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(c) for c in task.read_text().split()]
    return [pid, *children]


def rss_mb(pids):
    """{pid: resident MB} of each process that still runs."""
    sizes = {}
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        kb = [int(line.split()[1]) for line in lines if line.startswith("VmRSS:")]  # none for a zombie
        sizes[pid] = round(sum(kb) / 1024, 1)
    return sizes


def start(run_dir, port, log):
    command = [sys.executable, "-m", "fmnist", "serve", run_dir, "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start")


async def slowloris(port, until):
    """One connection that sends a request head a byte a second until `until` (monotonic)."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for byte in b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000:
            if time.monotonic() > until:
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1)
        writer.close()
    except OSError:
        pass


async def exited(server):
    """Seconds from now until the server process ends."""
    began = time.monotonic()
    while server.poll() is None:
        await asyncio.sleep(0.02)
    return time.monotonic() - began


async def replaced(client, url, before):
    """Seconds from now until a worker started after the kill answers (/health names the worker that answered)."""
    began = time.monotonic()
    while time.monotonic() - began < 60:
        with contextlib.suppress(httpx.TransportError):
            if (await client.get(url + "/health")).json()["worker"] not in before:
                return time.monotonic() - began
        await asyncio.sleep(0.1)
    return None


async def one(client, url, content, results):
    began = time.monotonic()
    try:
        answer = await client.post(url + "/predict", files={"files": ("a.png", content, "image/png")})
        kind = str(answer.status_code)
    except (httpx.ConnectError, httpx.ConnectTimeout):
        kind = "refused"  # never accepted
    except httpx.TimeoutException:
        kind = "timeout"
    except httpx.TransportError:
        kind = "dropped"  # accepted, then the connection ended without an answer
    results.append((began, time.monotonic() - began, kind))


async def drive(args, server, port):
    url, content, results, events = f"http://127.0.0.1:{port}", photo(), [], {}
    # A connection per request: a failure then counts a request the server accepted and did not answer, never an
    # idle keep-alive connection that a killed or stopping worker closed (the client's retry would be right there).
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        start_time, tasks, sent = time.monotonic(), [], 0
        kill_at, crowd = args.seconds / 3, (args.seconds / 2, 2 * args.seconds / 3)
        while (now := time.monotonic() - start_time) < args.seconds + 2:
            if sent == 1_000 and "rss_1000" not in events:
                events["rss_1000"] = rss_mb(family(server.pid))
            if now >= kill_at and "killed" not in events:
                victim = (await client.get(url + "/health")).json()["worker"]  # a worker, not the parent
                before = set(family(server.pid))
                os.kill(victim, signal.SIGKILL)
                events["killed"] = time.monotonic()
                events["replaced"] = asyncio.create_task(replaced(client, url, before))
            if now >= crowd[0] and "crowd" not in events:
                until = start_time + crowd[1]
                events["crowd"] = [asyncio.create_task(slowloris(port, until)) for _ in range(args.slowloris)]
            if now >= args.seconds and "term" not in events:
                events["rss_end"] = rss_mb(family(server.pid))
                server.send_signal(signal.SIGTERM)
                events["term"] = time.monotonic()
                events["exit"] = asyncio.create_task(exited(server))
            tasks.append(asyncio.create_task(one(client, url, content, results)))
            sent += 1
            await asyncio.sleep(max(0.0, start_time + sent / args.rate - time.monotonic()))
        await asyncio.gather(*tasks, *events["crowd"])
        events["exit_seconds"] = await events["exit"]
        events["replaced_seconds"] = await events["replaced"]
    return results, events, start_time, crowd


def summary(args, results, events, start_time, crowd, exit_code):
    before_term = [r for r in results if r[0] < events["term"]]
    ok = [r for r in before_term if r[2] == "200"]
    in_crowd = [r[1] for r in ok if crowd[0] <= r[0] - start_time < crowd[1]]
    after_kill = [r for r in ok if r[0] >= events["killed"]]
    kinds = {}
    for _, _, kind in before_term:
        kinds[kind] = kinds.get(kind, 0) + 1
    term_kinds = {}
    for began, _, kind in results:
        if began >= events["term"]:
            term_kinds[kind] = term_kinds.get(kind, 0) + 1
    latencies = np.array([r[1] for r in ok]) * 1000
    return {
        "seconds": args.seconds,
        "target_rate": args.rate,
        "requests": len(before_term),
        "requests_per_second": round(len(ok) / args.seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "answers_by_kind": kinds,
        # the requests in flight when the worker was killed (both workers held them) and those of them that failed;
        # a request that failed and was not in flight then was not the killed worker's
        "in_flight_at_kill": sum(1 for r in before_term if r[0] <= events["killed"] <= r[0] + r[1]),
        "lost_at_kill": sum(1 for r in before_term if r[2] != "200" and r[0] <= events["killed"] <= r[0] + r[1]),
        "failed_not_in_flight_at_kill": sum(
            1 for r in before_term if r[2] != "200" and not r[0] <= events["killed"] <= r[0] + r[1]
        ),
        "seconds_to_next_answer_after_kill": round(min(r[0] + r[1] for r in after_kill) - events["killed"], 3),
        "seconds_until_the_replacement_answers": events["replaced_seconds"] and round(events["replaced_seconds"], 2),
        "slowloris_connections": args.slowloris,
        "p99_ms_during_slowloris": round(float(np.percentile(np.array(in_crowd) * 1000, 99)), 1),
        "rss_mb_after_1000": round(sum(events["rss_1000"].values()), 1) if "rss_1000" in events else None,
        "rss_mb_at_end": round(sum(events["rss_end"].values()), 1),
        # the processes that ran from the 1,000th request to the end (the parent, the worker not killed): a leak
        "rss_mb_growth_of_survivors": {
            str(pid): round(events["rss_end"][pid] - mb, 1)
            for pid, mb in events.get("rss_1000", {}).items()
            if pid in events["rss_end"]
        },
        "sigterm_answers_by_kind": term_kinds,
        "sigterm_accepted_unanswered": term_kinds.get("dropped", 0) + term_kinds.get("timeout", 0),
        "sigterm_exit_code": exit_code,
        "sigterm_seconds_to_exit": round(events["exit_seconds"], 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by fmnist train or compare")
    parser.add_argument("--seconds", type=float, default=120, help="time under load (default: 120)")
    parser.add_argument("--rate", type=float, default=60, help="requests a second sent (default: 60)")
    parser.add_argument("--slowloris", type=int, default=200, help="slow connections in the middle (default: 200)")
    parser.add_argument("--log", metavar="FILE", help="the server's standard error (access log) goes here")
    parser.add_argument("--out", metavar="FILE", help="write the JSON here (default: bench/results/load-DATE.json)")
    args = parser.parse_args()
    head = record.header()
    print(record.title("fmnist serve --workers 2 under load and faults", head))
    port = 18_000 + os.getpid() % 10_000
    with open(args.log or os.devnull, "wb") as log:
        server = start(args.run_dir, port, log)
    results, events, start_time, crowd = asyncio.run(drive(args, server, port))
    exit_code = server.wait(timeout=60)
    doc = summary(args, results, events, start_time, crowd, exit_code)
    for key, value in doc.items():
        print(f"{key:36} {value}")
    record.save(NAME, doc, args.out, head=head)


if __name__ == "__main__":
    main()
