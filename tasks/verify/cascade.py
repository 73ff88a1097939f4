"""Verification stage: extract each sample's final answer, run the verifier cascade, keep every judgement.

Verifiers are batched functions registered by name: `(items, context) -> [(verdict, reason)]`, verdict True / False /
None (could not decide). The cascade per sample:

1. extraction (by the question's answer type); a failure is a reason, not an exception;
2. the question's verifier (`math`, `exact`, `choice`, `regex`, `code`, `abstain`, `judge`); checks that can hang
   or crash (math-verify, regexes, candidate programs) run in the `VerifierPool` with a hard timeout per item;
3. structure checks on every row: `format`, `language`, `length` (they veto a correct verdict only when the recipe
   says `enforce`);
4. the LLM judge where the rule verdict is None (or on every row when the recipe says `everywhere`).

One Verdict row per sample: the final verdict and who decided it, plus `checks`, every verifier's judgement.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import polars as pl
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_verify import VerifyConfig
from cotforge.schemas.records import Check, Verdict, stable_id
from cotforge.tasks.verify.extract import extract_answers, final_answer_markers, normalize_answer, normalize_text_answer
from cotforge.tasks.generate.base import Generator
from cotforge.tasks.verify.judge import JUDGE_VERSION, judge_samples
from cotforge.tasks.core.shards import ShardRef, ShardStore, shard_key
from cotforge.tasks.verify.pool import VerifierPool

Result = tuple[bool | None, str]


@dataclass(frozen=True)
class VerifyItem:
    """What a verifier sees of one sample."""

    answer: str | None  # normalised extracted answer
    method: str  # extraction method, or why extraction failed
    gold: str | None
    text: str
    tests: str | None
    finish_reason: str


@dataclass
class VerifyContext:
    config: VerifyConfig
    pool: VerifierPool


VerifierFn = Callable[[list[VerifyItem], VerifyContext], list[Result]]
VERIFIERS: dict[str, tuple[str, VerifierFn]] = {}  # name -> (version, function)
STRUCTURE_CHECKS = ("format", "language", "length")


def register_verifier(name: str, version: str):
    """Register a batched verifier under `name`; questions name it in `Question.verifier`."""
    def wrap(fn: VerifierFn) -> VerifierFn:
        VERIFIERS[name] = (version, fn)
        return fn
    return wrap


def _pooled(items: list[VerifyItem], ctx: VerifyContext, function: str, args: Callable[[VerifyItem], tuple],
            timeout_s: float) -> list[Result]:
    """Decide extraction failures and missing golds here; send the rest to the pool."""
    out: list[Result | None] = []
    todo = []
    for i, item in enumerate(items):
        if item.gold is None:
            out.append((None, "no_gold_answer"))
        elif item.answer is None:
            out.append((None, "generation_error") if item.method == "generation_error" else (False, item.method))
        else:
            out.append(None)
            todo.append(i)
    results = ctx.pool.run([(function, args(items[i])) for i in todo], timeout_s)
    for i, result in zip(todo, results):
        out[i] = result
    return out  # type: ignore[return-value]


def _local(items: list[VerifyItem], decide: Callable[[VerifyItem], Result]) -> list[Result]:
    out = []
    for item in items:
        if item.gold is None:
            out.append((None, "no_gold_answer"))
        elif item.answer is None:
            out.append((None, "generation_error") if item.method == "generation_error" else (False, item.method))
        else:
            out.append(decide(item))
    return out


@register_verifier("math", "2")
def verify_math(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """Mathematical equivalence (math-verify, else exact rationals) in the worker pool."""
    return _pooled(items, ctx, "cotforge.tasks.verify.pool:check_math", lambda i: (i.answer, i.gold), ctx.config.timeout_s)


@register_verifier("regex", "1")
def verify_regex(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """The answer fully matches the gold pattern; in the pool because patterns can backtrack for ever."""
    return _pooled(items, ctx, "cotforge.tasks.verify.pool:check_regex", lambda i: (i.answer, i.gold), ctx.config.timeout_s)


@register_verifier("exact", "1")
def verify_exact(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """Normalised string equality (case, width, whitespace, surrounding punctuation)."""
    def decide(item: VerifyItem) -> Result:
        same = normalize_text_answer(item.answer) == normalize_text_answer(item.gold)
        return same, "exact_match" if same else "exact_mismatch"
    return _local(items, decide)


@register_verifier("choice", "1")
def verify_choice(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """The option letter equals the gold letter."""
    def decide(item: VerifyItem) -> Result:
        same = item.answer == normalize_answer(item.gold, "choice")
        return same, "choice_match" if same else "choice_mismatch"
    return _local(items, decide)


@register_verifier("code", "1")
def verify_code(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """The candidate program (last ```python block) passes the question's tests in the sandbox."""
    limits = ctx.config.sandbox.model_dump_json()
    patched = [VerifyItem(i.answer, i.method, i.tests, i.text, i.tests, i.finish_reason) for i in items]
    results = _pooled(patched, ctx, "cotforge.tasks.verify.sandbox:check_program", lambda i: (i.answer, i.tests, limits),
                      ctx.config.sandbox.wall_s + 15.0)  # the sandbox kills at wall_s; the pool is the backstop
    return [(None, "no_tests") if r == (None, "no_gold_answer") else r for r in results]


_DECLINE = re.compile(
    r"\b(?:abstain|i (?:do not|don't|cannot|can't) (?:know|answer|determine|say)|cannot be (?:determined|answered)|"
    r"not enough information|insufficient information|unanswerable|no (?:way|means) to (?:know|determine))\b", re.I)


@register_verifier("abstain", "1")
def verify_abstain(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """Questions whose right answer is to decline (gold "ABSTAIN"): true when the rationale declines."""
    out = []
    for item in items:
        if item.method == "generation_error":
            out.append((None, "generation_error"))
        elif (item.gold or "").strip().upper() != "ABSTAIN":
            out.append((None, "gold_not_abstain"))
        else:
            declined = bool(_DECLINE.search(item.text))
            out.append((declined, "declined" if declined else "answered_unanswerable"))
    return out


@register_verifier("judge", JUDGE_VERSION)
def verify_judge_placeholder(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """The judge needs a generator, so the cascade runs it (see `verify_samples`); alone it cannot decide."""
    return [(None, "judge_not_configured") for _ in items]


_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_ANSWER_TAG = re.compile(r"<answer>.*?</answer>", re.S | re.I)
_FENCE = re.compile(r"```")


@register_verifier("format", "1")
def check_format(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """Required tags present and exactly one final answer (several conflicting ones fail)."""
    require = ctx.config.format.require
    out = []
    for item in items:
        text = item.text
        if item.method == "generation_error":
            out.append((None, "generation_error"))
        elif require == "think_answer_tags" and not _THINK.search(text):
            out.append((False, "missing_think_tag"))
        elif require in ("answer_tag", "think_answer_tags") and not _ANSWER_TAG.search(text):
            out.append((False, "missing_answer_tag"))
        elif item.method in ("code_block", "no_code_block"):
            out.append((item.method == "code_block", "code_block" if item.method == "code_block" else
                        "no_code_block"))
        else:
            markers = set(final_answer_markers(text))
            out.append((True, "one_final_answer") if len(markers) == 1 else
                       (False, "no_final_answer_statement") if not markers else (False, "conflicting_final_answers"))
    return out


def letter_scripts(text: str) -> Counter:
    """Letters per Unicode script, counted per word; one-letter Greek words (pi, theta) are notation, not language."""
    counts: Counter = Counter()
    for word in re.findall(r"[^\W\d_]+", text):
        scripts = Counter(unicodedata.name(ch, "UNKNOWN").split(" ")[0].lower() for ch in word)
        script = scripts.most_common(1)[0][0]
        if script in ("mathematical", "unknown") or (script == "greek" and len(word) == 1):
            continue
        counts[script] += len(word)
    return counts


@register_verifier("language", "1")
def check_language(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """The recipe's language policy, by script: allowed (any), mixed_allowed (target dominates), target_only."""
    policy = ctx.config.language
    out = []
    for item in items:
        counts = letter_scripts(item.text)
        total = sum(counts.values())
        if item.method == "generation_error":
            out.append((None, "generation_error"))
        elif not total:
            out.append((None, "no_letters"))
        elif policy.policy == "allowed":
            out.append((True, "any_language_allowed"))
        elif policy.policy == "mixed_allowed":
            ok = counts[policy.target] / total >= policy.min_target_share
            out.append((ok, "target_dominant" if ok else "target_share_below_min"))
        else:
            others = [s for s in counts if s != policy.target]
            out.append((True, "target_only") if not others else (False, f"other_script:{others[0]}"))
    return out


@register_verifier("length", "1")
def check_length(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """Truncation (finish reason `length`), a word budget and a minimum number of steps."""
    limits = ctx.config.length
    out = []
    for item in items:
        steps = sum(1 for line in item.text.splitlines() if line.strip())
        if item.method == "generation_error":
            out.append((None, "generation_error"))
        elif item.finish_reason == "length":
            out.append((False, "truncated"))
        elif limits.max_words is not None and len(item.text.split()) > limits.max_words:
            out.append((False, "too_long"))
        elif steps < limits.min_steps:
            out.append((False, "too_few_steps"))
        else:
            out.append((True, "within_limits"))
    return out


_NO_QUESTION = "none"


def _answer_type(verifier: str, answer_type: str) -> str:
    return {"code": "code", "choice": "choice", "exact": "text", "regex": "text"}.get(verifier, answer_type)


def _check(name: str, result: Result) -> Check:
    return Check(name=name, version=VERIFIERS[name][0], verdict=result[0], reason=result[1])


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
            if getattr(config, gate).enforce and by_name[gate].verdict is False:
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
    q = pl.from_arrow(questions).select("question_id", pl.col("text").alias("question"), "gold_answer", "verifier",
                                        "answer_type", "tests")
    s = pl.from_arrow(samples).select("sample_id", "question_id", "text", "error", "finish_reason")
    rows = s.join(q, on="question_id", how="left").to_dicts()
    for r in rows:
        r["verifier"] = r["verifier"] or _NO_QUESTION  # a sample whose question is missing still gets its row
    ctx = VerifyContext(config, pool)
    extractions = extract_answers([r["text"] if r["error"] is None else None for r in rows],
                                  [_answer_type(r["verifier"], r["answer_type"] or "number") for r in rows])
    items = [VerifyItem(e.answer, e.method, r["gold_answer"], r["text"] or "", r["tests"], r["finish_reason"] or "")
             for r, e in zip(rows, extractions)]
    checks: list[list[Check]] = [[] for _ in rows]

    for name in sorted({r["verifier"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["verifier"] == name]
        if name not in VERIFIERS:
            for i in idx:
                reason = "question_missing" if name == _NO_QUESTION else f"unknown_verifier:{name}"
                checks[i].append(Check(name=name, version="?", verdict=None, reason=reason))
            continue
        for i, result in zip(idx, VERIFIERS[name][1]([items[i] for i in idx], ctx)):
            checks[i].append(_check(name, result))
    for name in STRUCTURE_CHECKS:
        for i, result in enumerate(VERIFIERS[name][1](items, ctx)):
            checks[i].append(_check(name, result))

    judged: dict[int, object] = {}
    if config.judge is not None and judge is not None:
        wanted = [i for i, r in enumerate(rows) if rows[i]["error"] is None and
                  (config.judge.everywhere or checks[i][0].verdict is None)]
        judgements = judge_samples(judge, [{"sample_id": rows[i]["sample_id"], "question": rows[i]["question"] or "",
                                            "text": rows[i]["text"], "gold_answer": rows[i]["gold_answer"]}
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
        verdicts.append(Verdict(
            sample_id=r["sample_id"], question_id=r["question_id"], extracted_answer=e.answer,
            extraction_method=e.method if e.answer is not None else None, verdict=final.verdict, reason=final.reason,
            verifier_name=final.name, verifier_version=final.version, checks=checks[i], raw_answer=e.raw,
            judge_score=getattr(judgement, "score", None), judge_rationale=getattr(judgement, "rationale", None),
            n_chars=len(text), n_words=len(text.split()), n_steps=sum(1 for line in text.splitlines() if line.strip()),
            scripts=",".join(s for s, _ in letter_scripts(text).most_common()), recipe_hash=recipe_hash,
            build_id=build_id,
        ))
    return to_table(verdicts, Verdict)


def verifier_versions(config: VerifyConfig) -> str:
    """What the verdicts depend on besides their inputs: every verifier's version and the verify config."""
    versions = ",".join(f"{n}={v}" for n, (v, _) in sorted(VERIFIERS.items()))
    # The number of workers changes how fast, never what: it stays out of the key.
    return stable_id(versions, config.model_dump_json(exclude={"workers"}))


@task(name="verify", cache_policy=NO_CACHE)
def verify_shard(store: ShardStore, samples: ShardRef, questions: ShardRef, recipe_hash: str, build_id: str,
                 metadata: dict[str, str], config: VerifyConfig = VerifyConfig(), pool: VerifierPool | None = None,
                 judge: Generator | None = None) -> ShardRef:
    """Verify one shard of samples (skipped when a shard with the same inputs, verifiers and config exists)."""
    key = shard_key("verdicts", verifier_versions(config), samples.key, questions.key)
    done = store.done("verdicts", key)
    if done is not None:
        return done
    table = verify_samples(store.read(samples), store.read(questions), recipe_hash, build_id, config, pool, judge)
    return store.write("verdicts", key, table, metadata)
