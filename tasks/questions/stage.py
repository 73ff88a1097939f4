"""Question stage: turn the recipe's sources (families, seed datasets, synthesised) into Question records, in shards.

Sources are read in recipe order, each with its own seed (adding a source does not change the others) and its count
(`n`, or its share of `questions.total` by weight). A question's id is the hash of its normalised text, so the same
question from two sources is one question: the later copy becomes a rejected row (`duplicate_of:<source>`), like a
seed row that does not parse or a synthesised candidate that fails its checks. Rejected rows are written as the
`question_rejects` stage; the per-source mix goes to the build report and the dataset card.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_questions import FamilySourceConfig, QuestionsConfig, SeedSourceConfig, SynthSourceConfig
from cotforge.schemas.records import Question, question_id_for
from cotforge.tasks.core.context import BuildContext, BuildFailed
from cotforge.tasks.core.shards import ShardRef, ShardStore, config_hash, shard_key
from cotforge.tasks.questions.families import get_family
from cotforge.tasks.questions.seeds import RejectedQuestion, seed_questions


@dataclass
class CollectedQuestions:
    questions: list[Question] = field(default_factory=list)
    rejected: list[RejectedQuestion] = field(default_factory=list)


def family_questions(source: FamilySourceConfig, seed: int, recipe_hash: str, build_id: str,
                     count: int | None = None) -> list[Question]:
    """Questions from one programmatic family source."""
    family = get_family(source.family)
    items = family.generate(count if count is not None else source.n, source.difficulty, seed, **source.params)
    return [
        Question(
            question_id=question_id_for(item.text), source=f"family:{source.family}", family=source.family,
            difficulty=source.difficulty, text=item.text, gold_answer=item.gold_answer,
            answer_type=item.answer_type, verifier=item.verifier, reference_steps=list(item.reference_steps),
            tests=item.tests, metadata_json=json.dumps({"params": item.params}, sort_keys=True),
            recipe_hash=recipe_hash, build_id=build_id,
        )
        for item in items
    ]


def synth_questions(source: SynthSourceConfig, count: int | None, seed: int, recipe_hash: str, build_id: str,
                    store: ShardStore | None, metadata: dict[str, str] | None = None,
                    open_generators=None) -> CollectedQuestions:
    """Synthesised questions (cached candidates in the `synth` stage), evolved from parents when mode is evolve."""
    from cotforge.tasks.questions.synth import candidates_to_questions, make_generators, synth_candidates_cached

    parents: list[Question] = []
    if source.from_seed is not None:
        parents, _ = seed_questions(source.from_seed, source.from_seed.n, seed, recipe_hash, build_id)
    elif source.from_family is not None:
        parents = family_questions(source.from_family, seed, recipe_hash, build_id)
    candidates = synth_candidates_cached(store, source, seed, parents, open_generators or make_generators, metadata)
    return CollectedQuestions(*candidates_to_questions(source, candidates, count, recipe_hash, build_id))


def collect_sources(config: QuestionsConfig, seed: int, recipe_hash: str, build_id: str,
                    store: ShardStore | None = None, metadata: dict[str, str] | None = None,
                    open_generators=None) -> CollectedQuestions:
    """Every source's questions and rejected rows; a question whose id an earlier source already gave is rejected."""
    out = CollectedQuestions()
    first_source: dict[str, str] = {}
    for position, (source, count) in enumerate(zip(config.sources, config.source_counts())):
        source_seed = seed + 1000 * position
        if isinstance(source, FamilySourceConfig):
            part = CollectedQuestions(family_questions(source, source_seed, recipe_hash, build_id, count))
        elif isinstance(source, SeedSourceConfig):
            part = CollectedQuestions(*seed_questions(source, count, source_seed, recipe_hash, build_id))
        else:
            part = synth_questions(source, count, source_seed, recipe_hash, build_id, store, metadata,
                                   open_generators)
        out.rejected += part.rejected
        for index, q in enumerate(part.questions):
            if q.question_id in first_source:
                out.rejected.append(RejectedQuestion(
                    source=q.source, row=index, reason=f"duplicate_of:{first_source[q.question_id]}", text=q.text,
                    row_json=json.dumps({"question_id": q.question_id}), recipe_hash=recipe_hash,
                    build_id=build_id))
                continue
            first_source[q.question_id] = q.source
            out.questions.append(q)
    return out


def question_mix(questions: pl.DataFrame, rejects: pl.DataFrame | None) -> list[dict]:
    """Per source: questions kept, rows rejected (with the most common reasons), and the share of the mix."""
    kept = Counter(questions["source"].to_list()) if questions.height else Counter()
    rejected: dict[str, Counter] = {}
    if rejects is not None and rejects.height:
        for source, reason in zip(rejects["source"].to_list(), rejects["reason"].to_list()):
            rejected.setdefault(source, Counter())[reason.split(":")[0]] += 1
    total = sum(kept.values()) or 1
    return [{"source": source, "questions": kept.get(source, 0), "share": round(kept.get(source, 0) / total, 4),
             "rejected": sum(rejected.get(source, Counter()).values()),
             "reject_reasons": dict(rejected.get(source, Counter()).most_common(5))}
            for source in list(kept) + [s for s in rejected if s not in kept]]


def split_rows(table: pa.Table, shard_size: int) -> list[pa.Table]:
    """Consecutive slices of at most `shard_size` rows (at least one, possibly empty, slice)."""
    if table.num_rows == 0:
        return [table]
    return [table.slice(start, shard_size) for start in range(0, table.num_rows, shard_size)]


def rejects_ref(ctx: BuildContext, config: QuestionsConfig) -> ShardRef | None:
    """The `question_rejects` shard a questions stage wrote for this config, if any."""
    key = shard_key("question_rejects", config_hash(config, str(ctx.seed), ctx.build_id))
    return ctx.store.done("question_rejects", key)


@task(name="questions", cache_policy=NO_CACHE)
def questions_shards(ctx: BuildContext, config: QuestionsConfig, shard_size: int) -> list[ShardRef]:
    """Collect the questions (synthesis is cached in its own shards) and write the shards that are not already done;
    the rejected rows go to one `question_rejects` shard (read back with `rejects_ref`)."""
    store, seed, build_id, metadata = ctx.store, ctx.seed, ctx.build_id, ctx.metadata
    shards_hash = config_hash(config, str(seed), str(shard_size), build_id)
    collected = collect_sources(config, seed, ctx.recipe_hash, build_id, store, metadata)
    table = to_table(collected.questions, Question)
    refs = []
    for index, rows in enumerate(split_rows(table, shard_size)):
        key = shard_key("questions", shards_hash, str(index))
        refs.append(store.done("questions", key) or store.write("questions", key, rows, metadata))
    reject_key = shard_key("question_rejects", config_hash(config, str(seed), build_id))
    store.done("question_rejects", reject_key) or store.write(
        "question_rejects", reject_key, to_table(collected.rejected, RejectedQuestion), metadata)
    if not table.num_rows:
        reasons = sorted({r.reason.split(":")[0] for r in collected.rejected})
        raise BuildFailed(f"the recipe's sources gave no questions ({len(collected.rejected)} rows rejected"
                          f"{': ' + ', '.join(reasons) if reasons else ''}); nothing to sample, nothing published")
    return refs
