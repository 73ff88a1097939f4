"""Benchmark: math verifications per second with the worker pool vs one worker process, same run, same items.

    python -m tests.bench.bench_verify [--items 2000] [--workers 2] [--repeats 3]

Both pools are started and warmed (math-verify imported) before timing, so the figures are steady-state throughput.
The single-process and pooled runs alternate `repeats` times and the best of each counts: other processes share the
cores, and the best run is the one least disturbed by them. The load average is printed next to the figures. The
pooled verdicts must equal the single-process ones (the benchmark fails otherwise).
"""

from __future__ import annotations

import argparse
import os
import random
import time

from tasks.verify_pool import VerifierPool


def make_items(n: int, seed: int = 0) -> list[tuple[str, tuple]]:
    """A mix of what the math verifier sees: integers, decimals, fractions, LaTeX and expressions; ~60% equal."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        a, b = rng.randint(1, 999), rng.randint(2, 60)
        kind = i % 5
        if kind == 0:
            pred, gold = str(a), str(a if rng.random() < 0.6 else a + 1)
        elif kind == 1:
            pred, gold = f"{a / 4:.2f}", f"\\frac{{{a}}}{{4}}" if rng.random() < 0.6 else f"{a + 1}/4"
        elif kind == 2:
            pred, gold = f"{a}/{b}", f"\\frac{{{a}}}{{{b}}}" if rng.random() < 0.6 else f"\\frac{{{a}}}{{{b + 1}}}"
        elif kind == 3:
            pred, gold = f"(x+{b})^2", f"x^2+{2 * b}x+{b * b}" if rng.random() < 0.6 else f"x^2+{b}x+{b * b}"
        else:
            pred, gold = f"\\sqrt{{{b * b}}}", str(b if rng.random() < 0.6 else b + 1)
        items.append(("tasks.verify_pool:check_math", (pred, gold)))
    return items


def _timed_run(pool: VerifierPool, items, timeout_s: float) -> tuple[float, list]:
    start = time.perf_counter()
    results = pool.run(items, timeout_s)
    return time.perf_counter() - start, results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    items = make_items(args.items)
    warmup = make_items(4 * args.workers, seed=1)
    with VerifierPool(1) as single, VerifierPool(args.workers) as pooled:
        single.run(warmup, args.timeout)  # starts the workers and imports math-verify in each
        pooled.run(warmup, args.timeout)
        single_times, pooled_times = [], []
        reference = None
        for _ in range(args.repeats):
            seconds, single_results = _timed_run(single, items, args.timeout)
            single_times.append(seconds)
            seconds, pooled_results = _timed_run(pooled, items, args.timeout)
            pooled_times.append(seconds)
            reference = reference or single_results
            if pooled_results != single_results or single_results != reference:
                raise AssertionError("the pool changed verdicts")
        timeouts = sum(1 for verdict, reason in reference if reason == "timeout")
    single_rate = args.items / min(single_times)
    pooled_rate = args.items / min(pooled_times)
    load = os.getloadavg()
    result = {
        "items": args.items, "workers": args.workers, "repeats": args.repeats,
        "single_per_s": single_rate, "pooled_per_s": pooled_rate, "ratio": pooled_rate / single_rate,
        "equal": sum(1 for verdict, _ in reference if verdict is True), "timeouts": timeouts,
        "load_avg_1m": load[0], "cpus": os.cpu_count(),
    }
    print(f"items: {args.items} math verifications (math-verify), best of {args.repeats} alternating runs")
    print(f"machine: {os.cpu_count()} cpus, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)")
    print(f"one worker process: {single_rate:.1f} verifications/s")
    print(f"pool of {args.workers} workers: {pooled_rate:.1f} verifications/s")
    print(f"ratio pool / one process: {result['ratio']:.2f}")
    print(f"verdicts: {result['equal']} equal, {args.items - result['equal']} not, {timeouts} timeouts "
          f"(identical in every run)")
    return result


if __name__ == "__main__":
    main()
