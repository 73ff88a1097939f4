"""The one-off build of a recipe: questions -> sample -> verify -> vote -> dedup -> views -> publish.

The flow only composes tasks; every stage reads and writes shards through the ShardStore, so a re-run skips finished
shards and a killed run resumes with the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import polars as pl
import yaml
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.recipe import Recipe
from cotforge.schemas.records import stable_id
from cotforge.tasks.dedup.decontam import decontam_shard
from cotforge.tasks.dedup.minhash import dedup_shard, publish_dedup, sample_dedup_shard
from cotforge.tasks.generate import make_generator
from cotforge.tasks.publish.hub import push_build, retry_policy
from cotforge.tasks.label.steps import label_steps_shard
from cotforge.tasks.core.progress import stage_bar
from cotforge.tasks.publish.write import PublishedView, card_text, dumps_json, write_text, write_view
from cotforge.tasks.questions.stage import question_mix, questions_shards, rejects_ref
from cotforge.tasks.publish.report import (REPORT_PLOTS, funnel_png, mix_counts, pass_rate_histogram_png, report_markdown, stage_counts,
                          verdict_breakdown, verdicts_png)
from cotforge.tasks.generate.sample import generation_accounting, sample_shard
from cotforge.tasks.core.shards import ShardRef, ShardStore
from cotforge.tasks.verify.cascade import verify_shard
from cotforge.tasks.verify.pool import VerifierPool
from cotforge.tasks.views.builders import join_records, view_builders, view_metadata
from cotforge.tasks.verify.vote import vote_shard


@dataclass
class BuildResult:
    out: str
    version: str
    build_id: str
    recipe_hash: str
    counts: dict[str, int]
    views: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    pushed: dict | None = None  # Hub repo, version tag and commit when the build was pushed (tasks/hub.py)


class LazyGenerator:
    """Starts the backend on first use, so a build whose samples are all cached never loads a model."""

    def __init__(self, config):
        self.config = config
        self._generator = None

    def _get(self):
        if self._generator is None:
            self._generator = make_generator(self.config)
        return self._generator

    def __getattr__(self, name):
        return getattr(self._get(), name)

    def generate(self, requests):
        return self._get().generate(requests)

    def close(self):
        if self._generator is not None:
            self._generator.close()


def reference_model(recipe: Recipe) -> str:
    """The model whose pass rates the votes record, as `backend:model`."""
    g = recipe.generation
    model = {
        "llamacpp": g.llamacpp.model_path or "SmolLM2-135M-Instruct",
        "vllm": g.vllm.model or "SmolLM2-135M-Instruct",
        "openai": g.openai.model,
        "simulated": f"step_error_rate={g.simulated.step_error_rate}",
    }[g.backend]
    return f"{g.backend}:{model}"


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start


def _frame(store: ShardStore, refs: list[ShardRef]) -> pl.DataFrame:
    return pl.from_arrow(store.read_all(refs))


@task(name="publish", cache_policy=NO_CACHE)
def publish_views(store: ShardStore, recipe: Recipe, refs: dict[str, list[ShardRef]], version: str,
                  recipe_hash: str, build_id: str, timings: dict[str, float]) -> BuildResult:
    """Build every enabled view from the stage shards and write them with the card and the report."""
    questions, samples, verdicts, votes, dedup = (_frame(store, refs[k]) for k in
                                                  ("questions", "samples", "verdicts", "votes", "dedup"))
    joined = join_records(questions, samples, verdicts, votes, dedup,
                          sample_dedup=_frame(store, refs["sample_dedup"]) if refs.get("sample_dedup") else None)
    step_labels = _frame(store, refs["step_labels"]) if refs.get("step_labels") else None
    published: list[PublishedView] = []
    for name, build_table in view_builders(joined, step_labels, recipe.views,
                                           recipe.generation.system_prompt).items():
        published.append(write_view(store.url, name, build_table(),
                                    view_metadata(name, recipe_hash, build_id, version)))
    view_rows = {v.name: v.rows for v in published}
    counts = stage_counts(questions, samples, verdicts, votes, dedup, view_rows)
    dedup_summary = publish_dedup(store, refs, recipe.dedup, version)  # writes OUT/index/<version>/
    counts.update(dedup_summary["counts"])
    rejects = rejects_ref(store, recipe.questions, recipe.seed, build_id)  # seed rows / synth candidates turned down
    mix = question_mix(questions, _frame(store, [rejects]) if rejects else None)
    counts.update(mix_counts(mix))
    breakdown = verdict_breakdown(verdicts)
    recipe_yaml = yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    lineage = {
        "recipe hash": recipe_hash, "build id": build_id, "dataset version": version,
        "generator": f"{samples['backend'][0]} / {samples['model'][0]} (revision {samples['model_revision'][0]})"
        if samples.height else "none",
        "sampling": samples["sampling_json"][0] if samples.height else "none",
        "verifiers": ", ".join(sorted(set(verdicts["verifier_name"].to_list()))) or "none",
    }
    write_text(store.url, "README.md", card_text(recipe.publish.pretty_name or recipe.name, version,
                                                 recipe.description, recipe.publish.license, recipe_yaml, published,
                                                 counts, lineage, mix=mix,
                                                 plots=[f"report/{name}" for name in REPORT_PLOTS]))
    write_text(store.url, "report/pass_rate.png", pass_rate_histogram_png(votes))
    write_text(store.url, "report/funnel.png", funnel_png(counts))
    write_text(store.url, "report/verdicts.png", verdicts_png(breakdown))
    generation = generation_accounting(store, refs["samples"], samples, verdicts, timings.get("sample", 0.0))
    write_text(store.url, "report/report.md", report_markdown(counts, breakdown, timings, generation, mix=mix))
    result = BuildResult(store.url, version, build_id, recipe_hash, counts, view_rows, timings)
    write_text(store.url, "report/report.json", dumps_json({**asdict(result), "questions": mix, "verdicts": breakdown,
                                                            "generation": generation,
                                                            "dedup": dedup_summary["report"]}))
    store.write_json("manifest.json", {stage: [asdict(r) for r in rs] for stage, rs in refs.items()}
                     | {"views": [asdict(v) for v in published], "build_id": build_id, "version": version})
    return result


@flow(name="build", log_prints=True)
def build(recipe: Recipe, out: str | None = None, version: str = "0.1.0", push: str | None = None,
          private: bool | None = None) -> BuildResult:
    """Build one recipe into a published, versioned dataset folder; with `push` (ORG/NAME), publish it to the Hub."""
    recipe_hash = recipe.content_hash()
    build_id = stable_id(recipe_hash, version)  # stable across resumes: a resumed build writes the same rows
    store = ShardStore(out or recipe.publish.out.format(name=recipe.name))
    meta = {"cotforge.recipe_hash": recipe_hash, "cotforge.build_id": build_id}
    timings: dict[str, float] = {}
    refs: dict[str, list[ShardRef]] = {}

    with _timed(timings, "questions"):
        refs["questions"] = questions_shards(store, recipe.questions, recipe.seed, recipe.shard_size, recipe_hash,
                                             build_id, meta)
    generator = LazyGenerator(recipe.generation)
    try:
        with _timed(timings, "sample"), stage_bar("sample", sum(r.rows for r in refs["questions"])) as advance:
            # One shard at a time: the generator holds one model and keeps it busy by itself.
            refs["samples"] = [sample_shard(store, q, generator, recipe.generation, recipe.seed, recipe_hash,
                                            build_id, meta, advance, verify_config=recipe.verify)
                              for q in refs["questions"]]
    finally:
        generator.close()
    with _timed(timings, "verify"), stage_bar("verify", len(refs["samples"])) as advance:
        # On Ray each shard task opens its own VerifierPool (pool=None) in the worker that runs it, so the pool start
        # is paid per shard; Ray already runs a task per CPU, so that pool has one process unless the recipe sets
        # `verify.workers` (which stays out of the shard keys). An LLM judge holds a model: with one, verify is local.
        on_ray = recipe.runner.kind == "ray" and not recipe.verify.judge
        config = recipe.verify.model_copy(update={"workers": recipe.verify.workers or 1}) if on_ray else recipe.verify
        calls = [(store, s, q, recipe_hash, build_id, meta, config) for s, q in zip(refs["samples"], refs["questions"])]
        if on_ray:
            refs["verdicts"] = map_shards(recipe, verify_shard, calls, advance)
        else:
            refs["verdicts"] = []
            judge = LazyGenerator(recipe.verify.judge.generation) if recipe.verify.judge else None
            # One worker pool for all shards: spawning workers (and importing math-verify) is paid once per build.
            with VerifierPool(recipe.verify.workers) as pool:
                try:
                    for args in calls:
                        refs["verdicts"].append(verify_shard(*args, pool, judge))
                        advance()
                finally:
                    if judge is not None:
                        judge.close()
    with _timed(timings, "vote"):
        # Pure per-shard work: submitted to the flow's task runner (Ray when the recipe says so).
        refs["votes"] = map_shards(recipe, vote_shard, [
            (store, v, q, recipe.verify, reference_model(recipe), recipe_hash, build_id, meta,
             recipe.generation.samples_per_question) for v, q in zip(refs["verdicts"], refs["questions"])])
    with _timed(timings, "dedup"):
        refs["decontam"] = [decontam_shard(store, refs["questions"], recipe.dedup.decontam, recipe_hash, build_id, meta)]
        refs["dedup"] = [dedup_shard(store, refs["questions"], refs["votes"], refs["decontam"], recipe.dedup, version,
                                     recipe_hash, build_id, meta)]
        refs["sample_dedup"] = [sample_dedup_shard(store, refs["samples"], refs["verdicts"], recipe.dedup, version,
                                                   recipe_hash, build_id, meta)]
    if recipe.views.prm.enabled:
        with _timed(timings, "label_steps"), stage_bar("label_steps", len(refs["samples"])) as advance:
            # Rollouts come from the recipe's generator unless the prm view names its own backend.
            labeller = LazyGenerator(recipe.views.prm.generation or recipe.generation)
            step_judge = LazyGenerator(recipe.views.prm.judge.generation) if recipe.views.prm.judge.enabled else None
            try:
                refs["step_labels"] = []
                with VerifierPool(recipe.verify.workers) as pool:  # rollouts are judged like the samples were
                    for q, s, v, vt in zip(refs["questions"], refs["samples"], refs["verdicts"], refs["votes"]):
                        refs["step_labels"].append(label_steps_shard(
                            store, q, s, v, vt, refs["dedup"], labeller, recipe.views.prm,
                            recipe.views.prm.generation or recipe.generation, recipe.verify, recipe.seed,
                            recipe_hash, build_id, meta, pool, refs.get("sample_dedup"), step_judge))
                        advance()
            finally:
                labeller.close()
                if step_judge is not None:
                    step_judge.close()
    with _timed(timings, "publish"):
        result = publish_views(store, recipe, refs, version, recipe_hash, build_id, timings)
    repo = push or recipe.publish.repo
    if repo:
        pushed = push_build(store.url, repo, version, recipe.publish.private if private is None else private,
                            retry_policy(recipe.publish))
        result.pushed = asdict(pushed)
    return result


def map_shards(recipe: Recipe, shard_task, calls: list[tuple], advance: Callable[[], None] | None = None) -> list:
    """Run a shard task over argument tuples, in order: inline on the local runner, all submitted at once to the
    task runner on Ray (each Ray task logs where it ran). `advance` is called as each shard finishes.

    Only for stages that hold no model: sampling and step labelling keep their generator (one loaded model) in the
    flow's process, and dedup/decontam are one global task each, so those never come through here."""
    if recipe.runner.kind == "local":
        results = []
        for args in calls:
            results.append(shard_task(*args))
            advance() if advance else None
        return results
    placed = shard_task.with_options(on_completion=[*shard_task.on_completion_hooks, log_placement])
    futures = [placed.submit(*args) for args in calls]
    results = []
    for future in futures:
        results.append(future.result())
        advance() if advance else None
    return results


def log_placement(task, task_run, state) -> None:
    """Completion hook of a shard task run on Ray: write the Ray task id, process id and host that ran it to the
    task run's log (the operator's answer to "where did shard X run?"; the Ray test checks it)."""
    import os
    import socket

    import ray
    from prefect.logging.handlers import APILogHandler
    from prefect.logging.loggers import task_run_logger

    ray_task = ray.get_runtime_context().get_task_id() if ray.is_initialized() else None
    task_run_logger(task_run, task).info("placement: ray_task=%s pid=%d host=%s", ray_task, os.getpid(),
                                         socket.gethostname())
    APILogHandler().flush()  # the Ray worker outlives the flow: send the line now, not on its next batch


def task_runner_for(recipe: Recipe):
    """The Prefect task runner a recipe asks for (None: the flow's default)."""
    if recipe.runner.kind == "ray":
        from prefect_ray import RayTaskRunner  # optional extra: pip install 'cotforge[ray]'

        init_kwargs = {"num_cpus": recipe.runner.num_cpus} if recipe.runner.num_cpus and not recipe.runner.address \
            else None
        return RayTaskRunner(address=recipe.runner.address, init_kwargs=init_kwargs)
    return None


def run_build(recipe: Recipe, out: str | None = None, version: str = "0.1.0", push: str | None = None,
              private: bool | None = None) -> BuildResult:
    """Run the build flow on the task runner the recipe names (local, or Ray)."""
    runner = task_runner_for(recipe)
    flow_ = build.with_options(task_runner=runner) if runner is not None else build
    return flow_(recipe, out=out, version=version, push=push, private=private)
