"""The join of the stage records: one row per sample with its question, verdict, vote and dedup flags.

Below every stage that reads it (step labelling, views, publishing), so none of them imports another for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from cotforge.tasks.core.shards import ShardRef, ShardStore


def join_records(questions: pl.DataFrame, samples: pl.DataFrame, verdicts: pl.DataFrame, votes: pl.DataFrame,
                 dedup: pl.DataFrame, sample_dedup: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per sample with its question, verdict, vote and dedup flags; `usable` marks what views may take."""
    q = questions.select("question_id", pl.col("text").alias("question"), "source", "family", "difficulty",
                         "gold_answer", "answer_type", "verifier", "tests", "metadata_json")
    if "trainable" not in verdicts.columns:  # verdicts written before the column existed: none is trainable
        verdicts = verdicts.with_columns(trainable=pl.lit(False), untrainable_reason=pl.lit("unknown"))
    v = verdicts.select("sample_id", "extracted_answer", "verdict", pl.col("reason").alias("verdict_reason"),
                        "trainable", "untrainable_reason", *(["checks"] if "checks" in verdicts.columns else []))
    votes = votes.select("question_id", "majority_answer", "vote_share", "pass_rate", "n_samples", "n_answered",
                         "n_correct", "pseudo_label", "difficulty_bin", "reference_model")
    # one flag per question id (two sources can give the same question); a kept copy wins
    d = dedup.sort("keep", descending=True).unique("question_id", keep="first", maintain_order=True).select(
        "question_id", "keep", "drop_reason")
    if sample_dedup is not None:
        samples = samples.join(sample_dedup.select("sample_id", pl.col("keep").alias("sample_keep"),
                                                   pl.col("drop_reason").alias("sample_drop_reason")),
                               on="sample_id", how="left")
    else:
        samples = samples.with_columns(sample_keep=pl.lit(True), sample_drop_reason=pl.lit(None, pl.Utf8))
    joined = (samples.join(q, on="question_id", how="left").join(v, on="sample_id", how="left")
              .join(votes, on="question_id", how="left").join(d, on="question_id", how="left"))
    same_answer = pl.len().over("question_id", "extracted_answer")
    return joined.with_columns(
        agrees_with_majority=(pl.col("extracted_answer") == pl.col("majority_answer")).fill_null(False),
        # SaySelf-style consistency: the share of the question's answered samples that gave this sample's answer.
        answer_agreement=pl.when(pl.col("extracted_answer").is_not_null() & (pl.col("n_answered") > 0))
        .then(same_answer / pl.col("n_answered")).otherwise(0.0).cast(pl.Float64),
        usable=pl.col("keep").fill_null(False) & pl.col("sample_keep").fill_null(True) & pl.col("error").is_null(),
    ).sort("question_id", "sample_index")


@dataclass(frozen=True)
class RecordRefs:
    """The stage shards whose join a step reads: one shard each (step labels) or all of them (publishing)."""

    questions: list[ShardRef]
    samples: list[ShardRef]
    verdicts: list[ShardRef]
    votes: list[ShardRef]
    dedup: list[ShardRef]
    sample_dedup: list[ShardRef] = field(default_factory=list)

    def keys(self) -> list[str]:
        """The input keys, in a fixed order, for the shard key of whatever is computed from the join."""
        return [r.key for part in (self.questions, self.samples, self.verdicts, self.votes, self.dedup,
                                   self.sample_dedup) for r in part]


_BY_QUESTION: dict[tuple, pl.DataFrame] = {}  # (store root, shard paths) -> rows sorted by question id
_BY_QUESTION_KEPT = 2  # the dedup and sample_dedup tables of the build being labelled


def rows_of_questions(store: ShardStore, shards: list[ShardRef], question_ids: pl.Series) -> pl.DataFrame:
    """The rows of `shards` whose question_id is in `question_ids`. The shards are read once per process and kept
    sorted by question id (at most two sets), so each call costs its own rows plus a binary search, not a read of the
    whole table: step labelling reads the build's global dedup flags once per shard of samples."""
    key = (store.root, tuple(r.path for r in shards))
    table = _BY_QUESTION.get(key)
    if table is None:
        table = pl.from_arrow(store.read_all(shards)).sort("question_id")
        while len(_BY_QUESTION) >= _BY_QUESTION_KEPT:
            _BY_QUESTION.pop(next(iter(_BY_QUESTION)))
        _BY_QUESTION[key] = table
    wanted = question_ids.unique().sort().cast(table["question_id"].dtype)
    column = table["question_id"]
    starts = column.search_sorted(wanted, side="left").to_numpy().astype(np.int64)
    lengths = column.search_sorted(wanted, side="right").to_numpy().astype(np.int64) - starts
    before = np.cumsum(lengths) - lengths  # rows of the earlier ids
    rows = np.repeat(starts - before, lengths) + np.arange(lengths.sum(), dtype=np.int64)
    return table[rows]


def read_joined(store: ShardStore, refs: RecordRefs) -> pl.DataFrame:
    """`join_records` over the shards `refs` names (the dedup flags: only those of its questions)."""
    return join_records(**read_records(store, refs))


def read_records(store: ShardStore, refs: RecordRefs) -> dict[str, pl.DataFrame | None]:
    """The records `refs` names, as `join_records` takes them (keyword arguments): the shards' rows, and of the dedup
    flags only those of their questions."""
    def frame(shards: list[ShardRef]) -> pl.DataFrame:
        return pl.from_arrow(store.read_all(shards))

    questions = frame(refs.questions)
    ids = questions["question_id"]
    return {"questions": questions, "samples": frame(refs.samples), "verdicts": frame(refs.verdicts),
            "votes": frame(refs.votes), "dedup": rows_of_questions(store, refs.dedup, ids),
            "sample_dedup": rows_of_questions(store, refs.sample_dedup, ids) if refs.sample_dedup else None}


def question_slices(joined: pl.DataFrame, rows: int) -> list[pl.DataFrame]:
    """`joined` cut into slices of about `rows` samples that never split a question (every builder works question by
    question, so the views of the slices, concatenated, are the view of the whole). Only a frame sorted by question,
    as `join_records` returns it, is cut; any other is one slice."""
    ids = joined["question_id"]
    if joined.height <= rows or not ids.is_sorted():
        return [joined]
    slices, start = [], 0
    while start < joined.height:
        end = min(start + rows, joined.height)
        while end < joined.height and ids[end] == ids[end - 1]:
            end += 1
        slices.append(joined.slice(start, end - start))
        start = end
    return slices
