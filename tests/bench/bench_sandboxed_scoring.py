"""Benchmark: reasoning-gym answers scored in this process (what main did) vs in the scorer sandbox (a warm scorer
inside bubblewrap forking a child per answer), same answers, same run; and assert-mode code tests (test process +
candidate process behind a proxy) vs one sandboxed program run.

    python -m tests.bench.bench_sandboxed_scoring [--answers 2000] [--chunk 100] [--programs 30]

The answers are several per item (the gold, the gold padded with spaces, a wrong one, garbage, and for expression
tasks another expression) over tasks whose scorer evaluates the answer (puzzle24, countdown,
polynomial_multiplication, n_queens, string_insertion) and tasks whose scorer compares text (chain_sum,
spell_backward, word_sorting). Both sides score through a verifier pool worker, as the `reasoning_gym` verifier does:
one worker calls the scorer in its own process (main), the other through its scorer sandbox. Workers are started and
each task's scorer warmed before timing (printed apart: paid once per worker). The answers are cut into slices, each
slice scored by one side then the other, so both share the machine's bursts of load; the ratio is total time over
total time. Every sandboxed score must equal the in-process one (the benchmark fails otherwise), except that the
guard's refusal of an answer that is not an expression agrees with any score below 1.0.

The code part grades one program per run, alternating a value-mode run (one sandboxed program: what a code verdict
cost before) and an assert-mode run (the test in its own process, the candidate behind the proxy), and prints the
median milliseconds of each and their ratio. The load average is printed next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

TASKS = ("puzzle24", "countdown", "polynomial_multiplication", "n_queens", "string_insertion", "chain_sum",
         "spell_backward", "word_sorting")


def _wrong(task: str, gold: str) -> str:
    if gold.lstrip("-").isdigit():
        return str(int(gold) + 1)
    if task in ("puzzle24", "countdown", "polynomial_multiplication"):
        return gold + " + 1"
    return gold[::-1] if gold[::-1] != gold else gold + "x"


def make_answers(n: int) -> list[tuple[str, dict, dict, str]]:
    """(task, config, entry, answer) for about `n` answers, spread over TASKS."""
    from cotforge.tasks.questions import gym

    per_item = 5
    items_per_task = max(1, -(-n // (len(TASKS) * per_item)))
    answers = []
    for task in TASKS:
        config = gym.effective_config(task, {}, None)
        for seed in range(items_per_task):
            entry = gym.entry_json(gym.make_entry(task, config, 1000 + seed))
            gold = str(entry["answer"] if task != "n_queens" else entry["metadata"]["valid_answers"][0])
            extra = "1 + 2 + 3 + 4" if task in ("puzzle24", "countdown") else "garbage answer"
            for answer in (gold, f"  {gold} ", _wrong(task, gold), "no idea", extra):
                answers.append((task, config, entry, answer))
    return answers[:max(n, len(TASKS))]


def score_in_process(task: str, config_json: str, entry_json: str, answer: str) -> tuple:
    """main's path, as a pool item: the task's scorer called in the worker's own process."""
    from cotforge.tasks.questions.gym import scorer

    try:
        return True, scorer(task, json.loads(config_json))(answer, json.loads(entry_json))
    except Exception as error:
        return True, f"error:{type(error).__name__}"


def score_sandboxed(task: str, config_json: str, entry_json: str, answer: str) -> tuple:
    """The sandboxed path, as a pool item: the worker's scorer sandbox forks a child for the answer."""
    from cotforge.schemas.config_verify import SandboxConfig
    from cotforge.tasks.verify.gym_sandbox import score_in_sandbox

    (score, why), = score_in_sandbox(task, config_json, entry_json, (answer,), SandboxConfig(cpu_s=5, wall_s=20.0))
    if why is not None and why.startswith("scorer_error:"):
        return True, "error:" + why.split(":", 1)[1]
    return True, score if why is None else why


def _bench_gym(args) -> dict:
    from cotforge.tasks.verify.pool import VerifierPool

    answers = [(task, json.dumps(config), json.dumps(entry), answer)
               for task, config, entry, answer in make_answers(args.answers)]
    here = "tests.bench.bench_sandboxed_scoring"
    with VerifierPool(1, preload=("cotforge.tasks.questions.gym",)) as local_pool, \
            VerifierPool(1, preload=("cotforge.tasks.verify.gym_sandbox",)) as boxed_pool:
        start = time.perf_counter()
        for task in TASKS:  # start each worker (and its sandbox) and warm each task's scorer
            first = next(a for a in answers if a[0] == task)
            local_pool.run([(f"{here}:score_in_process", first)], 120.0)
            boxed_pool.run([(f"{here}:score_sandboxed", first)], 120.0)
        warm_s = time.perf_counter() - start
        in_process_s = sandboxed_s = 0.0
        local: list = []
        boxed: list = []
        for i in range(0, len(answers), args.chunk):
            chunk = answers[i:i + args.chunk]
            t = time.perf_counter()
            local += [r[1] for r in local_pool.run([(f"{here}:score_in_process", a) for a in chunk], 60.0)]
            in_process_s += time.perf_counter() - t
            t = time.perf_counter()
            boxed += [r[1] for r in boxed_pool.run([(f"{here}:score_sandboxed", a) for a in chunk], 60.0)]
            sandboxed_s += time.perf_counter() - t
    # The guard refusing an answer an evaluating scorer would run as code agrees with any score short of 1.0.
    mismatches = [(a[0], a[3][:40], x, y) for a, x, y in zip(answers, local, boxed)
                  if x != y and not (str(y).startswith("answer_evaluates_code") and x != 1.0)]
    n = len(answers)
    result = {"answers": n, "tasks": len(TASKS), "sandbox_start_s": warm_s, "in_process_ms": in_process_s / n * 1000,
              "sandboxed_ms": sandboxed_s / n * 1000, "ratio": sandboxed_s / in_process_s,
              "full_scores": sum(1 for x in local if x == 1.0), "refused": sum(1 for y in boxed if "answer_" in str(y)),
              "mismatches": mismatches}
    print(f"reasoning-gym: {n} answers over {len(TASKS)} tasks ({', '.join(TASKS)}), one pool worker each side")
    print(f"  worker start and warm-up of {len(TASKS)} scorers, both sides: {warm_s:.2f} s (once per worker)")
    print(f"  in process: {result['in_process_ms']:.3f} ms/answer; sandboxed: {result['sandboxed_ms']:.3f} ms/answer")
    print(f"  ratio sandboxed / in process: {result['ratio']:.2f}  (full scores: {result['full_scores']}, refused by "
          f"the guard: {result['refused']}, mismatches: {len(mismatches)})")
    if mismatches:
        raise AssertionError(f"sandboxed scores differ from in-process ones: {mismatches[:5]}")
    return result


def _bench_asserts(args) -> dict:
    from cotforge.schemas.config_verify import SandboxConfig
    from cotforge.tasks.verify.program_tests import check_program

    limits = SandboxConfig(cpu_s=2, wall_s=10.0).model_dump_json()
    code = "def magic(x):\n    return [v * 2 for v in x]\n"
    value_tests = "assert magic([1, 2]) == [2, 4]\n"  # one sandboxed program run, compared outside
    assert_tests = "assert magic([1, 2]) == [2, 4] and len(magic([])) == 0\n"  # test process + candidate process
    times: dict[str, list[float]] = {"program": [], "assert": []}
    for _ in range(args.programs):
        for label, tests, mode in (("program", value_tests, "values"), ("assert", assert_tests, "asserts")):
            t = time.perf_counter()
            verdict, reason, details = check_program(code, tests, limits)
            times[label].append(time.perf_counter() - t)
            if verdict is not True or details["test_mode"] != mode:
                raise AssertionError(f"{label}: {reason} {details}")
    program_ms, assert_ms = (statistics.median(times[k]) * 1000 for k in ("program", "assert"))
    print(f"code: {args.programs} runs each; one sandboxed program (value test): {program_ms:.1f} ms median; "
          f"assert test in its own process behind the proxy: {assert_ms:.1f} ms median")
    print(f"  ratio assert mode / program: {assert_ms / program_ms:.2f}")
    return {"program_ms": program_ms, "assert_ms": assert_ms, "assert_ratio": assert_ms / program_ms}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=100, help="answers per alternating slice")
    parser.add_argument("--programs", type=int, default=30, help="code runs per side; 0: skip")
    args = parser.parse_args(argv)
    from cotforge.tasks.verify.sandbox import isolation_problem
    from cotforge.tasks.verify.sandbox_host import _sandbox_uid

    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} cores")
    problem = isolation_problem(_sandbox_uid())
    if problem is not None:
        print(f"sandbox unavailable: {problem}")
        return {"sandbox_unavailable": problem}
    result = _bench_gym(args)
    if args.programs:
        result |= _bench_asserts(args)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return result


if __name__ == "__main__":
    main()
