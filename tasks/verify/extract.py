"""Final-answer extraction by the answer contract (`contract.read_answer`): a failure is a named reason, never an
exception and never a guess (no last-number or last-line fallback).

Each answer type reads the contract's one final answer its own way: math answers (`number`) are normalised by
`math_answer.normalize_math` for the vote and the verifier, option letters upper case, text folded, and a code
answer is the final code block that defines the function the question's tests call.
"""

from __future__ import annotations

import ast
import builtins
import re
import unicodedata

from cotforge.tasks.verify.contract import (
    FORMS,
    REASONING_TAGS,
    Extraction,
    answer_region,
    grader_address,
    read_answer,
)
from cotforge.tasks.verify.math_answer import as_rational, normalize_math

__all__ = ["Extraction", "FINAL_ANSWER_LINE", "as_rational", "extract_answer", "extract_answers", "extract_code",
           "math_gold", "normalize_answer", "normalize_text_answer", "select_program"]

# A line that states a final answer in an accepted form (the views split reasoning from the final part with it).
FINAL_ANSWER_LINE = re.compile(r"\b(?:the|my|our)\s+(?:final\s+|correct\s+)?answer\s+(?:is|would\s+be|will\s+be)\b|"
                               r"\bis\s+(?:the|my|our)\s+(?:final\s+)?answer\b|^[ \t]*####|"
                               r"^[ \t>#*_-]*(?:final\s+)?answer\b[ \t*_]*:|\\(?:boxed|fbox)\s*\{|<answer>",
                               re.I | re.M)
_LETTER = re.compile(r"^\(?\s*([A-J])\s*\)?(?:[.:)\s]|$)")
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.S)
_TEXT_WRAPPER = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\{([^{}]*)\}")
_CONTRACT_TYPE = {"number": "number", "choice": "choice"}  # every other answer type is one line of text


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


def _defined_names(code: str) -> set[str] | None:
    """Top-level functions, classes and assigned names a block defines (None: it does not parse)."""
    try:
        module = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    names = set()
    for node in module.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _asked_names(tests: str | None) -> set[str]:
    """The names the question's tests use but do not bind themselves: the asked function (`assert f(3) == 9`,
    HumanEval's `check(f)`), never a builtin."""
    if not tests:
        return set()
    try:
        module = ast.parse(tests)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return set()
    used, bound = set(), set()
    for node in ast.walk(module):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return used - bound - set(dir(builtins))


def _python_blocks(text: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py", "python3")]


def select_program(text: str, tests: str | None = None,
                   reasoning_tags: tuple[str, ...] = REASONING_TAGS) -> tuple[str | None, str]:
    """(the program to test, "code_block") or (None, reason): the final code block of the answer region that defines
    the function the tests call (blocks after it, such as a usage example, are not the answer); every other block
    defining it must be the same program. Without tests naming a function: the region's only distinct block."""
    region, reasoning = answer_region(text, reasoning_tags)
    if region is None:
        return None, "unclosed_reasoning"
    if grader_address(text):
        return None, "addresses_grader"
    blocks = _python_blocks(region)
    asked = _asked_names(tests)
    if asked:
        defining = [b for b in blocks if (_defined_names(b) or set()) & asked]
    else:
        defining = blocks
    if not defining:
        if any((_defined_names(b) or set()) & asked or not asked for b in _python_blocks(reasoning)):
            return None, "code_only_in_reasoning"
        return None, "no_code_block"
    if len({b.strip() for b in defining}) > 1:
        return None, "conflicting_code_blocks"
    return defining[-1], "code_block"


def extract_code(text: str, tests: str | None = None) -> str | None:
    """The program `select_program` picks, or None."""
    return select_program(text, tests)[0]


def extract_answer(text: str, answer_type: str = "number", forms: tuple[str, ...] = FORMS,
                   reasoning_tags: tuple[str, ...] = REASONING_TAGS, question: str = "",
                   tests: str | None = None) -> tuple[str | None, str]:
    """(answer as written, accepted form) or (None, the contract's reason)."""
    if not text or not text.strip():
        return None, "empty_output"
    if answer_type == "code":
        return select_program(text, tests, reasoning_tags)
    return read_answer(text, _CONTRACT_TYPE.get(answer_type, "text"), forms, reasoning_tags, question)


def extract_answers(texts: list[str | None], answer_types: list[str], questions: list[str] | None = None,
                    tests: list[str | None] | None = None, forms: tuple[str, ...] = FORMS,
                    reasoning_tags: tuple[str, ...] = REASONING_TAGS) -> list[Extraction]:
    """Batched extraction: one Extraction per text (None text: the generation failed)."""
    out = []
    for i, (text, answer_type) in enumerate(zip(texts, answer_types)):
        if text is None:
            out.append(Extraction(None, None, "generation_error"))
            continue
        raw, method = extract_answer(text, answer_type, forms, reasoning_tags, questions[i] if questions else "",
                                     tests[i] if tests else None)
        answer = normalize_answer(raw, answer_type) if raw is not None else None
        out.append(Extraction(answer or None, raw, method if raw is None or answer else "empty_answer"))
    return out


def math_gold(gold: str) -> str:
    """A gold answer normalised as predictions are; a gold that is a worked solution gives its stated final answer
    (a gold is trusted: its whole text when it states none by the contract)."""
    raw, _ = read_answer(gold, "number", reasoning_tags=()) if gold.strip() else (None, "")
    return normalize_math(raw) if raw else normalize_math(gold)
