"""Final-answer extraction from free-form rationales. A failure is a result with a reason, never an exception."""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\boxed\{")
_ANSWER_TAG = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.S | re.I)
_ANSWER_IS = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*\$?\s*([^\n]+)", re.I)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def _boxed_contents(text: str) -> str | None:
    """Contents of the last \\boxed{...}, with nested braces balanced."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    depth, start = 1, starts[-1]
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return None


def _clean(answer: str) -> str:
    answer = answer.strip().rstrip(".").strip()
    answer = answer.strip("$ ").replace("\\$", "")
    return answer


def extract_answer(text: str) -> tuple[str | None, str]:
    """(answer, method) where method says which convention matched, or (None, why nothing did)."""
    if not text or not text.strip():
        return None, "empty_output"
    boxed = _boxed_contents(text)
    if boxed is not None and boxed.strip():
        return _clean(boxed), "boxed"
    tags = _ANSWER_TAG.findall(text)
    if tags and tags[-1].strip():
        return _clean(tags[-1]), "answer_tag"
    stated = _ANSWER_IS.findall(text)
    if stated:
        value = _clean(stated[-1])
        number = _NUMBER.search(value)
        # "The answer is 42 apples" -> 42; a non-numeric statement is kept whole for non-math verifiers.
        return (number.group(0).replace(",", "") if number else value), "answer_is"
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1].replace(",", ""), "last_number"
    return None, "no_answer_found"
