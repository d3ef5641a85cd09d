"""How long loading and verifying the four Fashion-MNIST files takes (target: <= 1 s).

Usage: python bench/bench_data.py [--repeats 5] [--data-dir DIR] [--out FILE]
Prints a JSON document and a readable table; writes the JSON to bench/results/data-DATE.json (or --out).
"""

import argparse
import json
import statistics
import time

import record
from fmnist.data import dataset as data

NAME = "data"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/data-DATE.json)")
    args = parser.parse_args()
    load_s, split_s = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        dataset = data.load(args.data_dir)
        load_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        data.split(dataset, seed=0)
        split_s.append(time.perf_counter() - start)
    head = record.header()
    result = {
        "benchmark": "data_load",
        "source": str(dataset.paths["train_images"].parent),
        "repeats": args.repeats,
        "load_seconds_median": round(statistics.median(load_s), 3),
        "load_seconds_max": round(max(load_s), 3),
        "split_seconds_median": round(statistics.median(split_s), 3),
        "target_load_seconds": 1.0,
    }
    print(json.dumps(result, indent=2))
    print("\n" + record.title("data load", head))
    print(f"{'step':<28}{'median s':>10}{'max s':>10}")
    print(f"{'load + verify (4 files)':<28}{result['load_seconds_median']:>10.3f}{result['load_seconds_max']:>10.3f}")
    print(f"{'stratified split + stats':<28}{result['split_seconds_median']:>10.3f}{max(split_s):>10.3f}")
    record.save(NAME, result, args.out, head=head)


if __name__ == "__main__":
    main()
