"""The one-off build of a recipe: questions -> sample -> verify -> vote -> dedup -> views -> publish.

The flow only composes tasks; every stage reads and writes shards through the ShardStore (`OUT/_work/`, shared by
every version), so a re-run skips finished shards and a killed run resumes with the same rows. Each version is a
complete snapshot in `OUT/<version>/`: the previous version's rows carried, plus rows for the questions no earlier
version holds (only those are sampled). One build per OUT at a time (`OUT/.lock`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict

from prefect import flow
from prefect.utilities.annotations import quote

from cotforge.flows.overlap import ShardWorker
from cotforge.schemas.recipe import Recipe
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.join import RecordRefs
from cotforge.tasks.core.lock import output_lock
from cotforge.tasks.core.memory import release_memory
from cotforge.tasks.core.progress import stage_bar
from cotforge.tasks.core.shards import ShardRef, ShardStore
from cotforge.tasks.dedup.decontam import decontam_shard
from cotforge.tasks.dedup.stage import (
    dedup_shard,
    new_questions_shards,
    publish_shared_index,
    release_shared_claims,
    sample_dedup_shard,
    sketch_shard,
)
from cotforge.tasks.generate import reference_model
from cotforge.tasks.generate.accounting import check_samples, window_path
from cotforge.tasks.generate.lazy import SharedGenerators
from cotforge.tasks.generate.sample import sample_shards
from cotforge.tasks.label.steps import label_steps_shard
from cotforge.tasks.publish.artifacts import flow_run_name, publish_build_artifacts, rename_flow_run
from cotforge.tasks.publish.hub import push_build
from cotforge.tasks.publish.retry import retry_policy
from cotforge.tasks.publish.snapshot import plan_version
from cotforge.tasks.publish.stage import BuildResult, publish_views
from cotforge.tasks.publish.versions import published_versions
from cotforge.tasks.questions.stage import questions_shards
from cotforge.tasks.verify.cascade import verify_shard
from cotforge.tasks.verify.pool import VerifierPool
from cotforge.tasks.verify.vote import vote_shard


def _plain(*args) -> list:
    """A shard task's arguments as Prefect should pass them: untouched. Unquoted, each call walks every pydantic config
    and dataclass among them looking for futures (there are none): ~20 ms a task, at 16 questions a shard a fifth of
    step labelling's time (issue 26)."""
    return [quote(a) for a in args]


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    yield
    release_memory()  # what the stage freed goes back to the system before the next one grows
    timings[stage] = time.perf_counter() - start


@flow(name="build", flow_run_name=flow_run_name, log_prints=True)
def build(recipe: Recipe, out: str | None = None, version: str | None = None, push: str | None = None,
          private: bool | None = None, previous: str | None = None, require_new_rows: bool = False) -> BuildResult:
    """Build one recipe into `OUT/<version>/`, a complete snapshot: the previous version's rows plus the new ones;
    with `push` (ORG/NAME), publish it to the Hub too. `version` None: the next Hub version when pushing, else the
    latest local version (resumed, or nothing to do), else 0.1.0. `previous` None: the highest version below
    `version`, locally or on the Hub. `require_new_rows`: publish nothing when no view gains a row."""
    out = out or recipe.publish.out.format(name=recipe.name)
    repo = push or recipe.publish.repo
    with output_lock(out):
        version, previous = plan_version(out, version, repo, previous)
        rename_flow_run(recipe.name, version)
        ctx = BuildContext(ShardStore(out), recipe.content_hash(), version, recipe.seed)
        try:
            result = _build_version(recipe, ctx, previous, require_new_rows)
        except BaseException:
            release_shared_claims(ctx, recipe.dedup)  # its claims in the shared index, if it has one
            raise
        if repo and result.status != "skipped" and (result.status == "published"
                                                    or version not in published_versions(repo)):
            pushed = push_build(result.folder, repo, version,
                                recipe.publish.private if private is None else private, retry_policy(recipe.publish))
            result.pushed = asdict(pushed)
    publish_build_artifacts(recipe.name, result)  # the report and counts in the Prefect UI, keyed by recipe+version
    return result


def _build_version(recipe: Recipe, ctx: BuildContext, previous: str | None, require_new_rows: bool) -> BuildResult:
    timings: dict[str, float] = {}
    refs: dict[str, list[ShardRef]] = {}
    # Earlier versions: the previous one (its folder holds the indexes of every version before it) and the recipe's.
    dedup = recipe.dedup.model_copy(update={"earlier_versions": [*recipe.dedup.earlier_versions, previous]}) \
        if previous else recipe.dedup

    with _timed(timings, "questions"):
        refs["source_questions"] = questions_shards(ctx, recipe.questions, recipe.shard_size)
        # Only questions no earlier version holds are sampled (an all-old shard list keeps one empty shard).
        fresh, refs["earlier_questions"] = new_questions_shards(ctx, refs["source_questions"], dedup)
        refs["questions"] = [r for r in fresh if r.rows] or fresh[:1]
    # One long-lived generator per engine, shared by sampling, the judge and PRM rollouts when they name the same one.
    generators = SharedGenerators()
    judge_config = recipe.verify.judge.generation if recipe.verify.judge else None
    labeller_config = (recipe.views.prm.generation or recipe.generation) if recipe.views.prm.enabled else None
    step_judge_config = recipe.views.prm.judge.generation if recipe.views.prm.enabled and \
        recipe.views.prm.judge.enabled else None
    try:
        generator = generators.claim(recipe.generation)
        judge = generators.claim(judge_config) if judge_config else None
        labeller = generators.claim(labeller_config) if labeller_config else None
        step_judge = generators.claim(step_judge_config) if step_judge_config else None
        _sample_and_verify(recipe, ctx, refs, timings, generator, judge)
        generators.release(recipe.generation)
        if judge_config:
            generators.release(judge_config)
        _dedup(recipe, ctx, refs, timings, dedup)
        if recipe.views.prm.enabled:
            with _timed(timings, "label_steps"), stage_bar("label_steps", len(refs["samples"])) as advance:
                refs["step_labels"] = []
                with VerifierPool(recipe.verify.workers) as pool:  # rollouts are judged like the samples were
                    for q, s, v, vt in zip(refs["questions"], refs["samples"], refs["verdicts"], refs["votes"]):
                        records = RecordRefs([q], [s], [v], [vt], refs["dedup"], refs["sample_dedup"])
                        refs["step_labels"].append(label_steps_shard(*_plain(
                            ctx, records, labeller, recipe.views.prm, labeller_config, recipe.verify, pool,
                            step_judge)))
                        advance()
    finally:
        generators.close()
    with _timed(timings, "publish"):
        # quote: Prefect would record every ShardRef in `refs` as an input of the task run, and the run's state event
        # outgrows Prefect's 1.5 MB event limit at ~80,000 questions (EventTooLarge); the refs are plain values.
        result = publish_views(ctx, recipe, quote(refs), timings, previous, require_new_rows)
    # Only now that the build has published do its rows enter the shared Redis index (dedup.redis), if it has one.
    publish_shared_index(ctx, refs, recipe.dedup)
    return result


def _sample_and_verify(recipe: Recipe, ctx: BuildContext, refs: dict, timings: dict, generator, judge) -> None:
    """Sample every question shard through one stream of the engine; verify and vote each finished shard on a CPU
    worker meanwhile (local runner, no LLM judge: a judge would share the engine, Ray verifies on its workers), else
    verify after sampling as before."""
    overlap = recipe.runner.kind == "local" and judge is None
    votes_args = (recipe.verify, reference_model(recipe.generation), recipe.generation.samples_per_question)
    with VerifierPool(recipe.verify.workers) if overlap else nullcontext() as pool:
        worker = None
        if overlap:
            def verify_and_vote(position: int, samples: ShardRef):
                verdicts = verify_shard(*_plain(ctx, samples, refs["questions"][position], recipe.verify, pool, None))
                return verdicts, vote_shard(*_plain(ctx, verdicts, refs["questions"][position], *votes_args))
            worker = ShardWorker(verify_and_vote)
        try:
            with _timed(timings, "sample"), stage_bar("sample", sum(r.rows for r in refs["questions"])) as advance:
                refs["samples"] = sample_shards(ctx, refs["questions"], generator, recipe.generation, advance,
                                                verify_config=recipe.verify,
                                                on_shard=worker.submit if worker else None)
            window = getattr(generator.started, "window_log", None)
            if window:
                ctx.store.write_json(window_path(ctx.build_id), {"window": window})
            # Nothing usable (a backend down, every request failing): stop here, before anything is published.
            check_samples(ctx.store, refs["questions"], refs["samples"], recipe.generation.max_error_rate,
                          recipe.generation.backend, generator.log_path())
            if worker is not None:
                with _timed(timings, "verify"):  # only what is left once sampling has ended
                    done = worker.finish()
                refs["verdicts"] = [done[i][0] for i in range(len(refs["samples"]))]
                refs["votes"] = [done[i][1] for i in range(len(refs["samples"]))]
                timings["verify+vote beside sampling (worker busy)"] = worker.busy_s
                return
        except BaseException:
            if worker is not None:
                worker.stop()
            raise
    _verify(recipe, ctx, refs, timings, judge)
    with _timed(timings, "vote"):
        # Pure per-shard work: submitted to the flow's task runner (Ray when the recipe says so).
        refs["votes"] = map_shards(recipe, vote_shard, [(ctx, v, q, *votes_args)
                                                        for v, q in zip(refs["verdicts"], refs["questions"])])


def _verify(recipe: Recipe, ctx: BuildContext, refs: dict, timings: dict, judge) -> None:
    with _timed(timings, "verify"), stage_bar("verify", len(refs["samples"])) as advance:
        # On Ray each shard task opens its own VerifierPool (pool=None) in the worker that runs it, so the pool start
        # is paid per shard; Ray already runs a task per CPU, so that pool has one process unless the recipe sets
        # `verify.workers` (which stays out of the shard keys). An LLM judge holds a model: with one, verify is local.
        on_ray = recipe.runner.kind == "ray" and not recipe.verify.judge
        config = recipe.verify.model_copy(update={"workers": recipe.verify.workers or 1}) if on_ray else recipe.verify
        calls = [(ctx, s, q, config) for s, q in zip(refs["samples"], refs["questions"])]
        if on_ray:
            refs["verdicts"] = map_shards(recipe, verify_shard, calls, advance)
        else:
            refs["verdicts"] = []
            # One worker pool for all shards: spawning workers (and importing math-verify) is paid once per build.
            with VerifierPool(recipe.verify.workers) as pool:
                for args in calls:
                    refs["verdicts"].append(verify_shard(*_plain(*args, pool, judge)))
                    advance()


def _dedup(recipe: Recipe, ctx: BuildContext, refs: dict, timings: dict, dedup) -> None:
    with _timed(timings, "dedup"):
        refs["decontam"] = [decontam_shard(ctx, refs["questions"], recipe.dedup.decontam)]
        # Global dedup = shard tasks (sketches, on the task runner) plus one merge per kind.
        refs["dedup_sketches"] = map_shards(recipe, sketch_shard, [
            (ctx, q, dedup.questions) for q in refs["questions"]])
        refs["sample_dedup_sketches"] = map_shards(recipe, sketch_shard, [
            (ctx, s, dedup.samples, "sample_id") for s in refs["samples"]])
        refs["dedup"] = [dedup_shard(ctx, refs["questions"], refs["votes"], refs["decontam"], dedup,
                                     refs["dedup_sketches"])]
        refs["sample_dedup"] = [sample_dedup_shard(ctx, refs["samples"], refs["verdicts"], dedup,
                                                   refs["sample_dedup_sketches"])]


def map_shards(recipe: Recipe, shard_task, calls: list[tuple], advance: Callable[[], None] | None = None) -> list:
    """Run a shard task over argument tuples, in order: inline on the local runner, all submitted at once to the
    task runner on Ray (each Ray task logs where it ran). `advance` is called as each shard finishes.

    Only for stages that hold no model: sampling and step labelling keep their generator (one loaded model) in the
    flow's process, and decontam and the dedup merges are one global task each (dedup's sketches come through here)."""
    if recipe.runner.kind == "local":
        results = []
        for args in calls:
            results.append(shard_task(*_plain(*args)))
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


def run_build(recipe: Recipe, out: str | None = None, version: str | None = None, push: str | None = None,
              private: bool | None = None, previous: str | None = None, require_new_rows: bool = False) -> BuildResult:
    """Run the build flow on the task runner the recipe names (local, or Ray); arguments as `build`."""
    runner = task_runner_for(recipe)
    flow_ = build.with_options(task_runner=runner) if runner is not None else build
    return flow_(recipe, out=out, version=version, push=push, private=private, previous=previous,
                 require_new_rows=require_new_rows)
