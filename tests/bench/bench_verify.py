"""Benchmark: math verifications per second with the worker pool vs one worker process, same run, same items; and
the `math` verifier's checks per second through the verify stage vs math-verify on every item; and the code
sandbox's cost per program with bubblewrap vs without (`isolation: none`).

    python -m tests.bench.bench_verify [--items 2000] [--workers 2] [--repeats 3] [--math-samples 2000]
        [--sandbox-programs 40]

Both pools are started and warmed (math-verify imported) before timing, so the figures are steady-state throughput.
The items are cut into slices and each slice runs on the single worker, then on the pool: other processes share the
cores, and alternating small slices gives both sides the same bursts of load; the ratio is total items over total
wall time, pool over single. Worker CPU milliseconds per verification (from /proc) are printed too: equal figures
mean the pool adds no work, so its speed-up is bounded only by idle cores. The load average is printed next to the
figures, and so is the machine's ceiling measured in the same run: plain CPU-bound processes, N over one, no pool
(on an idle 2-core machine about 2; on a shared one much less). The pooled verdicts must equal the single-process
ones (the benchmark fails otherwise).

The second part runs model outputs of a math build (`make_math_samples`: integer answers stated as the system prompt
asks, decimals, boxed fractions and radicals, intervals and tuples, hedges, guesses and LaTeX tricks) through `verify_samples`
with the same pool, and as its baseline in the same run sends every extracted answer with its gold to math-verify in
the pool (what the verifier did for every item before it screened answers and compared integers itself).

The sandbox part grades coding-family reference programs (each against its 6 tests: one sandbox run) through
`check_program`, alternating bubblewrap and a plain subprocess per program, and prints the median milliseconds per
program of each and their ratio. Every verdict must be "correct" on both sides.
"""

from __future__ import annotations

import argparse
import os
import random
import time

from cotforge.tasks.verify.pool import VerifierPool


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
        items.append(("cotforge.tasks.verify.pool:check_math", (pred, gold)))
    return items


PER_QUESTION = 4  # samples per question in the math verifier part (a build samples several: answers repeat)


def make_math_samples(n: int, seed: int = 0, per_question: int = PER_QUESTION) -> list[tuple[str, str]]:
    """(model output, gold) pairs like a math build's, `per_question` samples per question (a right answer repeats);
    about 60% right, one in ten a hedge, an unstated guess or a LaTeX trick (the answer contract's false, the
    screens' null)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        question = random.Random(f"{seed}:{i // per_question}")
        a, b = question.randint(1, 999), question.randint(2, 60)
        right = rng.random() < 0.6
        kind = (i // per_question) % 10
        if kind < 6:
            gold, text = str(a), f"Step 1: {a - b} + {b} = {a}\nThe answer is {a if right else a + 1}."
        elif kind == 6:
            gold, text = f"\\frac{{{a}}}{{4}}", f"Dividing by 4:\nThe answer is {a / 4 if right else a / 4 + 1}."
        elif kind == 7:
            gold = f"\\frac{{{a}\\sqrt{{2}}}}{{{b}}}"
            text = f"So $x = \\boxed{{\\frac{{{a}\\sqrt{{2}}}}{{{b if right else b + 1}}}}}$."
        elif kind == 8:
            gold = f"[{b}, {a + b})" if (i // per_question) % 20 == 8 else f"({b}, {a + b})"
            text = f"Hence the answer is ${gold if right else f'({b}, {a})'}$."
        else:
            gold, text = str(a), rng.choice([f"The answer is {a} or {a + 1}.", f"I am not sure. Maybe {a}",
                                             f"The answer is $\\phantom{{1}}{a}$."])  # false, false, null
        out.append((text, gold))
    return out


def bench_math_verifier(n: int, workers: int, repeats: int, timeout_s: float) -> dict:
    """Samples per second through `verify_samples` (math questions) vs math-verify on every extracted answer."""
    from cotforge.schemas.config_verify import VerifyConfig
    from cotforge.tasks.verify.cascade import verify_samples
    from cotforge.tasks.verify.extract import extract_answers
    from tests.verify_helpers import question, sample, tables

    pairs = make_math_samples(n)
    golds = {f"q{i // PER_QUESTION}": gold for i, (_, gold) in enumerate(pairs)}
    samples, questions = tables([question(qid, gold) for qid, gold in golds.items()],
                                [sample(f"q{i // PER_QUESTION}", i % PER_QUESTION, text) for i, (text, _) in
                                 enumerate(pairs)])
    extracted = extract_answers([text for text, _ in pairs], ["number"] * n)
    everything = [("cotforge.tasks.verify.pool:check_math", (e.answer, gold))
                  for e, (_, gold) in zip(extracted, pairs) if e.answer is not None]
    wall = {"stage": 0.0, "baseline": 0.0}
    with VerifierPool(workers) as pool:
        pool.run(make_items(4 * workers, seed=1), timeout_s)  # start the workers, import math-verify
        for _ in range(repeats):  # alternating, so both see the same load from other processes
            start = time.perf_counter()
            table = verify_samples(samples, questions, "r", "b", VerifyConfig(timeout_s=timeout_s), pool)
            wall["stage"] += time.perf_counter() - start
            start = time.perf_counter()
            pool.run(everything, timeout_s)
            wall["baseline"] += time.perf_counter() - start
    verdicts = table.column("verdict").to_pylist()
    stage_rate, baseline_rate = n * repeats / wall["stage"], len(everything) * repeats / wall["baseline"]
    result = {"math_samples": n, "stage_per_s": stage_rate, "baseline_per_s": baseline_rate,
              "stage_ratio": stage_rate / baseline_rate, "stage_true": verdicts.count(True),
              "stage_false": verdicts.count(False), "stage_null": verdicts.count(None)}
    print(f"math verifier, {n} model outputs ({PER_QUESTION} per question) x {repeats} (integers, decimals, boxed "
          f"fractions and radicals, intervals and tuples, hedges): through verify_samples {stage_rate:.1f} samples/s; "
          f"baseline, math-verify on each of the {len(everything)} extracted answers in the same pool, "
          f"{baseline_rate:.1f}/s")
    print(f"ratio verify stage / math-verify on every item: {result['stage_ratio']:.2f}; verdicts "
          f"{result['stage_true']} true, {result['stage_false']} false, {result['stage_null']} null")
    return result


def _autogroup_enabled() -> bool:
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def _cpu_seconds(pool: VerifierPool) -> float:
    """User + system CPU seconds used so far by the pool's worker processes (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for worker in pool._workers:
        with open(f"/proc/{worker.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _spin(loops: int) -> None:
    x = 0
    for i in range(loops):
        x += i * i % 7


def machine_ceiling(workers: int, seconds: float = 0.5) -> float:
    """Throughput of `workers` plain CPU-bound processes over one, measured now: what the cores give this session.

    No pool, no IPC: the best ratio any pool could reach under the same load."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    start = time.perf_counter()
    _spin(200_000)
    loops = max(10_000, int(200_000 * seconds / max(time.perf_counter() - start, 1e-6)))

    def wall(n: int) -> float:
        processes = [ctx.Process(target=_spin, args=(loops,)) for _ in range(n)]
        begin = time.perf_counter()
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        return time.perf_counter() - begin

    one = min(wall(1) for _ in range(2))
    many = min(wall(workers) for _ in range(2))
    return workers * one / many


def sandbox_cost(programs: int, seed: int = 0) -> dict:
    """Median wall milliseconds per graded program with bubblewrap and without, measured alternately."""
    import statistics

    from cotforge.schemas.config_verify import SandboxConfig
    from cotforge.tasks.questions.families.coding import CodingFamily
    from cotforge.tasks.verify.program_tests import check_program
    from cotforge.tasks.verify.sandbox import _sandbox_uid, isolation_problem

    problem = isolation_problem(_sandbox_uid())
    if problem is not None:
        print(f"sandbox: bubblewrap unavailable here ({problem}); no figures")
        return {"sandbox_unavailable": problem}
    items = CodingFamily().generate(programs, 3, seed=seed)
    limits = {name: SandboxConfig(isolation=name).model_dump_json() for name in ("bubblewrap", "none")}
    for name in limits:  # warm: the first run probes bwrap and finds the interpreter
        check_program(items[0].gold_answer, items[0].tests, limits[name])
    times: dict[str, list[float]] = {name: [] for name in limits}
    for item in items:
        for name, config in limits.items():
            start = time.perf_counter()
            verdict = check_program(item.gold_answer, item.tests, config)
            times[name].append(1000 * (time.perf_counter() - start))
            if verdict[0] is not True:
                raise AssertionError(f"the reference failed its own tests under {name}: {verdict}")
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"sandbox: {programs} reference programs graded (one run each, {items[0].tests.count('assert')} value "
          f"tests), alternating")
    print(f"median ms per program: bubblewrap {median['bubblewrap']:.1f}, plain subprocess (isolation: none) "
          f"{median['none']:.1f}; ratio bubblewrap / plain: {median['bubblewrap'] / median['none']:.2f}")
    return {"sandbox_programs": programs, "sandbox_bwrap_ms": median["bubblewrap"], "sandbox_plain_ms": median["none"],
            "sandbox_ratio": median["bubblewrap"] / median["none"]}


def _measure(pool: VerifierPool, items, timeout_s: float) -> tuple[float, float, list]:
    """(wall seconds, worker CPU seconds, results) of one run."""
    cpu = _cpu_seconds(pool)
    start = time.perf_counter()
    results = pool.run(items, timeout_s)
    return time.perf_counter() - start, _cpu_seconds(pool) - cpu, results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=100, help="items per alternating slice")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--sandbox-programs", type=int, default=40, help="programs graded per side; 0: skip")
    parser.add_argument("--math-samples", type=int, default=2000, help="model outputs for the math verifier part")
    args = parser.parse_args(argv)

    items = make_items(args.items)
    chunks = [items[i:i + args.chunk] for i in range(0, len(items), args.chunk)]
    warmup = make_items(4 * args.workers, seed=1)
    wall = {"single": 0.0, "pooled": 0.0}
    cpu = {"single": 0.0, "pooled": 0.0}
    load_before = os.getloadavg()[0]
    with VerifierPool(1) as single, VerifierPool(args.workers) as pooled:
        single.run(warmup, args.timeout)  # starts the workers and imports math-verify in each
        pooled.run(warmup, args.timeout)
        reference: list | None = None
        for _ in range(args.repeats):
            results: dict[str, list] = {"single": [], "pooled": []}
            # Slices alternate, so both sides see the same bursts of load from other processes on the machine.
            for chunk in chunks:
                for name, pool in (("single", single), ("pooled", pooled)):
                    seconds, cpu_seconds, out = _measure(pool, chunk, args.timeout)
                    wall[name] += seconds
                    cpu[name] += cpu_seconds
                    results[name] += out
            if results["pooled"] != results["single"] or (reference and results["single"] != reference):
                raise AssertionError("the pool changed verdicts")
            reference = results["single"]
        restarts = single.restarts + pooled.restarts
    ceiling = machine_ceiling(args.workers)
    n = args.items * args.repeats
    single_rate, pooled_rate = n / wall["single"], n / wall["pooled"]
    load = os.getloadavg()
    timeouts = sum(1 for _, reason in reference if reason == "timeout")
    result = {
        "items": args.items, "workers": args.workers, "repeats": args.repeats,
        "single_per_s": single_rate, "pooled_per_s": pooled_rate, "ratio": pooled_rate / single_rate,
        "single_cpu_ms": 1000 * cpu["single"] / n, "pooled_cpu_ms": 1000 * cpu["pooled"] / n,
        "equal": sum(1 for verdict, _ in reference if verdict is True), "timeouts": timeouts, "restarts": restarts,
        "load_avg_1m": (load_before + load[0]) / 2, "cpus": os.cpu_count(), "machine_ceiling": ceiling,
    }
    print(f"items: {args.items} math verifications (math-verify) x {args.repeats} repeats, in alternating slices of "
          f"{args.chunk} (one worker, then the pool)")
    print(f"machine: {os.cpu_count()} cpus, 1-min load average {load_before:.2f} before, {load[0]:.2f} after "
          f"(other processes share the cores)")
    if _autogroup_enabled():
        print("note: the kernel's autogroup scheduling shares CPU between sessions, not processes: while other "
              "sessions keep the cores busy, this one (parent and workers together) gets its share whatever the "
              "number of workers; compare the CPU ms per verification to see the pool's own overhead")
    print(f"one worker process: {single_rate:.1f} verifications/s, {result['single_cpu_ms']:.2f} worker CPU ms each")
    print(f"pool of {args.workers} workers: {pooled_rate:.1f} verifications/s, "
          f"{result['pooled_cpu_ms']:.2f} worker CPU ms each")
    print(f"ratio pool / one process: {result['ratio']:.2f}")
    print(f"machine ceiling now ({args.workers} plain CPU-bound processes / 1, no pool): {ceiling:.2f}")
    print(f"pool ratio / machine ceiling: {result['ratio'] / ceiling:.2f} (1.0: the pool gets all the cores give)")
    print(f"verdicts: {result['equal']} equal, {args.items - result['equal']} not, {timeouts} timeouts, "
          f"{restarts} worker restarts (identical in every run)")
    result.update(bench_math_verifier(args.math_samples, args.workers, args.repeats, args.timeout))
    if args.sandbox_programs:
        result |= sandbox_cost(args.sandbox_programs)
    return result


if __name__ == "__main__":
    main()
