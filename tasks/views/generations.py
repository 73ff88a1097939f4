"""The `generations` view: one row per question with every generation in parallel lists, as the Hub's large
reasoning datasets publish them (OpenR1-Math-220k: `generations`, `finish_reasons`, `correctness_*` lists), so users
filter for themselves instead of taking cotforge's training selections."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_views import GenerationsViewConfig
from cotforge.schemas.views import GenerationsRow

CARD_NOTE = ("`generations` holds every generation of a kept question (generation errors left out), whatever the "
             "verdict: `correctness` is the final verdict per generation, `correctness_by_verifier` each verifier's, "
             "`messages` one verified, trainable generation as a whole chat (null when none is). Reasoning-gym rows "
             "carry their entry in `verifier_spec`: `cotforge.tasks.verify.gym_check.rescore_row(row)` re-scores them.")
RLVR_NOTE = ("`rlvr` rows of reasoning-gym questions carry the same `verifier_spec`: pass "
             "`cotforge.tasks.verify.gym_check.gym_reward` to TRL's `GRPOTrainer(reward_funcs=...)` to reward "
             "completions with each task's own scorer (1.0 verified, 0.0 not, None for rows of other questions).")


def verifier_spec(metadata_json: str | None) -> str | None:
    """What re-scoring a question needs, from its metadata: a reasoning-gym entry; None for other questions."""
    spec = json.loads(metadata_json or "{}").get("reasoning_gym")
    return json.dumps({"reasoning_gym": spec}, sort_keys=True) if spec is not None else None


def _by_verifier(samples: list[dict]) -> list[dict]:
    """Each verifier that ran on any generation, with its verdict and reason per generation (None / "" where it
    did not run on that one), in the order the cascade ran them."""
    names: dict[str, str] = {}
    for s in samples:
        for check in s.get("checks") or []:
            names.setdefault(check["name"], check["version"])
    out = []
    for name, version in names.items():
        found = [{c["name"]: c for c in s.get("checks") or []}.get(name) for s in samples]
        out.append({"verifier": name, "version": version, "verdicts": [c["verdict"] if c else None for c in found],
                    "reasons": [c["reason"] if c else "" for c in found]})
    return out


def build_generations(joined: pl.DataFrame, config: GenerationsViewConfig, system_prompt: str | None = None,
                      added_in: str | None = None) -> pa.Table:
    """One row per kept question (dedup keep) with at least one generation that did not fail."""
    picked = joined.filter(pl.col("keep").fill_null(False) & pl.col("error").is_null()).sort("question_id",
                                                                                            "sample_index")
    rows = []
    for (question_id,), group in picked.group_by("question_id", maintain_order=True):
        samples = group.to_dicts()
        first = samples[0]
        prompt = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": first["question"]}]
        shown = next((s for s in samples if s["verdict"] is True and s["trainable"] and s["usable"]), None)
        rows.append(GenerationsRow(
            question_id=question_id, problem=first["question"], prompt=prompt, answer=first["gold_answer"],
            source=first["source"], difficulty=first["difficulty"], verifier=first["verifier"],
            verifier_spec=verifier_spec(first["metadata_json"]), generations=[s["text"] for s in samples],
            sample_ids=[s["sample_id"] for s in samples], finish_reasons=[s["finish_reason"] for s in samples],
            extracted_answers=[s["extracted_answer"] for s in samples], correctness=[s["verdict"] for s in samples],
            correctness_by_verifier=_by_verifier(samples), trainable=[bool(s["trainable"]) for s in samples],
            prompt_tokens=[s["prompt_tokens"] for s in samples],
            completion_tokens=[s["completion_tokens"] for s in samples],
            correctness_count=sum(s["verdict"] is True for s in samples), pass_rate=first["pass_rate"],
            difficulty_bin=first["difficulty_bin"] or "unknown",
            messages=None if shown is None else prompt + [{"role": "assistant", "content": shown["text"]}],
            model=first["model"], added_in=added_in,
        ))
    return to_table(rows, GenerationsRow)
