"""Question stage: turn the recipe's sources (families, seed datasets, synthesised) into Question records, in shards.

Sources are read in recipe order, each with its own seed (adding a source does not change the others) and its count
(`n`, or its share of `questions.total` by weight). A question's id is the hash of its normalised text, so the same
question from two sources is one question: the later copy becomes a rejected row (`duplicate_of:<source>`), like a
seed row that does not parse or a synthesised candidate that fails its checks. Rejected rows are written as the
`question_rejects` stage; the per-source mix goes to the build report and the dataset card.

Question shards are content-addressed: each source's questions are cut into shards of its own, and a shard's key is a
hash of its rows (text, answers, steps, source, the Hub commit a seed dataset resolved to, synthesis verdicts and
writer model), not of the recipe or of a position. Editing a seed file changes the key of exactly the shards whose
rows it changes, so only those are sampled and verified again; a Hub dataset that moves (an unpinned revision)
records its new commit on every row it gives, so its shards are rebuilt; the other sources' shards are reused.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_questions import (
    FamilySourceConfig,
    QuestionsConfig,
    ReasoningGymSourceConfig,
    SeedSourceConfig,
    SynthSourceConfig,
)
from cotforge.schemas.records import Question, question_id_for
from cotforge.tasks.core.context import BuildContext, BuildFailed
from cotforge.tasks.core.shards import ShardRef, ShardStore, config_hash, shard_key
from cotforge.tasks.questions.families import get_family
from cotforge.tasks.questions.seeds import RejectedQuestion, seed_questions


@dataclass
class CollectedQuestions:
    questions: list[Question] = field(default_factory=list)
    rejected: list[RejectedQuestion] = field(default_factory=list)
    empty_sources: list[str] = field(default_factory=list)  # sources that gave no question at all, and why


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
        elif isinstance(source, ReasoningGymSourceConfig):
            from cotforge.tasks.questions.gym import gym_questions  # the optional extra, imported when used

            # The recipe seed, not the position's: item seeds hash (task, config, seed, index) themselves.
            part = CollectedQuestions(*gym_questions(source, count, seed, recipe_hash, build_id))
        else:
            part = synth_questions(source, count, source_seed, recipe_hash, build_id, store, metadata,
                                   open_generators)
        out.rejected += part.rejected
        if not part.questions:
            out.empty_sources.append(_empty_source(position, source, part.rejected))
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


def _empty_source(position: int, source, rejected: list[RejectedQuestion]) -> str:
    """What to tell about a source that gave no question: which one, and what became of its rows."""
    if isinstance(source, SeedSourceConfig):
        name = f"seed source {source.name!r} ({source.path or source.hub.repo})"
    else:
        name = f"{source.kind} source {getattr(source, 'name', None) or getattr(source, 'family', None) or ''}".strip()
    reasons = Counter(r.reason.split(":")[0] for r in rejected)
    why = f"all {len(rejected)} rows rejected ({', '.join(f'{k}: {v}' for k, v in reasons.most_common(5))})" \
        if rejected else "no rows at all (an empty file?)"
    return f"questions.sources[{position}], {name}: {why}"


def question_mix(questions: pl.DataFrame, rejects: pl.DataFrame | None) -> list[dict]:
    """Per source: questions kept, rows rejected (with the most common reasons), the share of the mix, and the
    revision a Hub dataset resolved to (`repo@commit`)."""
    kept = Counter(questions["source"].to_list()) if questions.height else Counter()
    revisions: dict[str, list[str]] = {}
    if questions.height and "source_revision" in questions.columns:
        for source, revision in zip(questions["source"].to_list(), questions["source_revision"].to_list()):
            if revision is not None and revision not in revisions.setdefault(source, []):
                revisions[source].append(revision)
    rejected: dict[str, Counter] = {}
    if rejects is not None and rejects.height:
        for source, reason in zip(rejects["source"].to_list(), rejects["reason"].to_list()):
            rejected.setdefault(source, Counter())[reason.split(":")[0]] += 1
    total = sum(kept.values()) or 1
    return [{"source": source, "questions": kept.get(source, 0), "share": round(kept.get(source, 0) / total, 4),
             "rejected": sum(rejected.get(source, Counter()).values()),
             "reject_reasons": dict(rejected.get(source, Counter()).most_common(5)),
             "revision": ", ".join(revisions.get(source, [])) or None}
            for source in list(kept) + [s for s in rejected if s not in kept]]


def split_rows(table: pa.Table, shard_size: int) -> list[pa.Table]:
    """Consecutive slices of at most `shard_size` rows (at least one, possibly empty, slice)."""
    if table.num_rows == 0:
        return [table]
    return [table.slice(start, shard_size) for start in range(0, table.num_rows, shard_size)]


def split_by_source(table: pa.Table, shard_size: int) -> list[pa.Table]:
    """Shards of at most `shard_size` rows that never mix two sources: a source that gives more or fewer rows after
    an edit shifts only its own shards."""
    sources = table.column("source").to_pylist()
    runs, start = [], 0
    for i in range(1, len(sources) + 1):
        if i == len(sources) or sources[i] != sources[start]:
            runs.append(table.slice(start, i - start))
            start = i
    return [shard for run in runs for shard in split_rows(run, shard_size)] or [table]


LINEAGE_COLUMNS = ("recipe_hash", "build_id")  # which build wrote a row: not part of what the row is


def rows_address(table: pa.Table) -> str:
    """The content address of question rows: a hash of every column except the lineage of the build that wrote
    them, so a new build (another recipe hash or version) with the same questions reuses the shard."""
    rows = table.drop_columns([c for c in LINEAGE_COLUMNS if c in table.column_names]).to_pylist()
    payload = json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:32]


def _rejects_key(config: QuestionsConfig, seed: int, build_id: str) -> str:
    return shard_key("question_rejects", config_hash(config, str(seed), build_id), code="")


def rejects_ref(ctx: BuildContext, config: QuestionsConfig) -> ShardRef | None:
    """The `question_rejects` shard a questions stage wrote for this config, if any."""
    return ctx.store.done("question_rejects", _rejects_key(config, ctx.seed, ctx.build_id))


@task(name="questions", cache_policy=NO_CACHE)
def questions_shards(ctx: BuildContext, config: QuestionsConfig, shard_size: int) -> list[ShardRef]:
    """Collect the questions (synthesis is cached in its own shards) and write the shards that are not already done,
    each keyed by its rows' content; the rejected rows go to one `question_rejects` shard (read back with
    `rejects_ref`), rewritten when the sources, read again on every run, now reject other rows."""
    store, metadata = ctx.store, ctx.metadata
    collected = collect_sources(config, ctx.seed, ctx.recipe_hash, ctx.build_id, store, metadata)
    refs = []
    for rows in split_by_source(to_table(collected.questions, Question), shard_size):
        # The rows are the address: the code that made them is covered by what it made (code="").
        key = shard_key("questions", rows_address(rows), code="")
        refs.append(store.done("questions", key) or store.write("questions", key, rows, metadata))
    rejects, reject_key = to_table(collected.rejected, RejectedQuestion), _rejects_key(config, ctx.seed, ctx.build_id)
    done = store.done("question_rejects", reject_key)
    if done is None or rows_address(store.read(done)) != rows_address(rejects):  # an edited source rejects others
        store.write("question_rejects", reject_key, rejects, metadata)
    if not refs or not sum(r.rows for r in refs):
        reasons = sorted({r.reason.split(":")[0] for r in collected.rejected})
        raise BuildFailed(f"the recipe's sources gave no questions ({len(collected.rejected)} rows rejected"
                          f"{': ' + ', '.join(reasons) if reasons else ''}); nothing to sample, nothing published")
    if collected.empty_sources:  # the recipe asked for questions from it: a silent gap in the mix is not a build
        raise BuildFailed("a question source gave no questions, nothing published: "
                          + "; ".join(collected.empty_sources) + ". Fix the source or remove it from the recipe "
                          "(rejected rows and their reasons: `cotforge validate`)")
    return refs
