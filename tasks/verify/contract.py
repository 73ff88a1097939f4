"""The answer contract: what a valid final answer is, for every verifier. An allow-list, never a list of tricks.

1. **Region.** Only the text after the last closed reasoning block counts (`<think>`, `<thinking>`, `<reasoning>`,
   as the recipe configures); a reasoning block left open means no answer.
2. **Forms.** In the region the answer is stated in one of the recipe's accepted forms (`FORMS`): `\\boxed{X}`,
   `<answer>X</answer>`, "The (final) answer is X", "So X is the answer", `#### X`, "Answer: X" (also on the next
   line, and a "**Final Answer**" heading over a display), or a region that is nothing but X (`bare`; a number or
   an option letter only: any line would read as a text answer). A statement
   of the answer begins a sentence (optionally after "So", "Thus", "Therefore", ...): "I think the answer is X" or
   "If the answer is X" states nothing and breaks the contract.
3. **Once.** Every statement in the region states the same answer (restating it in another accepted form, as in
   Minerva's "Final Answer: The final answer is X", is one statement); any other candidate is a conflict.
4. **Last.** Nothing follows the final statement but closing punctuation or markup (and Minerva's "I hope it is
   correct.").
5. **Whole.** The stated expression is the whole answer: a math expression (with at most a unit named in the question
   or a common unit after it), one option letter, or one line of text. Words inside or after it that change its
   value or offer another (number words, "or", "to", "about", relations where the gold has none) break it.

An answer that addresses the grader (the judge's protocol words, notes to a grader) breaks the contract anywhere in
the text. Every break is a named reason; `read_answer` is the one function every verifier extracts with. Rule 5 and
the grader check are in answer_whole.py (`shape_breaks`, `text_alternative`, `grader_address` re-exported here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cotforge.tasks.verify.answer_whole import (
    answer_tags,
    grader_address,
    question_units,
    read_payload,
    shape_breaks,
    text_alternative,
    unit_tail,
)
from cotforge.tasks.verify.math_answer import box_groups, boxes, normalize_math
from cotforge.tasks.verify.math_expression import math_prefix

FORMS = ("boxed", "answer_tag", "answer_is", "is_the_answer", "hashes", "answer_line", "bare")
REASONING_TAGS = ("think", "thinking", "reasoning")


@dataclass(frozen=True)
class Extraction:
    """What the contract found: `answer` normalised, `raw` as written, `method` the accepted form it was stated in
    (or, when the contract broke, the reason)."""

    answer: str | None
    raw: str | None
    method: str


@dataclass(frozen=True)
class _Statement:
    form: str
    start: int
    end: int  # where the stated expression (and its unit) ends
    payload: str  # the stated answer as written
    broken: str | None = None  # why this statement states no whole answer


_LEAD_PREFIX = r"(?:(?:so|thus|hence|therefore|finally|overall|altogether|then|in\s+(?:total|conclusion|summary|all))" \
               r"\s*,?\s+)?"
# "the (final) answer is", "our answer would be"; the prefix before it is checked separately (sentence start)
_ANSWER_IS = re.compile(r"\b(?:the|my|our)\s+(?:final\s+|correct\s+)?answer\s+(?:is|would\s+be|will\s+be)\b(?!')\s*:?",
                        re.I)
_IS_THE_ANSWER = re.compile(r"(?<!\s)\s++(?:is|would\s+be)\s+(?:the|my|our)\s+(?:final\s+|correct\s+)?answer\b", re.I)
_HASHES = re.compile(r"^[ \t]*####[ \t]*", re.M)
_ANSWER_LINE = re.compile(r"^[ \t>#*_-]*(?:final\s+)?answer[ \t]*(?:\*\*|__)?[ \t]*:[ \t]*(?:\*\*|__)?|"
                          r"^[ \t>#*_-]*final\s+answer[ \t*_:]*$", re.I | re.M)
_CLAUSE_START = re.compile(r"(?:^|[.!?:;]\s+|[。！？]\s*|\n|,\s*)\s*(?:[>#*_-]+\s*)*(?:\*\*)?\s*" + _LEAD_PREFIX
                           + r"(?:\*\*)?\s*\Z", re.I)
# What may follow the final statement: closing markup, one full stop, and Minerva's sign-off ("..." trails off).
_MARKUP = r"(?:\s|[*_$)\]}\"'`]|\\\]|\\\)|\\end\{\w+\*?\}|</answer>)*"
_CLOSING = re.compile(rf"{_MARKUP}(?:[.!]{_MARKUP})?(?:(?<=[$)\]}}*_\"'`])[.!]{_MARKUP})?"
                      rf"(?:I\s+hope\s+it\s+is\s+correct\.?{_MARKUP})?\Z", re.I)  # "$18.$." closes; "18..." does not
_OPENERS = re.compile(r"(?:\s|\*\*|__|\$\$|\$|\\\[|\\\(|\\begin\{(?:align|equation|gather)\*?\})*")
# Where a statement's expression may end: closing markup, then a sentence end or the end of the line.
_STATEMENT_CLOSE = re.compile(r"(?:\*\*|[*_$\"'`)]|\\\]|\\\))*[ \t]*[.!]?(?:\*\*|[*_\"'`])*(?=\s|\Z)")
MAX_STATEMENTS = 20
_STATES_ANSWER = re.compile(r"####|\banswer\s*(?:is\b|:)|\\(?:boxed|fbox)\s*\{|<answer>", re.I)
# Every reason `read_answer` names when a text breaks the contract (the verifiers add their own comparisons).
CONTRACT_REASONS = frozenset({
    "empty_output", "unclosed_reasoning", "addresses_grader", "too_many_statements", "answer_only_in_reasoning",
    "no_answer_found", "qualified_statement", "conflicting_answers", "statement_continues", "text_after_answer",
    "no_expression", "words_after_expression", "number_word_in_answer", "words_in_answer", "no_option_letter",
    "not_one_option_letter", "empty_answer", "code_only_in_reasoning", "no_code_block", "conflicting_code_blocks",
    "alternative_in_answer", "relation_in_answer"})  # the last two: decided beside the gold, by the verifiers


def answer_region(text: str, reasoning_tags: tuple[str, ...] = REASONING_TAGS) -> tuple[str | None, str]:
    """(the final answer region, or None when a reasoning block is left open; the reasoning before it)."""
    if not reasoning_tags:
        return text, ""
    names = "|".join(re.escape(t) for t in reasoning_tags)
    tags = list(re.finditer(rf"<(/?)(?:{names})(?:\s[^<>]*)?>", text, re.I))
    closes = [t for t in tags if t.group(1)]
    last_close = closes[-1].end() if closes else 0
    if any(not t.group(1) and t.start() >= last_close for t in tags):
        return None, text
    return text[last_close:], text[:last_close]


def _containers(region: str) -> list[tuple[str, int, int, str]]:
    found = [("boxed", s, e, inner) for s, e, inner in box_groups(region)]
    found += [("answer_tag", s, e, inner) for s, e, inner in answer_tags(region)]
    return sorted(found, key=lambda c: c[1])


def _line_payload(region: str, start: int) -> tuple[int, int]:
    """Where the answer a lead-in announces lies: the rest of its line, or the next non-empty line (or display)
    when its line holds nothing more."""
    line_end = region.find("\n", start, start + MAX_PAYLOAD_CHARS)
    line_end = min(len(region), start + MAX_PAYLOAD_CHARS) if line_end < 0 else line_end
    if region[start:line_end].strip(" \t*_:"):
        return start, line_end
    nxt = start + len(region[start:start + MAX_PAYLOAD_CHARS]) - len(region[start:start + MAX_PAYLOAD_CHARS].lstrip(
        " \t\n*_:"))
    for opener, closer in (("\\[", "\\]"), ("$$", "$$"), ("\\begin{", "\\end{")):
        if region.startswith(opener, nxt):
            close = region.find(closer, nxt + len(opener), nxt + MAX_PAYLOAD_CHARS)
            if close >= 0:
                close = region.find("\n", close, nxt + MAX_PAYLOAD_CHARS)
                return nxt, min(len(region), nxt + MAX_PAYLOAD_CHARS) if close < 0 else close
    end = region.find("\n", nxt, nxt + MAX_PAYLOAD_CHARS)
    return nxt, min(len(region), nxt + MAX_PAYLOAD_CHARS) if end < 0 else end


MAX_PAYLOAD_CHARS = 2000  # a statement's answer is read from at most this much text after its lead-in


def _statements(region: str, answer_type: str, forms: frozenset[str],
                allowed: frozenset[str]) -> list[_Statement] | None:
    """Every statement of an answer in the region, in text order (a lead-in and the box or tag it announces are one
    statement; "Final Answer: The final answer is X" is one). None: more than any answer needs."""
    leads: list[tuple[str, int, int]] = []
    for m in _ANSWER_IS.finditer(region):
        leads.append(("answer_is", m.start(), m.end()))
    for m in _HASHES.finditer(region):
        leads.append(("hashes", m.start(), m.end()))
    for m in _ANSWER_LINE.finditer(region):
        leads.append(("answer_line", m.start(), m.end()))
    leads.sort(key=lambda lead: lead[1])
    containers = _containers(region)
    if len(leads) + len(containers) > 3 * MAX_STATEMENTS:
        return None
    claimed: set[int] = set()
    out: list[_Statement] = []
    k = 0
    while k < len(leads):
        form, start, lead_end = leads[k]
        # A lead-in announcing another lead-in is one statement ("Final Answer: The final answer is $X$").
        while k + 1 < len(leads) and not region[lead_end:leads[k + 1][1]].strip(" \t*_:"):
            k += 1
            lead_end = leads[k][2]
        k += 1
        prefix = ("" if start <= 200 else "\x00") + region[max(0, start - 200):start]
        if form == "answer_is" and not _CLAUSE_START.search(prefix):
            out.append(_Statement(form, start, lead_end, "", "qualified_statement"))
            continue
        p_start, p_end = _line_payload(region, lead_end)
        opened = _OPENERS.match(region, p_start).end()
        container = next((c for c in containers if c[1] == opened), None)
        if container is not None:
            claimed.add(container[1])
            out.append(_container_statement(region, form, start, container, answer_type, allowed))
            continue
        answer, end, why = read_payload(region[p_start:p_end], answer_type, allowed, whole=False)
        if why is not None and "\n" in region[lead_end:p_start]:
            continue  # a "**Final Answer**" heading over a sentence: the sentence's own box or statement decides
        out.append(_Statement(form, start, p_start + end, answer or "", why))
    for container in containers:
        if container[1] in claimed or any(s.start <= container[1] < s.end for s in out):
            continue
        out.append(_container_statement(region, container[0], container[1], container, answer_type, allowed))
    for m in _IS_THE_ANSWER.finditer(region):
        if any(s.start <= m.start() < s.end for s in out):
            continue
        sentence = max(region.rfind("\n", 0, m.start()), *(region.rfind(p, 0, m.start()) for p in (". ", "! ")))
        head = region[sentence + 1:m.start()]
        lead = re.match(r"\s*(?:[>#*_-]+\s*)*" + _LEAD_PREFIX, head, re.I)
        body = head[lead.end():]
        answer, end, why = read_payload(body, answer_type, allowed, whole=True)
        if why is not None or (answer_type == "number" and not _clean_expression(body)):
            continue  # "confirming that 80 is the answer" states no answer: the other statements decide
        start = sentence + 1 + lead.end()
        out = [s for s in out if not start <= s.start < m.start()]  # "So \\boxed{18} is the answer": one statement
        if answer_type == "number" and why is None:
            answer = _boxed_spelling(body, answer)
        out.append(_Statement("is_the_answer", start, m.end(), answer or "", why))
    return [s for s in sorted(out, key=lambda s: (s.end, s.start)) if s.form in forms or s.broken]


def _clean_expression(text: str) -> bool:
    """The whole of `text` is one math expression (markup around it aside)."""
    end, has_math = math_prefix(text.strip())
    return has_math and end == len(text.strip())


def _boxed_spelling(payload: str, answer: str | None) -> str | None:
    """A math answer read out of a box keeps its box: `normalize_math` then reads it as LaTeX ("1,2" is a list)."""
    box = boxes(payload.strip().strip("$").strip())
    return f"\\boxed{{{answer}}}" if answer is not None and len(box) == 1 and box[0][2] == answer else answer


def _container_statement(region: str, form: str, start: int, container: tuple[str, int, int, str], answer_type: str,
                         allowed: frozenset[str]) -> _Statement:
    """A statement whose answer is a box or tag; after it a math answer may name its unit ("\\boxed{189} cm")."""
    kind, box_start, end, inner = container
    answer, _, why = read_payload(inner, answer_type, allowed, whole=True)
    if answer_type == "number" and why is None:
        answer = f"\\boxed{{{answer}}}" if kind == "boxed" else _boxed_spelling(inner, answer)
        closed = end + re.match(r"(?:\$|\\\)|\\\])*", region[end:]).end()
        units = unit_tail(region[closed:], allowed)
        end = closed + units if units > 0 else end
    return _Statement(form, start, end, answer or "", why)


def read_answer(text: str, answer_type: str = "number", forms: tuple[str, ...] = FORMS,
                reasoning_tags: tuple[str, ...] = REASONING_TAGS, question: str = "") -> tuple[str | None, str]:
    """The contract's final answer of a text: (answer as written, accepted form) or (None, the named reason).
    `answer_type`: number | choice | text; `question` names the units an answer may carry."""
    if not text or not text.strip():
        return None, "empty_output"
    region, reasoning = answer_region(text, tuple(reasoning_tags))
    if region is None:
        return None, "unclosed_reasoning"
    if grader_address(text):
        return None, "addresses_grader"
    allowed = question_units(question)
    statements = _statements(region, answer_type, frozenset(forms), allowed)
    if statements is None or len(statements) > MAX_STATEMENTS:
        return None, "too_many_statements"
    if not statements:
        whole = region.strip()
        if "bare" in forms and answer_type != "text" and whole and "\n" not in whole:  # any line reads as text
            answer, end, why = read_payload(whole, answer_type, allowed, whole=False)
            if why is None and answer and _CLOSING.match(whole, end):
                return answer, "bare"
        if reasoning and _STATES_ANSWER.search(reasoning):
            return None, "answer_only_in_reasoning"
        return None, "no_answer_found"
    final = statements[-1]  # the one that ends last
    if final.broken:
        return None, final.broken
    for s in statements[:-1]:
        if s.broken:
            return None, s.broken
        if not _STATEMENT_CLOSE.match(region, s.end) and not any(o.start >= s.end and o.start - s.end < 4 and
                                                                  not region[s.end:o.start].strip(" $*")
                                                                  for o in statements):
            return None, "statement_continues"
    spelled = {_canonical(s.payload, answer_type) for s in statements}
    if len(spelled) > 1:
        return None, "conflicting_answers"
    if not _CLOSING.match(region, final.end):
        return None, "text_after_answer"
    return final.payload.strip(), final.form


def _canonical(answer: str, answer_type: str) -> str:
    if answer_type == "number":
        return normalize_math(answer)
    return re.sub(r"\s+", " ", answer).strip().casefold()


__all__ = ["CONTRACT_REASONS", "Extraction", "FORMS", "REASONING_TAGS", "answer_region", "answer_tags",
           "grader_address", "read_answer", "shape_breaks", "text_alternative"]
