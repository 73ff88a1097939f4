"""The rule verifiers: batched functions registered by name, `(items, context) -> [(verdict, reason)]` with verdict
True / False / None (could not decide), and the structure checks (`format`, `language`, `length`) run on every row.
Checks that can hang or crash (math-verify, regexes, candidate programs) run in the `VerifierPool`."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from cotforge.schemas.config_verify import VerifyConfig
from cotforge.tasks.verify.contract import shape_breaks, text_alternative
from cotforge.tasks.verify.extract import math_gold, normalize_answer, normalize_text_answer
from cotforge.tasks.verify.judge import JUDGE_VERSION
from cotforge.tasks.verify.math_answer import is_integer, screen_math_answer
from cotforge.tasks.verify.pool import VerifierPool

# (verdict, reason), or (verdict, reason, details) where a verifier has more to say (the code verifier's test counts)
Result = tuple[bool | None, str] | tuple[bool | None, str, dict]


@dataclass(frozen=True)
class VerifyItem:
    """What a verifier sees of one sample."""

    answer: str | None  # the contract's final answer, normalised
    method: str  # the accepted form it was stated in, or why the contract broke
    gold: str | None
    text: str
    tests: str | None
    finish_reason: str
    verifier: str = ""  # the question's verifier
    metadata_json: str = "{}"  # the question's metadata (a reasoning-gym entry for its scorer)


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


_SEVERAL = re.compile(r",|\\\{|\bor\b|\\pm")  # a gold of several values: alternatives are math-verify's to compare


@register_verifier("math", "4")
def verify_math(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """Mathematical equivalence (math-verify) in the worker pool, of the contract's final answer, after screens that
    need no parsing: alternatives or relations the gold does not hold are false, an answer with non-ASCII digits,
    LaTeX that hides or overlays, or a size sympy cannot handle is not judged (None), two integers compare as
    strings, and each distinct (answer, gold) pair goes to the pool once."""
    options = ctx.config.math
    out: list[Result | None] = []
    todo: list[tuple[int, tuple]] = []
    golds: dict[str, str] = {}
    for item in items:
        if item.gold is None or item.answer is None:
            out.append(_undecidable(item))
            continue
        if item.gold not in golds:
            golds[item.gold] = math_gold(item.gold)  # the answer's own normalisation
        gold = golds[item.gold]
        refused = screen_math_answer(item.answer)
        shape = shape_breaks(item.answer)
        if refused:
            out.append((None, refused))
        elif shape and not shape_breaks(gold) and not (shape == "alternative_in_answer" and _SEVERAL.search(gold)):
            out.append((False, shape))  # "18 or 19", "\\le 18" for a gold that is one value
        elif is_integer(item.answer) and is_integer(gold):
            out.append((True, "math_equivalent") if item.answer == gold else (False, "math_mismatch"))
        else:
            out.append(None)
            todo.append((len(out) - 1, (item.answer, gold, options.precision, options.strict,
                                        options.allow_set_relation_comp)))
    # Samples of one question often give the same answer: each distinct check runs once (check_math is pure).
    distinct = list(dict.fromkeys(args for _, args in todo))
    results = dict(zip(distinct, ctx.pool.run([("cotforge.tasks.verify.pool:check_math", args) for args in distinct],
                                              ctx.config.timeout_s)))
    for i, args in todo:
        out[i] = results[args]
    return out  # type: ignore[return-value]


def _undecidable(item: VerifyItem) -> Result:
    if item.gold is None:
        return None, "no_gold_answer"
    return (None, "generation_error") if item.method == "generation_error" else (False, item.method)


@register_verifier("regex", "2")
def verify_regex(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """The answer fully matches the gold pattern (an answer offering alternatives the pattern's own text does not
    name is refused first); in the pool because patterns can backtrack for ever."""
    alternatives = [item.answer is not None and item.gold is not None and text_alternative(item.answer, item.gold)
                    for item in items]
    todo = [item for item, alternative in zip(items, alternatives) if not alternative]
    results = iter(_pooled(todo, ctx, "cotforge.tasks.verify.pool:check_regex", lambda i: (i.answer, i.gold),
                           ctx.config.timeout_s))
    return [(False, "alternative_in_answer") if alternative else next(results) for alternative in alternatives]


@register_verifier("exact", "2")
def verify_exact(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """Normalised string equality (case, width, whitespace, surrounding punctuation)."""
    def decide(item: VerifyItem) -> Result:
        same = normalize_text_answer(item.answer) == normalize_text_answer(item.gold)
        return same, "exact_match" if same else "exact_mismatch"
    return _local(items, decide)


@register_verifier("choice", "2")
def verify_choice(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """The option letter equals the gold letter."""
    def decide(item: VerifyItem) -> Result:
        same = item.answer == normalize_answer(item.gold, "choice")
        return same, "choice_match" if same else "choice_mismatch"
    return _local(items, decide)


@register_verifier("code", "3")  # 3: the contract picks the block; assert tests in their own process, behind a proxy
def verify_code(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """The candidate program (the contract's final code block defining the asked function) against the question's
    tests in the sandbox: the expected values stay here, the sandbox returns what the program computed
    (tasks/verify/program_tests.py)."""
    from cotforge.tasks.verify.program_tests import plan_tests

    limits = ctx.config.sandbox
    patched = [VerifyItem(i.answer, i.method, i.tests, i.text, i.tests, i.finish_reason, i.verifier, i.metadata_json)
               for i in items]

    def runs(tests: str) -> int:
        try:
            return max(1, plan_tests(tests).runs)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return 1

    out: list[Result | None] = [None] * len(items)
    for runs_per_item in sorted({runs(i.tests) for i in patched if i.tests is not None} | {1}):
        idx = [k for k, i in enumerate(patched) if (runs(i.tests) if i.tests is not None else 1) == runs_per_item]
        # The sandbox kills each run at wall_s; the pool's deadline is the backstop.
        results = _pooled([patched[k] for k in idx], ctx, "cotforge.tasks.verify.program_tests:check_program",
                          lambda i: (i.answer, i.tests, limits.model_dump_json()),
                          runs_per_item * (limits.wall_s + 2.0) + 15.0)
        for k, result in zip(idx, results):
            out[k] = (None, "no_tests") if tuple(result) == (None, "no_gold_answer") else result
    return out  # type: ignore[return-value]


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
    """The judge needs a generator, so the cascade runs it (see `verify_samples`); alone it cannot decide. A text that
    breaks the answer contract is false here: no judge ever sees it."""
    return [(False, item.method) if item.answer is None and item.method != "generation_error" else
            (None, "judge_not_configured") for item in items]


_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_ANSWER_TAG = re.compile(r"<answer>.*?</answer>", re.S | re.I)


@register_verifier("format", "3")
def check_format(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """Required tags present and a final answer the contract accepts (its reason otherwise); a code answer needs its
    code block. An abstain question's answer is the decline itself: not checked here."""
    require = ctx.config.format.require
    out: list[Result] = []
    for item in items:
        text = item.text
        if item.method == "generation_error":
            out.append((None, "generation_error"))
        elif require == "think_answer_tags" and not _THINK.search(text):
            out.append((False, "missing_think_tag"))
        elif require in ("answer_tag", "think_answer_tags") and not _ANSWER_TAG.search(text):
            out.append((False, "missing_answer_tag"))
        elif item.verifier == "abstain":
            out.append((None, "abstain_question"))
        elif item.answer is None:
            out.append((False, item.method))
        else:
            out.append((True, "code_block" if item.method == "code_block" else "one_final_answer"))
    return out


def letter_scripts(text: str) -> Counter:
    """Letters per Unicode script, counted per word; one-letter Greek words (pi, theta) are notation, not language."""
    counts: Counter = Counter()
    for word in re.findall(r"[^\W\d_]+", text):
        if word.isascii():  # ASCII letters are all LATIN (the common case: no per-character name lookup)
            counts["latin"] += len(word)
            continue
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
