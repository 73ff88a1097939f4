"""Final-answer extraction and normalisation. A failure is a result with a reason, never an exception.

Conventions, strongest first: `\\boxed{...}`, `<answer>...</answer>`, "The (final) answer is ...", an option letter
(multiple choice), the last number. Code answers come from the last fenced block. The normalised answer is what the
vote counts and the verifiers compare, so "1,000", "1000.0" and "\\$1000" all become "1000".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

_BOXED = re.compile(r"\\(?:boxed|fbox)\{")
_ANSWER_TAG = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.S | re.I)
_ANSWER_IS = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*\$?\s*([^\n]+)", re.I)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_LETTER = re.compile(r"^\(?\s*([A-J])\s*\)?(?:[.:)\s]|$)")
_CHOICE_STATED = re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*:?\s*\(?\s*([A-J])\s*\)?(?![A-Za-z])", re.I)
_CHOICE_LAST = re.compile(r"\(([A-J])\)")
_FENCE = re.compile(r"```[ \t]*(python|py|python3)?[^\n]*\n(.*?)```", re.S | re.I)
_TEXT_WRAPPER = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\{([^{}]*)\}")


@dataclass(frozen=True)
class Extraction:
    """What was found: `answer` normalised, `raw` as written, and `method` (or, when nothing was found, why)."""

    answer: str | None
    raw: str | None
    method: str


def _boxed_contents(text: str) -> str | None:
    """Contents of the last \\boxed{...}, with nested braces balanced."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    return balanced_group(text, starts[-1])


def balanced_group(text: str, start: int) -> str | None:
    """Text from `start` up to the brace that closes an already opened one."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return None


def _clean(answer: str) -> str:
    answer = answer.strip().rstrip(".").strip()
    answer = answer.strip("$ ").replace("\\$", "")
    return answer


def as_rational(text: str) -> Fraction | None:
    """The exact rational a plain number or fraction denotes ("1,000", "-2.50", "3/4"), else None."""
    cleaned = text.replace(",", "").replace("\\!", "").strip().strip("$").strip()
    frac = re.fullmatch(r"\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}", cleaned)
    if frac:
        cleaned = f"{frac.group(1)}/{frac.group(2)}"
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def _canonical_number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def normalize_answer(answer: str, answer_type: str = "number") -> str:
    """The canonical form two equal answers share: numbers as exact rationals, letters upper case, text folded."""
    if answer_type == "code":
        return answer.strip("\n")
    text = _TEXT_WRAPPER.sub(r"\1", answer).strip()
    if answer_type == "choice":
        m = _LETTER.match(text.strip().upper())
        return m.group(1) if m else normalize_text_answer(text)
    if answer_type == "number":
        number = as_rational(text)
        if number is not None:
            return _canonical_number(number)
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
    for candidate, method in ((_boxed_contents(text), "boxed"), (_last(_ANSWER_TAG.findall(text)), "answer_tag")):
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


def extract_answer(text: str, answer_type: str = "number") -> tuple[str | None, str]:
    """(answer as written, method) where method says which convention matched, or (None, why nothing did)."""
    if not text or not text.strip():
        return None, "empty_output"
    if answer_type == "code":
        code = extract_code(text)
        return (code, "code_block") if code is not None else (None, "no_code_block")
    if answer_type == "choice":
        return extract_choice(text)
    boxed = _boxed_contents(text)
    if boxed is not None and boxed.strip():
        return _clean(boxed), "boxed"
    tag = _last(_ANSWER_TAG.findall(text))
    if tag:
        return _clean(tag), "answer_tag"
    stated = _ANSWER_IS.findall(text)
    if stated:
        value = _clean(stated[-1])
        number = _NUMBER.search(value) if answer_type == "number" else None
        # "The answer is 42 apples" -> 42; a non-numeric statement is kept whole for non-math verifiers.
        return (number.group(0) if number else value), "answer_is"
    if answer_type == "number":
        numbers = _NUMBER.findall(text)
        if numbers:
            return numbers[-1], "last_number"
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return _clean(lines[-1]), "last_line"
    return None, "no_answer_found"


def extract_answers(texts: list[str | None], answer_types: list[str]) -> list[Extraction]:
    """Batched extraction: one Extraction per text (None text: the generation failed)."""
    out = []
    for text, answer_type in zip(texts, answer_types):
        if text is None:
            out.append(Extraction(None, None, "generation_error"))
            continue
        raw, method = extract_answer(text, answer_type)
        answer = normalize_answer(raw, answer_type) if raw is not None else None
        out.append(Extraction(answer if answer else None, raw, method if answer else
                              (method if raw is None else "empty_answer")))
    return out


def final_answer_markers(text: str) -> list[str]:
    """Every explicit final-answer statement (boxed, answer tags, "the answer is"), normalised, in order."""
    found = []
    for start in (m.end() for m in _BOXED.finditer(text)):
        inner = balanced_group(text, start)
        if inner is not None:
            found.append(normalize_answer(_clean(inner)))
    found += [normalize_answer(_clean(t)) for t in _ANSWER_TAG.findall(text)]
    for stated in _ANSWER_IS.findall(text):
        number = _NUMBER.search(_clean(stated))
        found.append(normalize_answer(number.group(0) if number else _clean(stated)))
    return found
