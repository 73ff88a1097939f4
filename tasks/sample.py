"""Sampling stage: k rationales per question from the recipe's generator, written as Sample records."""

from __future__ import annotations

import json

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.arrow import to_table
from schemas.config_generation import GenerationConfig
from schemas.records import Sample, stable_id
from tasks.generate import Completion, GenerationRequest, Generator, SamplingParams
from tasks.progress import stage_bar
from tasks.shards import ShardRef, ShardStore, shard_key

REQUESTS_PER_CALL = 8  # requests handed to the backend at once: small enough for a live progress bar


def prompt_template_hash(config: GenerationConfig) -> str:
    return stable_id(config.system_prompt, "{question}")


def request_seed(recipe_seed: int, question_id: str, round_: int = 0) -> int:
    """A per-question seed, stable across runs and shard layouts, so a resumed build samples the same text."""
    return int(stable_id(str(recipe_seed), question_id, str(round_), length=8), 16) % (2**31 - 1)


def build_requests(questions: pa.Table, config: GenerationConfig, recipe_seed: int) -> list[GenerationRequest]:
    """One chat request per question, asking for `samples_per_question` completions."""
    s = config.sampling
    params = SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=tuple(s.stop))
    requests = []
    for row in questions.to_pylist():
        metadata = json.loads(row["metadata_json"])
        messages = ({"role": "system", "content": config.system_prompt}, {"role": "user", "content": row["text"]})
        requests.append(GenerationRequest(
            request_id=row["question_id"], messages=messages, n=config.samples_per_question,
            seed=request_seed(recipe_seed, row["question_id"]), params=params,
            context={"family": row["family"], "params": metadata.get("params")},
        ))
    return requests


def completions_to_samples(requests: list[GenerationRequest], completions: list[Completion], generator: Generator,
                           config: GenerationConfig, recipe_hash: str, build_id: str) -> list[Sample]:
    """Attach lineage to each completion."""
    by_id = {r.request_id: r for r in requests}
    template_hash = prompt_template_hash(config)
    samples = []
    for c in completions:
        request = by_id[c.request_id]
        sampling = {"temperature": request.params.temperature, "top_p": request.params.top_p,
                    "max_tokens": request.params.max_tokens, "stop": list(request.params.stop), "n": request.n}
        samples.append(Sample(
            sample_id=stable_id(c.request_id, str(request.seed), str(c.index)), question_id=c.request_id,
            sample_index=c.index, text=c.text, finish_reason=c.finish_reason, prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens, error=c.error, backend=generator.backend, model=generator.model,
            model_revision=generator.revision, sampling_json=json.dumps(sampling, sort_keys=True), seed=request.seed,
            prompt_template_hash=template_hash, first_error_step=c.first_error_step, recipe_hash=recipe_hash,
            build_id=build_id,
        ))
    return samples


def sample_questions(questions: pa.Table, generator: Generator, config: GenerationConfig, recipe_seed: int,
                     recipe_hash: str, build_id: str, advance=lambda n=1: None) -> pa.Table:
    """Sample every question of a shard; `advance` is called per finished question."""
    requests = build_requests(questions, config, recipe_seed)
    samples: list[Sample] = []
    for start in range(0, len(requests), REQUESTS_PER_CALL):
        batch = requests[start:start + REQUESTS_PER_CALL]
        samples += completions_to_samples(batch, generator.generate(batch), generator, config, recipe_hash, build_id)
        advance(len(batch))
    return to_table(samples, Sample)


@task(name="sample", cache_policy=NO_CACHE)
def sample_shard(store: ShardStore, questions: ShardRef, generator: Generator, config: GenerationConfig,
                 recipe_seed: int, recipe_hash: str, build_id: str, metadata: dict[str, str],
                 advance=lambda n=1: None) -> ShardRef:
    """Sample one question shard (skipped when its output already exists)."""
    key = shard_key("samples", stable_id(config.model_dump_json(), str(recipe_seed)), questions.key)
    done = store.done("samples", key)
    if done is not None:
        advance(questions.rows)
        return done
    table = sample_questions(store.read(questions), generator, config, recipe_seed, recipe_hash, build_id, advance)
    return store.write("samples", key, table, metadata)
