"""Benchmark: step labels by binary search for the first error against per-step Monte-Carlo, at the same m, in one run.

On the simulated solver (known first errors, `Completion.first_error_step`), arithmetic questions of 3 to 7
operations (4 to 8 steps with the answer line), seeded: first-error accuracy (the labelled first error equals the
known one, exactly), total rollouts and wall time of `label_steps` for each method. Rollouts go through
`make_generator(...).generate`, the call a build makes. The goal: accuracy >= 0.95 with at most 1/3 of per-step MC's
rollouts. The last line is read by scripts:

    prm: method=binary_search m=4 accuracy=0.97 rollouts_ratio=0.31

    python -m tests.bench.bench_prm                              # simulated, 600 samples, m = 4
    python -m tests.bench.bench_prm --backend llamacpp           # SmolLM2 on the demo recipe's prm settings
"""

from __future__ import annotations

import argparse
import time

import polars as pl

from cotforge.schemas.config_generation import GenerationConfig
from cotforge.schemas.config_views import PrmViewConfig
from cotforge.tasks.generate import make_generator
from cotforge.tasks.label.steps import label_steps
from cotforge.tasks.views.builders import build_prm
from tests.views_support import simulated_joined


def simulated_frame(questions: int, samples: int, seed: int) -> tuple[pl.DataFrame, GenerationConfig]:
    """Questions of 3..7 operations (`questions` of each), `samples` samples each, by the simulated solver."""
    frames, generation = [], None
    for difficulty in range(3, 8):
        frame, generation = simulated_joined(n=questions, difficulty=difficulty, samples=samples, seed=seed + difficulty)
        frames.append(frame)
    return pl.concat(frames, how="vertical_relaxed"), generation


def run(frame: pl.DataFrame, generation: GenerationConfig, config: PrmViewConfig) -> dict:
    """Label `frame` with `config`; accuracy against the known first errors where the solver is simulated."""
    generator = make_generator(generation)
    try:
        began = time.perf_counter()
        labels = pl.from_arrow(label_steps(frame, generator, config, generation, 11, "bench", "bench"))
        wall = time.perf_counter() - began
    finally:
        generator.close()
    labelled = labels.filter(pl.col("status") == "labelled")
    figures = {"method": config.label_method, "m": config.rollouts, "wall_s": wall, "labelled": labelled.height,
               "picked": labels.height, "rollouts": int(labels["rollouts"].sum()),
               "mc_equivalent": int(labelled["mc_equivalent_rollouts"].sum()),
               "uncertain": labelled.filter(pl.col("label_status") == "uncertain").height,
               "first_errors": labelled["first_error_step"].drop_nulls().len(), "labels": labels}
    if generation.backend == "simulated":
        prm = pl.from_arrow(build_prm(frame, labels, config))
        figures["accuracy"] = float(prm["first_error_step"].eq_missing(prm["reference_first_error_step"]).mean())
        figures["scored"] = prm.height
    return figures


def llamacpp_frame(questions: int) -> tuple[pl.DataFrame, GenerationConfig, PrmViewConfig]:
    """The demo recipe's first `questions` questions sampled by its generator (SmolLM2 on llama.cpp), verified and
    voted here by the stage kernels; with the recipe's prm settings."""
    from cotforge.schemas.arrow import to_table
    from cotforge.schemas.recipe import load_recipe
    from cotforge.schemas.records import Question
    from cotforge.tasks.core.join import join_records
    from cotforge.tasks.generate import reference_model
    from cotforge.tasks.generate.sample import sample_questions
    from cotforge.tasks.questions.stage import collect_sources
    from cotforge.tasks.verify.cascade import verify_samples
    from cotforge.tasks.verify.vote import vote_answers

    recipe = load_recipe("data/recipes/demo.yaml")
    # One thread: on a shared CPU, llama.cpp's threads spin on each other (as in bench_sampling).
    generation = recipe.generation.model_copy(update={"llamacpp": recipe.generation.llamacpp.model_copy(
        update={"n_threads": 1})})
    table = to_table(collect_sources(recipe.questions, recipe.seed, "bench", "bench").questions, Question)
    table = table.slice(0, questions)
    generator = make_generator(generation)
    began = time.perf_counter()
    try:
        sampled = sample_questions(table, generator, generation, recipe.seed, "bench", "bench")
    finally:
        generator.close()
    print(f"sampled {sampled.num_rows} samples of {table.num_rows} questions in {time.perf_counter() - began:.1f} s",
          flush=True)
    verdicts = verify_samples(sampled, table, "bench", "bench", recipe.verify)
    votes = vote_answers(verdicts, table, recipe.verify, reference_model(generation), "bench", "bench",
                         generation.samples_per_question)
    q = pl.from_arrow(table)
    dedup = q.select("question_id", pl.col("question_id").alias("cluster_id"), pl.lit(True).alias("keep"),
                     pl.lit(None, dtype=pl.String).alias("drop_reason"))
    joined = join_records(q, pl.from_arrow(sampled), pl.from_arrow(verdicts), pl.from_arrow(votes), dedup)
    return joined, generation, recipe.views.prm


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["simulated", "llamacpp"], default="simulated")
    parser.add_argument("--questions", type=int, default=None,
                        help="per difficulty (simulated, 30) or in all (llamacpp, the demo's 16)")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    if args.backend == "simulated":
        frame, generation = simulated_frame(args.questions or 30, args.samples, args.seed)
        base = PrmViewConfig(rollouts=args.rollouts, max_samples_per_question=args.samples)
    else:
        frame, generation, base = llamacpp_frame(args.questions or 16)
    configs = [base.model_copy(update={"label_method": method, "cheap_check_pass_rate": cheap})
               for cheap in (None, 0.5) for method in ("mc_rollout", "binary_search")]
    results = []
    for c in configs:
        results.append(run(frame, generation, c))
        print(f"{c.label_method} (cheap check {c.cheap_check_pass_rate}): {results[-1]['rollouts']} rollouts, "
              f"{results[-1]['wall_s']:.1f} s", flush=True)
    baseline = results[0]["rollouts"] or 1
    steps = frame["text"].map_elements(lambda t: len([x for x in (t or "").splitlines() if x.strip()]),
                                       return_dtype=pl.Int64)
    print(f"{args.backend}: {frame.height} samples, {frame['question_id'].n_unique()} questions, "
          f"lines per sample {steps.min()}..{steps.max()}")
    print("| method | m | cheap check | labelled | accuracy | rollouts | ratio | per labelled | per first error "
          "| uncertain | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for config, r in zip(configs, results):
        accuracy = f"{r['accuracy']:.3f}" if "accuracy" in r else "n/a"
        per_error = r["rollouts"] / r["first_errors"] if r["first_errors"] else float("nan")
        print(f"| {r['method']} | {r['m']} | {config.cheap_check_pass_rate or '-'} | {r['labelled']} | {accuracy} | "
              f"{r['rollouts']} | {r['rollouts'] / baseline:.3f} | {r['rollouts'] / max(r['labelled'], 1):.2f} | "
              f"{per_error:.2f} | {r['uncertain']} | {r['wall_s']:.2f} |")
    mc, search = results[0], results[1]
    agree = mc["labels"].join(search["labels"], on="sample_id").filter(
        (pl.col("status") == "labelled") & (pl.col("status_right") == "labelled"))
    same = agree["first_error_step"].eq_missing(agree["first_error_step_right"]).mean() if agree.height else None
    print(f"binary_search and per-step MC give the same first error on {same} of {agree.height} samples")
    accuracy = search.get("accuracy", float("nan"))
    print(f"prm: method=binary_search m={search['m']} accuracy={accuracy:.2f} "
          f"rollouts_ratio={search['rollouts'] / baseline:.2f}")
    return {"results": [{k: v for k, v in r.items() if k != "labels"} for r in results], "same_first_error": same}


if __name__ == "__main__":
    main()
