"""Final-answer extraction. A failure is a result with a reason, never an exception.

Math answers (answer type `number`) follow `math_extract`: boxes, answer tags, answer statements, hedges, conflicts,
the last-number fallback, and one normalisation (`math_answer`) for the vote and the verifier. Other answer types: an
option letter (multiple choice), the last fenced code block, or for text the last box, answer tag, "the answer is"
line, or last line.
"""

from __future__ import annotations

import re
import unicodedata

from cotforge.tasks.verify.math_answer import as_rational, balanced_group, box_groups, normalize_math
from cotforge.tasks.verify.math_extract import (
    FALLBACK_METHODS,
    FINAL_ANSWER_LINE,
    Extraction,
    answer_tags,
    extract_math,
    final_answer_markers,
    math_gold,
)

__all__ = ["FALLBACK_METHODS", "FINAL_ANSWER_LINE", "Extraction", "as_rational", "balanced_group", "extract_answer",
           "extract_answers", "extract_choice", "extract_code", "extract_math", "final_answer_markers", "math_gold",
           "normalize_answer", "normalize_text_answer"]

_ANSWER_IS = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*\$?\s*([^\n]+)", re.I)
_LETTER = re.compile(r"^\(?\s*([A-J])\s*\)?(?:[.:)\s]|$)")
_CHOICE_STATED = re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*:?\s*\(?\s*([A-J])\s*\)?(?![A-Za-z])", re.I)
_CHOICE_LAST = re.compile(r"\(([A-J])\)")
_FENCE = re.compile(r"```[ \t]*(python|py|python3)?[^\n]*\n(.*?)```", re.S | re.I)
_TEXT_WRAPPER = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\{([^{}]*)\}")


def _boxed_contents(text: str) -> str | None:
    groups = box_groups(text)
    return groups[-1][2] if groups else None


def _clean(answer: str) -> str:
    answer = answer.strip().rstrip(".").strip()
    answer = answer.strip("$ ").replace("\\$", "")
    return answer


def normalize_answer(answer: str, answer_type: str = "number") -> str:
    """The canonical form two equal answers share: math answers by `normalize_math`, letters upper case, text
    folded."""
    if answer_type == "code":
        return answer.strip("\n")
    if answer_type == "number":
        return normalize_math(answer)
    text = _TEXT_WRAPPER.sub(r"\1", answer).strip()
    if answer_type == "choice":
        m = _LETTER.match(text.strip().upper())
        return m.group(1) if m else normalize_text_answer(text)
    return normalize_text_answer(text)


def normalize_text_answer(text: str) -> str:
    """Case-, width- and whitespace-insensitive text without surrounding punctuation or quotes."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(" .,;:!?\"'`")


def extract_code(text: str) -> str | None:
    """The last fenced code block, preferring one tagged python."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return None
    tagged = [body for lang, body in blocks if lang]
    return (tagged or [body for _, body in blocks])[-1]


def extract_choice(text: str) -> tuple[str | None, str]:
    """An option letter A-J from a boxed answer, an answer tag, "the answer is (B)", or the last "(B)"."""
    tag = _last([inner for _, _, inner in answer_tags(text)])
    for candidate, method in ((_boxed_contents(text), "boxed"), (tag, "answer_tag")):
        if candidate:
            m = _LETTER.match(_clean(_TEXT_WRAPPER.sub(r"\1", candidate)))
            if m:
                return m.group(1).upper(), method
    stated = _CHOICE_STATED.findall(text)
    if stated:
        return stated[-1].upper(), "option_letter"
    lone = [line.strip() for line in text.splitlines() if re.fullmatch(r"\(?[A-J]\)?\.?", line.strip())]
    if lone:
        return lone[-1].strip("().").upper(), "option_letter"
    bracketed = _CHOICE_LAST.findall(text)
    if bracketed:
        return bracketed[-1], "option_letter"
    return None, "no_option_letter"


def _last(items: list[str]) -> str | None:
    return items[-1] if items and items[-1].strip() else None


def _extract_text(text: str) -> tuple[str | None, str]:
    boxed = _boxed_contents(text)
    if boxed is not None and boxed.strip():
        return _clean(boxed), "boxed"
    tag = _last([inner for _, _, inner in answer_tags(text)])
    if tag:
        return _clean(tag), "answer_tag"
    stated = _ANSWER_IS.findall(text)
    if stated:
        return _clean(stated[-1]), "answer_is"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (_clean(lines[-1]), "last_line") if lines else (None, "no_answer_found")


def extract_answer(text: str, answer_type: str = "number") -> tuple[str | None, str]:
    """(answer as written, method) where method says which convention matched, or (None, why nothing did)."""
    if not text or not text.strip():
        return None, "empty_output"
    if answer_type == "code":
        code = extract_code(text)
        return (code, "code_block") if code is not None else (None, "no_code_block")
    if answer_type == "choice":
        return extract_choice(text)
    if answer_type == "number":
        found = extract_math(text)
        return (found.raw if found.answer is not None else None), found.method
    return _extract_text(text)


def extract_answers(texts: list[str | None], answer_types: list[str]) -> list[Extraction]:
    """Batched extraction: one Extraction per text (None text: the generation failed)."""
    out = []
    for text, answer_type in zip(texts, answer_types):
        if text is None:
            out.append(Extraction(None, None, "generation_error"))
        elif answer_type == "number" and text.strip():
            out.append(extract_math(text))
        else:
            raw, method = extract_answer(text, answer_type)
            answer = normalize_answer(raw, answer_type) if raw is not None else None
            out.append(Extraction(answer if answer else None, raw, method if answer else
                                  (method if raw is None else "empty_answer")))
    return out
