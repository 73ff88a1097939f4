"""Sampling stage: rationales per question from the recipe's generator, written as Sample records.

Every shard's requests flow through one backend stream (`stream_sampler.py`): the backend keeps its own window full
across part and shard boundaries, and each finished request lands in its shard's part buffer at once; a part is written
every `part_requests` requests or `part_seconds`, a shard once its last round is whole. A killed stage resumes by
reading the parts that exist and asking only the missing requests, with the same seeds; rows of a shard come out in a
fixed order (`shard_job.py`), so they equal an uninterrupted (or batch-wise) run's. A backend without `stream` is fed
through `generate`, `batch_requests` at a time.

Adaptive budget (GVM-RAFT / online difficulty filtering): every question first gets k0 = `samples_per_question`
samples; after each round the samples are verified (`extract_answer` + the question's registered verifier) and a
question whose accepted samples are below `quota` gets more, sized by its observed acceptance rate, until the quota or
`cap` samples. Guided re-sampling then retries questions with no accepted sample, with a hint or a reference-solution
prefix; those rows carry `guidance` (off-policy).
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_generation import GenerationConfig
from cotforge.schemas.records import Sample, stable_id
from cotforge.tasks.core.code import code_hash
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardRef, shard_key
from cotforge.tasks.generate import Completion, GenerationRequest, Generator, SamplingParams
from cotforge.tasks.generate.accounting import SamplingStats, stats_path
from cotforge.tasks.generate.adaptive import accepted_flags, plan_extra_samples  # noqa: F401 - re-exported
from cotforge.tasks.generate.parts import PART_STAGE, PartIndex, PartStore  # noqa: F401 - PART_STAGE re-exported
from cotforge.tasks.generate.shard_job import GUIDED_ROUND, ShardJob
from cotforge.tasks.generate.stream_sampler import ShardWork, StreamSampler


def prompt_template_hash(config: GenerationConfig) -> str:
    return stable_id(config.system_prompt, "{question}")


def request_seed(recipe_seed: int, question_id: str, round_: int | str = 0) -> int:
    """A per-question, per-round seed, stable across runs and shard layouts, so a resumed build samples the same
    text."""
    return int(stable_id(str(recipe_seed), question_id, str(round_), length=8), 16) % (2**31 - 1)


def sampling_params(config: GenerationConfig) -> SamplingParams:
    s = config.sampling
    return SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=tuple(s.stop))


def question_request(row: dict, config: GenerationConfig, n: int, seed: int, hint: str = "",
                     prefix: str = "", prefix_steps: int = 0) -> GenerationRequest:
    """The chat request for one question: system prompt, the question (and a hint), optionally a started answer."""
    metadata = json.loads(row.get("metadata_json") or "{}")
    user = row["text"] + (f"\n\nHint: {hint}" if hint else "")
    messages = ({"role": "system", "content": config.system_prompt}, {"role": "user", "content": user})
    context = {"family": row.get("family"), "params": metadata.get("params")}
    if "reasoning_gym" in metadata:  # the simulated solver answers these from the gold (or gets them wrong)
        context["gold_answer"] = row.get("gold_answer")
    if prefix:
        context |= {"prefix_steps": prefix_steps, "prefix_error_at": None}  # a reference prefix holds no error
    return GenerationRequest(request_id=row["question_id"], messages=messages, n=n, seed=seed,
                             params=sampling_params(config), assistant_prefix=prefix, context=context)


def build_requests(questions: pa.Table, config: GenerationConfig, recipe_seed: int) -> list[GenerationRequest]:
    """The first round: one chat request per question, asking for `samples_per_question` completions."""
    return [question_request(row, config, config.samples_per_question, request_seed(recipe_seed, row["question_id"]))
            for row in questions.to_pylist()]


def completions_to_samples(requests: list[GenerationRequest], completions: list[Completion], generator: Generator,
                           config: GenerationConfig, recipe_hash: str, build_id: str,
                           index_offset: dict[str, int] | None = None, round_: int | str = 0,
                           guidance: str | None = None) -> list[Sample]:
    """Attach lineage to each completion. `index_offset` numbers a later round's samples after the earlier ones'; a
    request's assistant prefix is put back in front of its completion, so `text` is the whole rationale."""
    by_id = {r.request_id: r for r in requests}
    template_hash = prompt_template_hash(config)
    offsets = index_offset or {}
    samples = []
    for c in completions:
        request = by_id[c.request_id]
        sampling = {"temperature": request.params.temperature, "top_p": request.params.top_p,
                    "max_tokens": request.params.max_tokens, "stop": list(request.params.stop), "n": request.n}
        if round_ != 0:
            sampling["round"] = round_
        text = request.assistant_prefix + c.text if c.error is None else c.text
        samples.append(Sample(
            sample_id=stable_id(c.request_id, str(request.seed), str(c.index)), question_id=c.request_id,
            sample_index=offsets.get(c.request_id, 0) + c.index, text=text, finish_reason=c.finish_reason,
            prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, error=c.error,
            error_permanent=c.error is not None and not c.retryable,
            backend=generator.backend, model=generator.model, model_revision=generator.revision,
            sampling_json=json.dumps(sampling, sort_keys=True), seed=request.seed, prompt_template_hash=template_hash,
            guidance=guidance, first_error_step=c.first_error_step, recipe_hash=recipe_hash, build_id=build_id,
        ))
    return samples


# ------------------------------------------------------------------------------------------------------------ stage


def _plan_round(config: GenerationConfig, recipe_seed: int):
    """The request of one question in a later round: (round, row, extra samples | guidance) -> request."""
    def plan(round_: int | str, row: dict, what) -> GenerationRequest:
        seed = request_seed(recipe_seed, row["question_id"], round_)
        if round_ == GUIDED_ROUND:
            hint, prefix, k = what
            return question_request(row, config, config.guidance.samples, seed, hint, prefix, k)
        return question_request(row, config, what, seed)
    return plan


def _work(position: int, load_questions, finished, write, parts: PartStore, generator: Generator,
          config: GenerationConfig, recipe_seed: int, recipe_hash: str, build_id: str, pool,
          verify_config) -> ShardWork:
    """One shard as the stream sampler sees it."""
    def open_job(resumed, stats: SamplingStats) -> ShardJob:
        questions = load_questions()
        stats.gpus = int(getattr(generator, "gpus", 0) or 0)
        judge = None
        if pool is not None:
            def judge(batch):
                # (a shard resumed whole is judged in the backend's thread as it opens: one user of the pool at a time)
                with _POOL_LOCK:
                    return accepted_flags(batch, questions, verify_config, pool)
        to_samples = lambda reqs, comps, round_, guidance, offsets: completions_to_samples(
            reqs, comps, generator, config, recipe_hash, build_id, offsets, round_, guidance)
        return ShardJob(position, questions, config, build_requests(questions, config, recipe_seed),
                        _plan_round(config, recipe_seed), to_samples, judge, resumed, stats)
    return ShardWork(position, finished, open_job, write, parts)


_POOL_LOCK = threading.Lock()


@contextmanager
def _judge_pool(config: GenerationConfig, verify_config):
    """The verifier pool the adaptive budget and guidance judge with (None when neither is on)."""
    if not (config.adaptive.enabled or config.guidance.enabled):
        yield None
        return
    from cotforge.tasks.verify.pool import VerifierPool

    with VerifierPool(verify_config.workers if verify_config is not None else None) as pool:
        yield pool


def sample_questions(questions: pa.Table, generator: Generator, config: GenerationConfig, recipe_seed: int,
                     recipe_hash: str, build_id: str, advance=lambda n=1: None, stats: SamplingStats | None = None,
                     verify_config=None) -> pa.Table:
    """Sample every question of a table in memory (all rounds), no parts; `advance` per question of the first round.
    `verify_config` (the recipe's `verify` section) judges acceptance for the adaptive budget and guidance."""
    stats = stats if stats is not None else SamplingStats()
    began = time.perf_counter()
    with _judge_pool(config, verify_config) as pool:
        work = _work(0, lambda: questions, lambda: None, lambda rows, s: to_table(rows, Sample),
                     PartStore(None, "", None), generator, config, recipe_seed, recipe_hash, build_id, pool,
                     verify_config)
        work.stats = stats
        (table,) = StreamSampler([work], generator, config.batch_requests, config.part_requests,
                                 config.part_seconds, advance).run()
    stats.stage_s = time.perf_counter() - began
    return table


def samples_key(ctx: BuildContext, questions: ShardRef, config: GenerationConfig, verify_config=None) -> str:
    """The content address of a question shard's samples."""
    verifying = config.adaptive.enabled or config.guidance.enabled
    # (the error threshold decides whether the build goes on, never what is sampled: it stays out of the key; nor do
    # the knobs that only say how requests reach the backend)
    config_hash = stable_id(config.model_dump_json(exclude=_NOT_IN_KEY), str(ctx.seed),
                            verify_config.model_dump_json() if verifying and verify_config is not None else "")
    # The verifiers run here only with the adaptive budget or guidance: otherwise a verifier change re-verifies the
    # samples, it never regenerates them.
    unused = () if verifying else ("cotforge.tasks.verify", "cotforge.schemas.config_verify")
    return shard_key("samples", config_hash, questions.key, code=code_hash(__name__, exclude=unused))


_NOT_IN_KEY = {"max_error_rate", "batch_requests", "part_requests", "part_seconds"}


@task(name="sample", cache_policy=NO_CACHE)
def sample_shards(ctx: BuildContext, questions: list[ShardRef], generator: Generator, config: GenerationConfig,
                  advance=lambda n=1: None, verify_config=None, on_shard=None) -> list[ShardRef]:
    """Sample question shards through one stream of the backend (a shard whose output exists is skipped; one partly
    done resumes from its parts). `on_shard(position, ref)` is called as each shard is written, in finishing order.
    `verify_config` matters only with the adaptive budget or guidance, which verify as they sample."""
    store = ctx.store
    part_index = PartIndex(store)  # every shard's parts, listed once for the stage

    def shard(position: int, q: ShardRef) -> ShardWork:
        key = samples_key(ctx, q, config, verify_config)

        def finished():
            done = store.done("samples", key)
            # (a shard with failed requests is sampled again: its good parts reused, its failed requests asked again)
            if done is not None and not _failed_samples(store.read(done, _FAILURE_COLUMNS)):
                advance(q.rows)
                return done
            return None

        def write(rows, stats):
            table = to_table(rows, Sample)
            ref = store.write("samples", key, table, ctx.metadata)
            store.write_json(stats_path(key), stats.__dict__ | {"backend": generator.backend,
                                                                "model": generator.model, "run_id": ctx.run_id})
            return _content_ref(ref, table)
        parts = PartStore(store, key, ctx.metadata, part_index)
        return _work(position, lambda: store.read(q), finished, write, parts,
                     generator, config, ctx.seed, ctx.recipe_hash, ctx.build_id, pool, verify_config)

    with _judge_pool(config, verify_config) as pool:
        sampler = StreamSampler([shard(i, q) for i, q in enumerate(questions)], generator, config.batch_requests,
                                config.part_requests, config.part_seconds, advance, on_shard)
        return sampler.run()


@task(name="sample-shard", cache_policy=NO_CACHE)
def sample_shard(ctx: BuildContext, questions: ShardRef, generator: Generator, config: GenerationConfig,
                 advance=lambda n=1: None, verify_config=None) -> ShardRef:
    """Sample one question shard (`sample_shards` of one)."""
    return sample_shards.fn(ctx, [questions], generator, config, advance, verify_config)[0]


_FAILURE_COLUMNS = ["sample_id", "error", "error_permanent"]  # all that deciding a retry reads of a finished shard


def _failed_samples(table: pa.Table) -> list[str]:
    """The ids of the samples whose request failed and may succeed when asked again (sorted)."""
    ids, errors, permanent = (table.column(c).to_pylist() for c in _FAILURE_COLUMNS)
    return sorted(s for s, e, final in zip(ids, errors, permanent) if e is not None and not final)


def _content_ref(ref: ShardRef, table: pa.Table) -> ShardRef:
    """The reference later stages key on. A shard with failed requests is rewritten when a rerun asks them again, so
    its key names the failed samples: verdicts, votes ... of the earlier, failed content are then never reused."""
    failed = _failed_samples(table)
    return ShardRef(ref.stage, stable_id(ref.key, "failed", *failed, length=20), ref.path, ref.rows) if failed else ref
