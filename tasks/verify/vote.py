"""Self-consistency and difficulty: majority vote over each question's extracted answers, and its pass rate.

The vote counts normalised answers (the verify stage normalises them), so "1,000" and "1000.0" vote together. For
a question without a gold answer the majority of the *trainable* samples' answers (finished, with a stated final
answer, not a fallback extraction: see the verify cascade) becomes a pseudo-label once its share clears the recipe's
bar, and the pass rate is then the agreement with it (`pass_rate_basis` says which). Difficulty bins read the pass
rate.
"""

from __future__ import annotations

from collections import Counter

import polars as pl
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_verify import VerifyConfig
from cotforge.schemas.records import Vote, stable_id
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardRef, shard_key


def difficulty_bin(pass_rate: float | None, edges: tuple[float, float] | list[float] = (1 / 3, 2 / 3)) -> str:
    """Coarse difficulty from the pass rate: "never" | "hard" | "medium" | "easy" | "always" ("unknown": no rate)."""
    if pass_rate is None:
        return "unknown"
    if pass_rate == 0.0:
        return "never"
    if pass_rate == 1.0:
        return "always"
    return "hard" if pass_rate < edges[0] else "medium" if pass_rate < edges[1] else "easy"


def majority(answers: list[str]) -> tuple[str | None, int]:
    """The most frequent answer and its count; ties break on the answer text so the vote is deterministic."""
    counts = Counter(answers)
    if not counts:
        return None, 0
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def vote_answers(verdicts: pa.Table, questions: pa.Table, config: VerifyConfig, reference_model: str,
                 recipe_hash: str, build_id: str, k: int = 0) -> pa.Table:
    """One Vote per question (questions without samples get n_samples=0); `k` is the recipe's samples per question."""
    frame = pl.from_arrow(verdicts)
    if "trainable" not in frame.columns:  # verdicts written before the column existed: none is trainable
        frame = frame.with_columns(trainable=pl.lit(False))
    v = frame.select("question_id", "extracted_answer", "verdict", "trainable")
    by_question: dict[str, list[dict]] = {}
    for row in v.iter_rows(named=True):
        by_question.setdefault(row["question_id"], []).append(row)
    votes = []
    for q in questions.select(["question_id", "gold_answer"]).to_pylist():
        rows = by_question.get(q["question_id"], [])
        answers = [r["extracted_answer"] for r in rows if r["extracted_answer"] is not None]
        top_answer, top = majority(answers)
        share = top / len(answers) if answers else 0.0
        n_correct = sum(1 for r in rows if r["verdict"] is True)
        has_gold = q["gold_answer"] is not None
        # A pseudo-label becomes an rlvr solution: only answers a sample stated as its final answer may make one.
        stated = [r["extracted_answer"] for r in rows if r["extracted_answer"] is not None and r["trainable"]]
        label, label_count = majority(stated)
        pseudo = label if not has_gold and stated and label_count / len(stated) >= config.pseudo_label_min_share \
            else None
        if has_gold and rows:
            pass_rate, basis = n_correct / len(rows), "gold"
        elif pseudo is not None:
            pass_rate, basis = label_count / len(rows), "pseudo_label"  # agreement with the pseudo-label
        else:
            pass_rate, basis = None, None
        votes.append(Vote(
            question_id=q["question_id"], n_samples=len(rows), n_answered=len(answers), n_correct=n_correct,
            majority_answer=top_answer, vote_share=share, pass_rate=pass_rate, pass_rate_basis=basis,
            pseudo_label=pseudo, difficulty_bin=difficulty_bin(pass_rate, config.difficulty_edges),
            reference_model=reference_model, k=k, recipe_hash=recipe_hash, build_id=build_id,
        ))
    return to_table(votes, Vote)


@task(name="vote", cache_policy=NO_CACHE)
def vote_shard(ctx: BuildContext, verdicts: ShardRef, questions: ShardRef, config: VerifyConfig,
               reference_model: str, k: int = 0) -> ShardRef:
    key = shard_key("votes", stable_id(config.model_dump_json(), reference_model, str(k)), verdicts.key,
                    questions.key, stage_version="3")
    done = ctx.store.done("votes", key)
    if done is not None:
        return done
    table = vote_answers(ctx.store.read(verdicts), ctx.store.read(questions), config, reference_model,
                         ctx.recipe_hash, ctx.build_id, k)
    return ctx.store.write("votes", key, table, ctx.metadata)
