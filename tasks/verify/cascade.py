"""Verification stage: extract each sample's final answer, run the verifier cascade, keep every judgement.

Verifiers are batched functions registered by name: `(items, context) -> [(verdict, reason)]`, verdict True / False /
None (could not decide). The cascade per sample:

1. extraction by the answer contract (tasks/verify/contract.py: one answer, stated last, in an accepted form, after
   the reasoning, the whole expression), read by the question's answer type; a broken contract is a named reason;
2. the question's verifier (`math`, `exact`, `choice`, `regex`, `code`, `abstain`, `judge`); checks that can hang
   or crash (math-verify, regexes, candidate programs) run in the `VerifierPool` with a hard timeout per item;
3. structure checks on every row: `format`, `language`, `length`. Each one's `enforce` says what a failure does:
   `always` vetoes a correct verdict; `training_views` (the default for format and length) keeps the verdict but
   marks the row not `trainable`, so a sample cut off at the token limit or without its final answer line never
   becomes a training example (sft, preference chosen, prm, rlvr pseudo-labels); `never` only records it. The
   format check fails wherever the contract broke, so such a sample is never trainable;
4. the LLM judge where the rule verdict is None (or on every row when the recipe says `everywhere`).

One Verdict row per sample: the final verdict and who decided it, plus `checks`, every verifier's judgement.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_verify import VerifyConfig
from cotforge.schemas.records import Check, Verdict, stable_id
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardRef, shard_key
from cotforge.tasks.generate.base import Generator
from cotforge.tasks.verify import gym_check  # noqa: F401  (registers the `reasoning_gym` verifier)
from cotforge.tasks.verify.contract import CONTRACT_REASONS
from cotforge.tasks.verify.extract import extract_answers
from cotforge.tasks.verify.judge import JUDGE_VERSION, judge_samples
from cotforge.tasks.verify.pool import VerifierPool
from cotforge.tasks.verify.rules import STRUCTURE_CHECKS, VERIFIERS, Result, VerifyContext, VerifyItem, letter_scripts

_NO_QUESTION = "none"


def _answer_type(verifier: str, answer_type: str) -> str:
    return {"code": "code", "choice": "choice", "exact": "text", "regex": "text", "reasoning_gym": "text",
            "judge": "text"}.get(verifier, answer_type)


def _check(name: str, result: Result) -> Check:
    return Check(name=name, version=VERIFIERS[name][0], verdict=result[0], reason=result[1])


def _untrainable(checks: list[Check], error: bool, config: VerifyConfig, broken: str | None) -> str | None:
    """Why a sample may not be a training example (None: it may). `broken`: why the answer contract broke (never
    trainable, whatever the gates say)."""
    if error:
        return "generation_error"
    by_name = {c.name: c for c in checks}
    for gate in ("length", "format", "language"):
        if getattr(config, gate).enforce != "never" and by_name[gate].verdict is False:
            return f"{gate}:{by_name[gate].reason}"
    return f"contract:{broken}" if broken else None


def _final(checks: list[Check], primary: str, config: VerifyConfig) -> Check:
    """The cascade's decision from the checks of one row (see the module docstring)."""
    by_name = {c.name: c for c in checks}
    final = by_name[primary]
    judge = by_name.get("judge")
    if final.verdict is None and judge is not None and judge.verdict is not None:
        final = judge
    elif judge is not None and judge.verdict is False and final.verdict is True and config.judge \
            and config.judge.everywhere:
        final = Check(name="judge", version=judge.version, verdict=False, reason="judge_rejected:" + judge.reason)
    if final.verdict is True:
        for gate in STRUCTURE_CHECKS:
            if getattr(config, gate).enforce == "always" and by_name[gate].verdict is False:
                return Check(name=gate, version=by_name[gate].version, verdict=False,
                             reason=f"{gate}:{by_name[gate].reason}")
    return final


def verify_samples(samples: pa.Table, questions: pa.Table, recipe_hash: str, build_id: str,
                   config: VerifyConfig = VerifyConfig(), pool: VerifierPool | None = None,
                   judge: Generator | None = None, seed: int = 0) -> pa.Table:
    """One Verdict per sample: the cascade's final verdict and every check that ran.

    `pool` runs the hang-prone checks (one is started for this call when None); `judge` is the LLM judge's backend
    (used only when `config.judge` is set)."""
    if pool is None:
        with VerifierPool(config.workers) as own_pool:
            return verify_samples(samples, questions, recipe_hash, build_id, config, own_pool, judge, seed)
    q = pl.from_arrow(questions)
    q = q.select("question_id", pl.col("text").alias("question"), "gold_answer", "verifier", "answer_type", "tests",
                 pl.col("metadata_json") if "metadata_json" in q.columns else pl.lit("{}").alias("metadata_json"))
    s = pl.from_arrow(samples).select("sample_id", "question_id", "text", "error", "finish_reason")
    rows = s.join(q, on="question_id", how="left").to_dicts()
    for r in rows:
        r["verifier"] = r["verifier"] or _NO_QUESTION  # a sample whose question is missing still gets its row
    ctx = VerifyContext(config, pool)
    contract = config.contract
    extractions = extract_answers([r["text"] if r["error"] is None else None for r in rows],
                                  [_answer_type(r["verifier"], r["answer_type"] or "number") for r in rows],
                                  [r["question"] or "" for r in rows], [r["tests"] for r in rows],
                                  tuple(contract.forms), tuple(contract.reasoning_tags))
    items = [VerifyItem(e.answer, e.method, r["gold_answer"], r["text"] or "", r["tests"], r["finish_reason"] or "",
                        r["verifier"], r["metadata_json"] or "{}") for r, e in zip(rows, extractions)]
    checks: list[list[Check]] = [[] for _ in rows]
    details: list[dict] = [{} for _ in rows]  # what the question's verifier adds (the code verifier's test counts)

    for name in sorted({r["verifier"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["verifier"] == name]
        if name not in VERIFIERS:
            for i in idx:
                reason = "question_missing" if name == _NO_QUESTION else f"unknown_verifier:{name}"
                checks[i].append(Check(name=name, version="?", verdict=None, reason=reason))
            continue
        for i, result in zip(idx, VERIFIERS[name][1]([items[i] for i in idx], ctx)):
            checks[i].append(_check(name, result))
            details[i] = dict(result[2]) if len(result) > 2 else {}
    for name in STRUCTURE_CHECKS:
        for i, result in enumerate(VERIFIERS[name][1](items, ctx)):
            checks[i].append(_check(name, result))

    judged: dict[int, object] = {}
    if config.judge is not None and judge is not None:
        # A text that breaks the answer contract (one addressing the grader included) never reaches a judge.
        wanted = [i for i, r in enumerate(rows) if rows[i]["error"] is None and
                  (extractions[i].answer is not None or r["verifier"] == "abstain") and
                  (config.judge.everywhere or checks[i][0].verdict is None)]
        judgements = judge_samples(judge, [{"sample_id": rows[i]["sample_id"], "question": rows[i]["question"] or "",
                                            "text": rows[i]["text"], "gold_answer": rows[i]["gold_answer"],
                                            "answer": extractions[i].raw,
                                            # the rationale only without a reference, or beside a rule verdict
                                            # the judge can then only take away
                                            "show_rationale": rows[i]["gold_answer"] is None or (
                                                config.judge.everywhere and checks[i][0].verdict is not None)}
                                           for i in wanted], config.judge, seed)
        for i, j in zip(wanted, judgements):
            judged[i] = j
            check = Check(name="judge", version=JUDGE_VERSION, verdict=j.verdict, reason=j.reason)
            if rows[i]["verifier"] == "judge":
                checks[i][0] = check  # the question asked for the judge: its verdict replaces the placeholder
            else:
                checks[i].append(check)

    verdicts = []
    for i, (r, e, item) in enumerate(zip(rows, extractions, items)):
        final = _final(checks[i], checks[i][0].name, config)
        judgement = judged.get(i)
        text = item.text
        broken = e.method if e.answer is None and r["verifier"] != "abstain" else \
            checks[i][0].reason if checks[i][0].reason in CONTRACT_REASONS else None
        untrainable = _untrainable(checks[i], r["error"] is not None, config, broken)
        verdicts.append(Verdict(
            sample_id=r["sample_id"], question_id=r["question_id"], extracted_answer=e.answer,
            extraction_method=e.method if e.answer is not None else None, verdict=final.verdict, reason=final.reason,
            verifier_name=final.name, verifier_version=final.version, checks=checks[i], raw_answer=e.raw,
            judge_score=getattr(judgement, "score", None), judge_rationale=getattr(judgement, "rationale", None),
            n_chars=len(text), n_words=len(text.split()), n_steps=sum(1 for line in text.splitlines() if line.strip()),
            scripts=",".join(s for s, _ in letter_scripts(text).most_common()),
            tests_passed=details[i].get("tests_passed"), tests_total=details[i].get("tests_total"),
            test_mode=details[i].get("test_mode"), trainable=untrainable is None, untrainable_reason=untrainable,
            recipe_hash=recipe_hash, build_id=build_id,
        ))
    return to_table(verdicts, Verdict)


def verifier_versions(config: VerifyConfig) -> str:
    """What the verdicts depend on besides their inputs: every verifier's version and the verify config."""
    versions = ",".join(f"{n}={v}" for n, (v, _) in sorted(VERIFIERS.items()))
    # The number of workers changes how fast, never what: it stays out of the key.
    return stable_id(versions, config.model_dump_json(exclude={"workers"}))


@task(name="verify", cache_policy=NO_CACHE)
def verify_shard(ctx: BuildContext, samples: ShardRef, questions: ShardRef, config: VerifyConfig = VerifyConfig(),
                 pool: VerifierPool | None = None, judge: Generator | None = None) -> ShardRef:
    """Verify one shard of samples (skipped when a shard with the same inputs, verifiers and config exists)."""
    key = shard_key("verdicts", verifier_versions(config), samples.key, questions.key)
    done = ctx.store.done("verdicts", key)
    if done is not None:
        return done
    table = verify_samples(ctx.store.read(samples), ctx.store.read(questions), ctx.recipe_hash, ctx.build_id, config,
                           pool, judge)
    return ctx.store.write("verdicts", key, table, ctx.metadata)
