"""Verification stage: extract each sample's final answer and judge it with the question's verifier.

Verifiers are batched functions registered by name: (predictions, golds) -> [(verdict, reason)], where verdict is
True / False / None (could not decide).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable

import polars as pl
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.arrow import to_table
from schemas.records import Verdict, stable_id
from tasks.extract import extract_answer
from tasks.shards import ShardRef, ShardStore, shard_key

VerifierFn = Callable[[list[str | None], list[str | None]], list[tuple[bool | None, str]]]
VERIFIERS: dict[str, tuple[str, VerifierFn]] = {}  # name -> (version, function)


def register_verifier(name: str, version: str):
    def wrap(fn: VerifierFn) -> VerifierFn:
        VERIFIERS[name] = (version, fn)
        return fn
    return wrap


def _as_number(text: str) -> Fraction | None:
    try:
        return Fraction(text.replace(",", "").strip())
    except (ValueError, ZeroDivisionError):
        return None


@register_verifier("math", "1")
def verify_math(predictions: list[str | None], golds: list[str | None]) -> list[tuple[bool | None, str]]:
    """Numeric equivalence (exact rationals), falling back to normalised string equality."""
    out = []
    for pred, gold in zip(predictions, golds):
        if gold is None:
            out.append((None, "no_gold_answer"))
        elif pred is None:
            out.append((False, "no_answer_extracted"))
        else:
            p, g = _as_number(pred), _as_number(gold)
            if p is not None and g is not None:
                out.append((p == g, "numeric_equal" if p == g else "numeric_mismatch"))
            else:
                same = pred.strip().casefold() == gold.strip().casefold()
                out.append((same, "string_equal" if same else "string_mismatch"))
    return out


def verify_samples(samples: pa.Table, questions: pa.Table, recipe_hash: str, build_id: str) -> pa.Table:
    """One Verdict per sample, from the verifier its question names."""
    q = pl.from_arrow(questions).select("question_id", "gold_answer", "verifier")
    s = pl.from_arrow(samples).select("sample_id", "question_id", "text", "error")
    rows = s.join(q, on="question_id", how="left").to_dicts()
    extracted = [extract_answer(r["text"]) if r["error"] is None else (None, "generation_error") for r in rows]
    verdicts: list[Verdict] = []
    for name in sorted({r["verifier"] for r in rows}):
        version, fn = VERIFIERS[name]
        idx = [i for i, r in enumerate(rows) if r["verifier"] == name]
        results = fn([extracted[i][0] for i in idx], [rows[i]["gold_answer"] for i in idx])
        for i, (verdict, reason) in zip(idx, results):
            answer, method = extracted[i]
            verdicts.append(Verdict(
                sample_id=rows[i]["sample_id"], question_id=rows[i]["question_id"], extracted_answer=answer,
                extraction_method=method if answer is not None else None, verdict=verdict,
                reason=reason if answer is not None or verdict is None else method, verifier_name=name,
                verifier_version=version, recipe_hash=recipe_hash, build_id=build_id,
            ))
    return to_table(verdicts, Verdict)


@task(name="verify", cache_policy=NO_CACHE)
def verify_shard(store: ShardStore, samples: ShardRef, questions: ShardRef, recipe_hash: str, build_id: str,
                 metadata: dict[str, str]) -> ShardRef:
    versions = ",".join(f"{n}={v}" for n, (v, _) in sorted(VERIFIERS.items()))
    key = shard_key("verdicts", stable_id(versions), samples.key, questions.key)
    done = store.done("verdicts", key)
    if done is not None:
        return done
    table = verify_samples(store.read(samples), store.read(questions), recipe_hash, build_id)
    return store.write("verdicts", key, table, metadata)
