"""docs/serving.md's generated parts: `fmnist serve --workers 2` under load and faults, against issue 35's
acceptance (from bench/results/load-*.json, written by bench/bench_load.py)."""

from gen_common import from_newest, table, yes_no

HOW = "python bench/bench_load.py RUN_DIR --seconds 125 --rate 80"
# Issue 35's acceptance under the benchmark's load: the server answers again within this many seconds of a
# worker's SIGKILL; the p99 of normal clients under the slowloris crowd below this; resident memory after
# 10,000 requests within this of that after 1,000; after SIGTERM, exit within this many seconds.
ANSWERS_AGAIN_S, SLOWLORIS_P99_MS, MEMORY_MB, EXIT_S = 5, 1000, 50, 10


def _kinds(counts):
    return ", ".join(f"{kind}: {n:,}" for kind, n in sorted(counts.items())) or "none"


@from_newest("load", HOW)
def load_table(doc):
    growth = doc["rss_mb_at_end"] - doc["rss_mb_after_1000"]
    kill = f"{doc['lost_at_kill']} of the {doc['in_flight_at_kill']} in flight (both workers'), "
    kill += f"{doc['failed_not_in_flight_at_kill']} other"
    rows = [
        ("requests (before SIGTERM)", f"{doc['requests']:,}: {_kinds(doc['answers_by_kind'])}", "", ""),
        (
            "answered a second, p50 / p99",
            f"{doc['requests_per_second']:,} ({doc['target_rate']:g} sent); {doc['p50_ms']:,} / {doc['p99_ms']:,} ms",
            "",
            "",
        ),
        (
            "SIGKILL of one worker: requests lost",
            kill,
            "only those it held",
            yes_no(doc["failed_not_in_flight_at_kill"] == 0),
        ),
        (
            "SIGKILL: the server's next answer",
            f"{doc['seconds_to_next_answer_after_kill']} s",
            f"≤ {ANSWERS_AGAIN_S} s",
            yes_no(doc["seconds_to_next_answer_after_kill"] <= ANSWERS_AGAIN_S),
        ),
        ("SIGKILL: the replacement worker's first answer", f"{doc['seconds_until_the_replacement_answers']} s", "", ""),
        (
            f"{doc['slowloris_connections']} slowloris connections: p99 of normal clients",
            f"{doc['p99_ms_during_slowloris']:,} ms",
            f"< {SLOWLORIS_P99_MS:,} ms",
            yes_no(doc["p99_ms_during_slowloris"] < SLOWLORIS_P99_MS),
        ),
        (
            "resident memory (parent + workers): after 1,000 requests, at the end",
            f"{doc['rss_mb_after_1000']:,} MB, {doc['rss_mb_at_end']:,} MB ({growth:+,.1f} MB)",
            f"within {MEMORY_MB} MB",
            yes_no(abs(growth) <= MEMORY_MB),
        ),
        ("SIGTERM under load: requests sent from the signal on", _kinds(doc["sigterm_answers_by_kind"]), "", ""),
        (
            "accepted and not answered, but at the kill (SIGTERM's included)",
            doc["sigterm_accepted_unanswered"] + doc["failed_not_in_flight_at_kill"],
            "0",
            yes_no(doc["sigterm_accepted_unanswered"] + doc["failed_not_in_flight_at_kill"] == 0),
        ),
        (
            "SIGTERM: exit status, seconds to exit",
            f"{doc['sigterm_exit_code']}, {doc['sigterm_seconds_to_exit']} s",
            f"0, ≤ {EXIT_S} s",
            yes_no(doc["sigterm_exit_code"] == 0 and doc["sigterm_seconds_to_exit"] <= EXIT_S),
        ),
    ]
    return f"{table(('what', 'measured', 'target', 'met'), rows)}\n\nMeasured with `{HOW}`."


TABLES = {"serving-load": load_table}
