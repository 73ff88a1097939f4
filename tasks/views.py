"""View builders: the only place rows are selected. Each turns the joined stage records into one training table."""

from __future__ import annotations

import re

import polars as pl
import pyarrow as pa

from schemas.arrow import to_table
from schemas.config_views import PreferenceViewConfig, SftViewConfig
from schemas.views import VIEWS, PreferenceRow, PrmRow, SftRow

_STEP_PREFIX = re.compile(r"^\s*(?:step\s*\d+\s*[:.)-]\s*)", re.I)


def join_records(questions: pl.DataFrame, samples: pl.DataFrame, verdicts: pl.DataFrame, votes: pl.DataFrame,
                 dedup: pl.DataFrame) -> pl.DataFrame:
    """One row per sample with its question, verdict, vote and dedup flag; `usable` marks what views may take."""
    q = questions.select("question_id", pl.col("text").alias("question"), "source", "difficulty", "gold_answer")
    v = verdicts.select("sample_id", "extracted_answer", "verdict")
    votes = votes.select("question_id", "majority_answer", "vote_share", "pass_rate")
    d = dedup.select("question_id", "keep", "drop_reason")
    joined = (samples.join(q, on="question_id", how="left").join(v, on="sample_id", how="left")
              .join(votes, on="question_id", how="left").join(d, on="question_id", how="left"))
    return joined.with_columns(
        agrees_with_majority=(pl.col("extracted_answer") == pl.col("majority_answer")).fill_null(False),
        usable=pl.col("keep").fill_null(False) & pl.col("error").is_null(),
    ).sort("question_id", "sample_index")


def build_sft(joined: pl.DataFrame, config: SftViewConfig) -> pa.Table:
    """Verified rationales (strict) or those agreeing with the majority (lenient) as chats."""
    picked = joined.filter(pl.col("usable"))
    picked = picked.filter(pl.col("verdict") == True) if config.keep == "verified" else picked.filter(  # noqa: E712
        pl.col("agrees_with_majority"))
    rows = [SftRow(
        messages=[{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["text"]}],
        prompt=r["question"], completion=r["text"], question_id=r["question_id"], sample_id=r["sample_id"],
        answer=r["extracted_answer"], verified=r["verdict"], source=r["source"], difficulty=r["difficulty"],
    ) for r in picked.iter_rows(named=True)]
    return to_table(rows, SftRow)


def build_preference(joined: pl.DataFrame, config: PreferenceViewConfig) -> pa.Table:
    """Pairs of a verified-correct and an incorrect sample of the same question; never across questions."""
    rows = []
    usable = joined.filter(pl.col("usable"))
    for (question_id,), group in usable.group_by("question_id", maintain_order=True):
        correct = group.filter(pl.col("verdict") == True).to_dicts()  # noqa: E712
        wrong = group.filter(pl.col("verdict") == False).to_dicts()  # noqa: E712
        for chosen, rejected in list(zip(correct, wrong))[:config.max_pairs_per_question]:
            rows.append(PreferenceRow(
                prompt=chosen["question"], chosen=chosen["text"], rejected=rejected["text"],
                question_id=question_id, chosen_sample_id=chosen["sample_id"],
                rejected_sample_id=rejected["sample_id"], pair_method="correct_vs_incorrect", source=chosen["source"],
            ))
    return to_table(rows, PreferenceRow)


def split_steps(text: str) -> list[str]:
    """Non-empty lines as steps, with "Step i:" prefixes removed; the answer line stays the last step."""
    return [_STEP_PREFIX.sub("", line).strip() for line in text.splitlines() if line.strip()]


def build_prm(joined: pl.DataFrame) -> pa.Table:
    """Stepwise labels where the first wrong step is known (simulated solver): steps before it true, after false."""
    rows = []
    known = joined.filter(pl.col("usable") & (pl.col("backend") == "simulated"))
    for r in known.iter_rows(named=True):
        steps = split_steps(r["text"])
        if not steps:
            continue
        error_at = r["first_error_step"]
        labels = [error_at is None or i < error_at for i in range(len(steps))]
        if r["verdict"] is not True and error_at is None:
            labels[-1] = False  # right steps but no valid final answer: the answer step is the error
        first_false = next((i for i, ok in enumerate(labels) if not ok), None)
        rows.append(PrmRow(
            prompt=r["question"], completions=steps, labels=labels, step_scores=[float(x) for x in labels],
            first_error_step=first_false, label_method="simulated_ground_truth", segmentation="lines",
            question_id=r["question_id"], sample_id=r["sample_id"],
        ))
    return to_table(rows, PrmRow)


def view_metadata(view: str, recipe_hash: str, build_id: str, version: str) -> dict[str, str]:
    """Key-value metadata every published Parquet file carries."""
    return {"cotforge.schema_name": view, "cotforge.schema_version": VIEWS[view].version,
            "cotforge.recipe_hash": recipe_hash, "cotforge.build_id": build_id, "cotforge.dataset_version": version}
