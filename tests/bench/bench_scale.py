"""Benchmark: how each stage of a build grows with its size. `data/recipes/simulated.yaml` (the seeded simulated
solver, templated arithmetic questions: dense near-duplicate clusters) with its two arithmetic sources scaled to N
questions, 3:2 (at 20,000: 12,000 of difficulty 2 and 8,000 of difficulty 4, the build issue 26 measured), 4 samples
each, built at each size in a fresh process (its own output
folder, so nothing is reused). Per size: wall time of the build and of each stage, rows and rows/s per stage, peak
RSS (the build process and every process it started, summed, sampled every 0.2 s; and the build process's own
high-water mark). Between consecutive sizes: each stage's growth exponent, log(t2 / t1) / log(n2 / n1): 1.0 is
linear, 2.0 quadratic. The worst stage is the one with the highest exponent between the two largest sizes among the
stages that take at least 2% of the largest build (a stage of a fraction of a second is all noise).

    python -m tests.bench.bench_scale [--questions 5000 20000 80000] [--samples 4] [--keep DIR]

The last line (scripts read it) is
`scale: questions=N build_s=S peak_gb=G worst_stage=NAME worst_exponent=E` for the largest size.
The machine's load (`os.getloadavg`) is printed beside the figures: on shared cores, compare runs of one load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "data/recipes/simulated.yaml"
MIN_SHARE = 0.02  # stages below this share of the largest build are left out of the worst-stage choice


SHARES = (3, 2)  # of the recipe's two arithmetic sources


def scaled_recipe(questions: int, samples: int) -> dict:
    """The simulated recipe with its two arithmetic sources scaled to `questions` in total, 3:2."""
    recipe = yaml.safe_load(RECIPE.read_text())
    first, second = [s for s in recipe["questions"]["sources"] if s.get("family") == "arithmetic"]
    first["n"] = questions * SHARES[0] // sum(SHARES)
    second["n"] = questions - first["n"]
    recipe["generation"]["samples_per_question"] = samples
    recipe["name"] = f"scale-{questions}"
    return recipe


def _child(recipe_path: str, out: str) -> None:
    """Run one build in this process and print its figures as one JSON line."""
    from cotforge.flows.build import run_build
    from cotforge.schemas.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    start = time.perf_counter()
    result = run_build(recipe, out=out)
    wall = time.perf_counter() - start
    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    hwm = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    print("BENCH_RESULT " + json.dumps({"build_s": wall, "timings": result.timings, "rows": result.stage_rows,
                                        "own_peak_bytes": hwm, "counts": result.counts}))


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0


def run_size(questions: int, samples: int, keep: str | None) -> dict:
    """Build the scaled recipe in a fresh process; its figures plus the peak RSS of its process tree."""
    folder = Path(keep) / f"q{questions}" if keep else Path(tempfile.mkdtemp(prefix=f"bench-scale-{questions}-"))
    folder.mkdir(parents=True, exist_ok=True)
    recipe_path = folder / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(scaled_recipe(questions, samples), sort_keys=False))
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.bench.bench_scale", "--child", str(recipe_path),
                             str(folder / "out")], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], _tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    line = next((x for x in out.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"the build of {questions} questions failed ({proc.returncode}):\n{err[-4000:]}")
    result = json.loads(line.removeprefix("BENCH_RESULT "))
    if not keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return {"questions": questions, "samples": questions * samples, "load": os.getloadavg(),
            "peak_bytes": max(peak[0], result["own_peak_bytes"]), **result}


def exponents(small: dict, large: dict) -> dict[str, float]:
    """Each stage's growth exponent between two sizes (stages timed at both, above a millisecond)."""
    ratio = large["questions"] / small["questions"]
    return {stage: math.log(large["timings"][stage] / small["timings"][stage]) / math.log(ratio)
            for stage in large["timings"]
            if stage in small["timings"] and small["timings"][stage] > 1e-3 and large["timings"][stage] > 1e-3}


def worst_stage(small: dict, large: dict) -> tuple[str, float]:
    """The stage of the highest exponent among those taking at least MIN_SHARE of the larger build."""
    grown = exponents(small, large)
    heavy = {s: e for s, e in grown.items() if large["timings"][s] >= MIN_SHARE * large["build_s"]}
    if not heavy:
        return "none", 0.0
    stage = max(heavy, key=heavy.get)
    return stage, heavy[stage]


def marginal_gib_per_million(small: dict, large: dict) -> float:
    """Peak RSS added per million samples between two sizes (the budget beyond the fixed cost of a process)."""
    return (large["peak_bytes"] - small["peak_bytes"]) / (large["samples"] - small["samples"]) * 1e6 / 2**30


def report(results: list[dict]) -> str:
    lines = []
    for r in results:
        lines += size_lines(r)
    lines += growth_lines(results)
    return "\n".join(lines)


def size_lines(r: dict) -> list[str]:
    """One size's figures: build time, peak RSS, and per stage its seconds, share, rows and rows/s."""
    load = ", ".join(f"{x:.2f}" for x in r["load"])
    lines = [f"\n{r['questions']} questions x {r['samples'] // r['questions']} samples: build {r['build_s']:.1f} s, "
             f"peak RSS {r['peak_bytes'] / 2**30:.2f} GiB (build process alone {r['own_peak_bytes'] / 2**30:.2f} "
             f"GiB), load average after it {load}",
             f"{'stage':<44} {'seconds':>9} {'share':>6} {'rows':>9} {'rows/s':>10}"]
    for stage, seconds in r["timings"].items():
        rows = r["rows"].get(stage)
        rate = f"{rows / seconds:,.0f}" if rows and seconds >= 0.1 else "-"  # hidden behind another stage: no rate
        lines.append(f"{stage:<44} {seconds:>9.1f} {seconds / r['build_s']:>6.1%} {rows or '-':>9} {rate:>10}")
    return lines


def growth_lines(results: list[dict]) -> list[str]:
    """Growth exponents and added memory between consecutive sizes, then the last line scripts read."""
    lines = []
    for small, large in zip(results, results[1:]):
        grown = exponents(small, large)
        build = math.log(large["build_s"] / small["build_s"]) / math.log(large["questions"] / small["questions"])
        lines.append(f"\ngrowth exponents {small['questions']} -> {large['questions']} questions (1.0 = linear): "
                     + ", ".join(f"{s} {e:.2f}" for s, e in grown.items()) + f"; whole build {build:.2f}")
        lines.append(f"peak RSS {small['peak_bytes'] / 2**30:.2f} -> {large['peak_bytes'] / 2**30:.2f} GiB: "
                     f"{marginal_gib_per_million(small, large):.2f} GiB per million samples more")
    last = results[-1]
    stage, exponent = worst_stage(results[-2], last) if len(results) > 1 else ("none", 0.0)
    lines.append(f"scale: questions={last['questions']} build_s={last['build_s']:.1f} "
                 f"peak_gb={last['peak_bytes'] / 1e9:.2f} worst_stage={stage.replace(' ', '_')} "
                 f"worst_exponent={exponent:.2f}")
    return lines


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, nargs="+", default=[5_000, 20_000, 80_000])
    parser.add_argument("--samples", type=int, default=4, help="samples per question")
    parser.add_argument("--keep", help="keep each build under this folder (default: a temporary one, removed)")
    parser.add_argument("--child", nargs=2, metavar=("RECIPE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return []
    results = []
    for questions in sorted(args.questions):
        print(f"building {questions} questions x {args.samples} samples (load average {os.getloadavg()[0]:.2f}) ...",
              flush=True)
        results.append(run_size(questions, args.samples, args.keep))
        print("\n".join(size_lines(results[-1])), flush=True)  # each size as soon as it is built
    print("\n".join(growth_lines(results)), flush=True)
    return results


if __name__ == "__main__":
    main()
