"""Question stage: turn the recipe's sources into Question records, split into shards."""

from __future__ import annotations

import json

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.arrow import to_table
from schemas.config_questions import FamilySourceConfig, QuestionsConfig
from schemas.records import Question, question_id_for, stable_id
from tasks.families import get_family
from tasks.shards import ShardRef, ShardStore, shard_key


def family_questions(source: FamilySourceConfig, seed: int, recipe_hash: str, build_id: str) -> list[Question]:
    """Questions from one programmatic family source."""
    family = get_family(source.family)
    items = family.generate(source.n, source.difficulty, seed, **source.params)
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


def collect_questions(config: QuestionsConfig, seed: int, recipe_hash: str, build_id: str) -> list[Question]:
    """All sources in recipe order; each source gets its own seed so adding a source does not change the others."""
    questions: list[Question] = []
    for position, source in enumerate(config.sources):
        questions += family_questions(source, seed + 1000 * position, recipe_hash, build_id)
    return questions


def split_rows(table: pa.Table, shard_size: int) -> list[pa.Table]:
    """Consecutive slices of at most `shard_size` rows (at least one, possibly empty, slice)."""
    if table.num_rows == 0:
        return [table]
    return [table.slice(start, shard_size) for start in range(0, table.num_rows, shard_size)]


@task(name="questions", cache_policy=NO_CACHE)
def questions_shards(store: ShardStore, config: QuestionsConfig, seed: int, shard_size: int, recipe_hash: str,
                     build_id: str, metadata: dict[str, str]) -> list[ShardRef]:
    """Generate the questions (deterministic and cheap) and write the shards that are not already done."""
    config_hash = stable_id(config.model_dump_json(), str(seed), str(shard_size), build_id)
    table = to_table(collect_questions(config, seed, recipe_hash, build_id), Question)
    refs = []
    for index, rows in enumerate(split_rows(table, shard_size)):
        key = shard_key("questions", config_hash, str(index))
        refs.append(store.done("questions", key) or store.write("questions", key, rows, metadata))
    return refs
