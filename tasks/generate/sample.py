"""Sampling stage: rationales per question from the recipe's generator, written as Sample records.

The stage never loses finished work: requests go to the backend in batches, and every `part_requests` requests the
finished completions are written as a part (a ShardStore shard of its own, keyed by the requests it holds). A killed
stage resumes by reading the parts that exist and re-requesting only the missing ones, with the same seeds, so its
rows equal an uninterrupted run's. The shard itself is written last, from its parts.

Adaptive budget (GVM-RAFT / online difficulty filtering): every question first gets k0 = `samples_per_question`
samples; after each round the samples are verified (`extract_answer` + the question's registered verifier) and a
question whose accepted samples are below `quota` gets more, sized by its observed acceptance rate, until the quota or
`cap` samples. Guided re-sampling then retries questions with no accepted sample, with a hint or a reference-solution
prefix; those rows carry `guidance` (off-policy).
"""

from __future__ import annotations

import json
import time

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_generation import GenerationConfig
from cotforge.schemas.records import Sample, stable_id
from cotforge.tasks.core.code import code_hash
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardRef, ShardStore, shard_key
from cotforge.tasks.generate import Completion, GenerationRequest, Generator, SamplingParams
from cotforge.tasks.generate.accounting import SamplingStats, stats_path
from cotforge.tasks.generate.adaptive import accepted_flags, guidance_for, plan_extra_samples

PART_STAGE = "samples-parts"
GUIDED_ROUND = "guided"


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


class PartWriter:
    """Resumable parts of one shard: a part is computed once; its key names the exact requests it holds."""

    def __init__(self, store: ShardStore | None, shard: str, metadata: dict[str, str] | None):
        self.store, self.shard, self.metadata = store, shard, metadata

    def key(self, round_: int | str, requests: list[GenerationRequest]) -> str:
        names = [f"{r.request_id}:{r.seed}:{r.n}:{stable_id(r.assistant_prefix, *(m['content'] for m in r.messages))}"
                 for r in requests]
        return shard_key(PART_STAGE, self.shard, str(round_), stable_id(*names), code="")  # the shard key has it

    def done(self, key: str) -> pa.Table | None:
        if self.store is None:
            return None
        ref = self.store.done(PART_STAGE, key)
        return self.store.read(ref) if ref is not None else None

    def write(self, key: str, table: pa.Table) -> None:
        if self.store is not None:
            self.store.write(PART_STAGE, key, table, self.metadata)


def _generate(requests: list[GenerationRequest], generator: Generator, config: GenerationConfig, recipe_hash: str,
              build_id: str, stats: SamplingStats, round_: int | str, guidance: str | None, offsets: dict[str, int],
              advance) -> list[Sample]:
    """Sample rows for `requests`, sent to the backend `batch_requests` at a time."""
    samples: list[Sample] = []
    for b in range(0, len(requests), config.batch_requests):
        batch = requests[b:b + config.batch_requests]
        began = time.perf_counter()
        completions = generator.generate(batch)
        stats.generate_s += time.perf_counter() - began
        stats.requests += len(batch)
        stats.completions += len(completions)
        stats.errors += sum(c.error is not None for c in completions)
        stats.prompt_tokens += sum(c.prompt_tokens for c in completions)
        stats.completion_tokens += sum(c.completion_tokens for c in completions)
        samples += completions_to_samples(batch, completions, generator, config, recipe_hash, build_id, offsets,
                                          round_, guidance)
        advance(len(batch)) if round_ == 0 else None
    return samples


def _run_round(requests: list[GenerationRequest], generator: Generator, config: GenerationConfig, recipe_hash: str,
               build_id: str, parts: PartWriter, stats: SamplingStats, round_: int | str, guidance: str | None,
               offsets: dict[str, int], advance) -> list[Sample]:
    samples: list[Sample] = []
    for start in range(0, len(requests), config.part_requests):
        part_requests = requests[start:start + config.part_requests]
        key = parts.key(round_, part_requests)
        existing = parts.done(key)
        if existing is None:
            part = _generate(part_requests, generator, config, recipe_hash, build_id, stats, round_, guidance, offsets,
                             advance)
            stats.parts_generated += 1
        else:
            part = [Sample(**row) for row in existing.to_pylist()]
            failed = {s.question_id for s in part if s.error is not None and not s.error_permanent}
            if not failed:
                stats.parts_reused += 1
                advance(len(part_requests)) if round_ == 0 else None
                samples += part
                continue
            # A request that failed in an earlier run (server down past its retries ...) is asked again, with its
            # seed: its rows become what an uninterrupted run would have written. The part's good rows stay.
            retry = [r for r in part_requests if r.request_id in failed]
            stats.retried_requests += len(retry)
            advance(len(part_requests) - len(retry)) if round_ == 0 else None
            fresh = _generate(retry, generator, config, recipe_hash, build_id, stats, round_, guidance, offsets,
                              advance)
            by_request: dict[str, list[Sample]] = {}
            for s in [s for s in part if s.question_id not in failed] + fresh:
                by_request.setdefault(s.question_id, []).append(s)
            part = [s for r in part_requests for s in by_request.get(r.request_id, [])]
        parts.write(key, to_table(part, Sample))
        samples += part
    return samples


def sample_questions(questions: pa.Table, generator: Generator, config: GenerationConfig, recipe_seed: int,
                     recipe_hash: str, build_id: str, advance=lambda n=1: None, parts: PartWriter | None = None,
                     stats: SamplingStats | None = None, verify_config=None) -> pa.Table:
    """Sample every question of a shard (all rounds); `advance` is called per question of the first round.
    `verify_config` (the recipe's `verify` section) judges acceptance for the adaptive budget and guidance."""
    adaptive, guided = config.adaptive, config.guidance
    if adaptive.enabled or guided.enabled:
        from cotforge.tasks.verify.pool import VerifierPool

        workers = verify_config.workers if verify_config is not None else None
        with VerifierPool(workers) as pool:
            return _sample_questions(questions, generator, config, recipe_seed, recipe_hash, build_id, advance, parts,
                                     stats, lambda batch: accepted_flags(batch, questions, verify_config, pool))
    return _sample_questions(questions, generator, config, recipe_seed, recipe_hash, build_id, advance, parts, stats,
                             None)


def _sample_questions(questions, generator, config, recipe_seed, recipe_hash, build_id, advance, parts, stats,
                      judge_batch) -> pa.Table:
    began = time.perf_counter()
    parts = parts or PartWriter(None, "", None)
    stats = stats if stats is not None else SamplingStats()
    stats.gpus = int(getattr(generator, "gpus", 0) or 0)
    rows = {row["question_id"]: row for row in questions.to_pylist()}
    requests = build_requests(questions, config, recipe_seed)
    samples = _run_round(requests, generator, config, recipe_hash, build_id, parts, stats, 0, None, {}, advance)
    stats.rounds = 1
    stats.per_round["0"] = len(samples)
    adaptive, guided = config.adaptive, config.guidance
    if judge_batch is not None:
        flags = judge_batch(samples)
        for round_ in range(1, adaptive.max_rounds + 1 if adaptive.enabled else 1):
            tally = _tally(samples, flags)
            more = []
            for qid, row in rows.items():
                n, accepted, decided = tally.get(qid, (0, 0, 0))
                extra = plan_extra_samples(n, accepted, decided, adaptive.quota, adaptive.cap, adaptive.min_step)
                if extra:
                    more.append(question_request(row, config, extra, request_seed(recipe_seed, qid, round_)))
            if not more:
                break
            new = _run_round(more, generator, config, recipe_hash, build_id, parts, stats, round_, None,
                             {qid: n for qid, (n, _, _) in tally.items()}, advance)
            samples += new
            flags += judge_batch(new)
            stats.rounds = round_ + 1
            stats.per_round[str(round_)] = len(new)
        if guided.enabled:
            tally = _tally(samples, flags)
            more = []
            for qid, row in rows.items():
                n, accepted, decided = tally.get(qid, (0, 0, 0))
                guide = guidance_for(row, config) if accepted == 0 and decided > 0 else None
                if guide is not None:
                    hint, prefix, k = guide
                    more.append(question_request(row, config, guided.samples,
                                                 request_seed(recipe_seed, qid, GUIDED_ROUND), hint, prefix, k))
            if more:
                new = _run_round(more, generator, config, recipe_hash, build_id, parts, stats, GUIDED_ROUND,
                                 guided.mode, {qid: n for qid, (n, _, _) in tally.items()}, advance)
                samples += new
                stats.guided_samples += len(new)
                stats.per_round[GUIDED_ROUND] = len(new)
    stats.stage_s += time.perf_counter() - began
    return to_table(samples, Sample)


def _tally(samples: list[Sample], flags: list[bool | None]) -> dict[str, tuple[int, int, int]]:
    """question -> (samples, accepted, decided)."""
    out: dict[str, list[int]] = {}
    for s, flag in zip(samples, flags):
        t = out.setdefault(s.question_id, [0, 0, 0])
        t[0] += 1
        t[1] += flag is True
        t[2] += flag is not None
    return {q: (a, b, c) for q, (a, b, c) in out.items()}


@task(name="sample", cache_policy=NO_CACHE)
def sample_shard(ctx: BuildContext, questions: ShardRef, generator: Generator, config: GenerationConfig,
                 advance=lambda n=1: None, verify_config=None) -> ShardRef:
    """Sample one question shard (skipped when its output already exists; resumed from its parts when partly done).
    `verify_config` matters only with the adaptive budget or guidance, which verify as they sample."""
    store, recipe_seed = ctx.store, ctx.seed
    verifying = config.adaptive.enabled or config.guidance.enabled
    # (the error threshold decides whether the build goes on, never what is sampled: it stays out of the key)
    config_hash = stable_id(config.model_dump_json(exclude={"max_error_rate"}), str(recipe_seed),
                            verify_config.model_dump_json() if verifying and verify_config is not None else "")
    # The verifiers run here only with the adaptive budget or guidance: otherwise a verifier change re-verifies the
    # samples, it never regenerates them.
    unused = () if verifying else ("cotforge.tasks.verify", "cotforge.schemas.config_verify")
    code = code_hash(__name__, exclude=unused)
    key = shard_key("samples", config_hash, questions.key, code=code)
    done = store.done("samples", key)
    if done is not None and not _failed_samples(store.read(done, _FAILURE_COLUMNS)):
        advance(questions.rows)
        return done
    # (a shard with failed requests is sampled again: its good parts are reused, its failed requests asked again)
    stats = SamplingStats()
    parts = PartWriter(store, key, ctx.metadata)
    table = sample_questions(store.read(questions), generator, config, recipe_seed, ctx.recipe_hash, ctx.build_id,
                             advance, parts, stats, verify_config)
    ref = store.write("samples", key, table, ctx.metadata)
    store.write_json(stats_path(key), stats.__dict__ | {"backend": generator.backend, "model": generator.model})
    return _content_ref(ref, table)


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
    return ref
