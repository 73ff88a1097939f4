"""The math equivalence check that runs in a `VerifierPool` worker: math-verify on normalised answers.

Both sides arrive normalised the same way (`math_answer.normalize_math`) and go to math-verify as LaTeX in math
delimiters, with its own extraction and comparison (sets, intervals, tuples, matrices, units, percentages, decimals
at its precision). Its signal-based timeouts are switched off: the pool's hard deadline bounds every item instead.
This module stays light: spawned workers import it.
"""

from __future__ import annotations

import logging

Result = tuple[bool | None, str]


def _parse(answer: str):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    targets = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return parse(f"${answer}$", targets, parsing_timeout=None)


def _several(parsed) -> bool:
    """math-verify read several answers ("18 or 19", "\\boxed{18}\\boxed{19}", "18, 19")."""
    from latex2sympy2_extended.sets import FiniteSet

    return bool(parsed) and isinstance(parsed[0], FiniteSet) and len(parsed[0]) > 1


def check_math(prediction: str, gold: str, precision: int = 6, strict: bool = True,
               allow_set_relation_comp: bool = False) -> Result:
    """Is `prediction` (the contract's one final answer) mathematically the `gold` answer?"""
    try:
        from math_verify import verify
    except ImportError:
        return None, "math_verify_missing"
    # It warns once per process that its own timeouts are off: they are, on purpose (the pool's deadline rules).
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def same(parsed) -> bool:
        return bool(verify(gold_parsed, parsed, float_rounding=precision, strict=strict,
                           allow_set_relation_comp=allow_set_relation_comp, timeout_seconds=None))

    gold_parsed = _parse(gold)
    if not gold_parsed:
        return None, "gold_unparseable"
    parsed = _parse(prediction)
    if not parsed:
        return None, "answer_unparseable"
    if not same(parsed):
        return False, "several_answers" if _several(parsed) and not _several(gold_parsed) else "math_mismatch"
    return True, "math_equivalent"
