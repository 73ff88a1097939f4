"""Self-consistency and difficulty: majority vote over each question's extracted answers, and its pass rate."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.arrow import to_table
from schemas.config_verify import VerifyConfig
from schemas.records import Vote, stable_id
from tasks.shards import ShardRef, ShardStore, shard_key


def difficulty_bin(pass_rate: float | None) -> str:
    """Coarse difficulty from the pass rate: the band "hard".."easy" is what RL and filtering want."""
    if pass_rate is None:
        return "unknown"
    if pass_rate == 0.0:
        return "never"
    if pass_rate == 1.0:
        return "always"
    return "hard" if pass_rate < 1 / 3 else "medium" if pass_rate < 2 / 3 else "easy"


def vote_answers(verdicts: pa.Table, questions: pa.Table, config: VerifyConfig, reference_model: str,
                 recipe_hash: str, build_id: str) -> pa.Table:
    """One Vote per question (questions without samples get n_samples=0)."""
    v = pl.from_arrow(verdicts)
    by_question: dict[str, list[dict]] = {}
    for row in v.iter_rows(named=True):
        by_question.setdefault(row["question_id"], []).append(row)
    votes = []
    for q in questions.select(["question_id", "gold_answer"]).to_pylist():
        rows = by_question.get(q["question_id"], [])
        answers = [r["extracted_answer"] for r in rows if r["extracted_answer"] is not None]
        counts = Counter(answers)
        # Ties break on the answer text so the vote is deterministic.
        majority, top = min(counts.items(), key=lambda kv: (-kv[1], kv[0])) if counts else (None, 0)
        share = top / len(answers) if answers else 0.0
        n_correct = sum(1 for r in rows if r["verdict"] is True)
        has_gold = q["gold_answer"] is not None
        pass_rate = n_correct / len(rows) if rows and has_gold else None
        pseudo = majority if not has_gold and share >= config.pseudo_label_min_share else None
        votes.append(Vote(
            question_id=q["question_id"], n_samples=len(rows), n_answered=len(answers), n_correct=n_correct,
            majority_answer=majority, vote_share=share, pass_rate=pass_rate, pseudo_label=pseudo,
            difficulty_bin=difficulty_bin(pass_rate), reference_model=reference_model, recipe_hash=recipe_hash,
            build_id=build_id,
        ))
    return to_table(votes, Vote)


@task(name="vote", cache_policy=NO_CACHE)
def vote_shard(store: ShardStore, verdicts: ShardRef, questions: ShardRef, config: VerifyConfig,
               reference_model: str, recipe_hash: str, build_id: str, metadata: dict[str, str]) -> ShardRef:
    key = shard_key("votes", stable_id(config.model_dump_json(), reference_model), verdicts.key, questions.key)
    done = store.done("votes", key)
    if done is not None:
        return done
    table = vote_answers(store.read(verdicts), store.read(questions), config, reference_model, recipe_hash, build_id)
    return store.write("votes", key, table, metadata)
