"""The final math answer of a model's text: which statements count, hedges, conflicts, the last-number fallback.

Conventions: `\\boxed{...}` (adjacent boxes are one multi-part answer, grouped as math-verify groups them),
`<answer>...</answer>`, "The (final) answer is ..." / "Answer: ..." (the last of these a text states is its answer),
then a text that is nothing but an answer, and last the last number (`FALLBACK_METHODS`: a guess the math verifier
never accepts alone). Only the text after a `</think>` counts.

A final answer that hedges ("18, or maybe 19", "18... no wait, 20", "The answer is 18.\\nActually I think it's 20.")
is no answer (`hedged_answer`); the other final answers a text states, and values restated on their own lines after
it, go along (`others`) so the verifier can name a conflict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cotforge.tasks.verify.math_answer import box_groups, normalize_math
from cotforge.tasks.verify.math_expression import math_prefix, stated_expression, statement_end

FALLBACK_METHODS = frozenset({"last_number", "last_line"})

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "the answer is", "the final answer (to part b) is", "my answer:", or a line that starts with "Answer" / "Final
# answer". A bare "answer" mid-sentence is no statement ("2 points/answer = 48", "the problem's answer was 5").
_STATED = re.compile(r"\b(?:the|my|our|final)\s++(?:final\s++)?answers?\b(?:(?:\s++(?:to|for)\s[^.\n]{0,60}?)?\s*+"
                     r"(?:\*\*\s*+)?(?:is|are|would\s+be|should\s+be|will\s+be)\b|\s*+(?:\*\*\s*+)?(?:is\b|=|:))"
                     r"|^[ \t>*#_]*+(?:final\s++)?answers?\b(?:\s*+\*\*)?", re.I | re.M)
_TAG = re.compile(r"<(/?)answer>", re.I)
# A line that states a final answer in any of the conventions above (the views find the final line with it).
FINAL_ANSWER_LINE = re.compile(rf"{_STATED.pattern}|\\(?:boxed|fbox)\s*\{{|<answer>", re.I | re.M)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_HEDGE = re.compile(
    r"\b(?:maybe|perhaps|probably|possibly|presumably|unsure|uncertain|either|hmm+|oops|wait|actually|alternatively|"
    r"scratch\s+that|on\s+second\s+thought|i\s+mean|correction|or\s+so|give\s+or\s+take|not\s+(?:sure|certain|"
    r"confident)|(?:i|we)\s+(?:think|guess|believe|suppose)|(?:answer|it|result)\s+(?:could|might|may)\s+"
    r"(?:also\s+)?be|let\s+me\s+re-?(?:check|compute|calculate|consider|do|think|evaluate))\b|\bno\b\s*(?:[,.!;:]|wait\b|"
    r"actually\b|sorry\b)", re.I)
_PERCENT_AFTER = re.compile(r"\$?[ \t]*(?:\\?%|percent(?:age)?\b|pct\b)", re.I)
_RESTATED = re.compile(r"^(?:(?:so|thus|then|hence|therefore)\s*,?\s+)?(?:it'?s|it\s+is|that'?s|that\s+is|"
                       r"(?:i|we)\s+(?:get|got)|the\s+result\s+is)\s+", re.I)
_DOUBT = re.compile(r"\?|\.\.\.|…")  # after the answer: a question or a trailing-off is not a statement
_ALTERNATIVE = re.compile(r"[\s$*]*(?:[,;(]\s*)?(?:or|and/or)\b", re.I)  # right after it: "<answer>18</answer> or 19"


@dataclass(frozen=True)
class Extraction:
    """What was found: `answer` normalised, `raw` as written, `method` (or, when nothing was found, why), and the
    other final answers the text states (normalised, each different from `answer`)."""

    answer: str | None
    raw: str | None
    method: str
    others: tuple[str, ...] = ()


def answer_region(text: str) -> str:
    """The part of a text that may state its final answer: after the last `</think>`, before an unclosed `<think>`."""
    lower = text.lower()
    close = lower.rfind("</think>")
    if close >= 0:
        return text[close + len("</think>"):]
    start = lower.find("<think>")
    return text[:start] if start >= 0 else text


@dataclass(frozen=True)
class _Marker:
    kind: str  # "boxed" | "answer_tag" | "answer_is"
    start: int
    end: int  # where the answer expression ends
    raw: str
    latex: bool | None


def answer_tags(text: str) -> list[tuple[int, int, str]]:
    """Every `<answer>...</answer>`: (start, end, contents), each closing tag with the last opening one before it
    (one linear pass: unclosed tags cost nothing)."""
    out, opened = [], None
    for tag in _TAG.finditer(text):
        if not tag.group(1):
            opened = tag
        elif opened is not None:
            out.append((opened.start(), tag.end(), text[opened.end():tag.start()].strip()))
            opened = None
    return out


def _markers(region: str) -> list[_Marker]:
    """Every final-answer statement of a text, in order of kind (boxes, tags, statements), each in text order."""
    found = []
    for start, end, inner in box_groups(region):
        percent = _PERCENT_AFTER.match(region, end)  # "$\boxed{28}$ pct"
        if inner:
            found.append(_Marker("boxed", start, percent.end() if percent else end,
                                 inner + " \\%" if percent else inner, True))
    for start, end, inner in answer_tags(region):
        if inner and not _BOXED.search(inner):
            got = stated_expression(inner)
            found.append(_Marker("answer_tag", start, end, got[0] if got else inner, None))
    stated = list(_STATED.finditer(region))
    for k, m in enumerate(stated):
        # A statement runs to the end of its line, or to the next statement ("Final Answer: The final answer is 5":
        # the first one states nothing).
        x = region[m.end():statement_end(region, m.end(), stated[k + 1].start() if k + 1 < len(stated) else
                                         len(region))]
        got = stated_expression(x)
        if got and not _BOXED.search(x[:got[1]]):
            found.append(_Marker("answer_is", m.start(), m.end() + got[1], got[0], None))
    return found


def _sentence_start(text: str, position: int) -> int:
    """Start of the sentence holding `position` (looking back at most 300 characters)."""
    window_start = max(0, position - 300)
    cuts = [m.end() for m in re.finditer(r"[.!?]\s|\n", text[window_start:position])]
    return window_start + cuts[-1] if cuts else window_start


def _hedged(region: str, final: _Marker) -> bool:
    """The final answer's sentence or anything after it doubts, retracts or offers alternatives."""
    return bool(_HEDGE.search(region, _sentence_start(region, final.start)) or _DOUBT.search(region, final.end)
                or _ALTERNATIVE.match(region, final.end))


def hedged_at(region: str, start: int, end: int) -> bool:
    """Whether an answer stated at region[start:end] is hedged: its sentence or what follows doubts or retracts it,
    or an alternative follows it (the rule `extract_math` applies, for answers of any type)."""
    return _hedged(region, _Marker("answer", start, end, region[start:end], None))


def _restatements(region: str, after: int) -> list[str]:
    """Values the 20 lines after the final answer state on their own ("20", "It's 20.", "So we get $20$")."""
    found = []
    lines = region[after:].split("\n", 21)[1:21]  # [0] is the rest of the final answer's own line
    for line in lines:
        line = _RESTATED.sub("", line.strip().strip("*").rstrip(".").strip())
        end, has_math = math_prefix(line)
        if has_math and end == len(line) and re.search(r"\d", line):
            found.append(line)
    return found


def extract_math(text: str) -> Extraction:
    """The final math answer of a text (see the module docstring)."""
    region = answer_region(text)
    markers = _markers(region)
    if markers:
        final = max(markers, key=lambda m: m.end)  # the last one the text states
        answer = normalize_math(final.raw, final.latex)
        if _hedged(region, final):
            return Extraction(None, final.raw, "hedged_answer")
        written = dict.fromkeys((m.raw, m.latex) for m in markers if m is not final)  # each spelling once
        stated = [normalize_math(raw, latex) for raw, latex in written]
        stated += [normalize_math(line) for line in _restatements(region, final.end)]
        others = tuple(dict.fromkeys(a for a in stated if a and a != answer))
        return Extraction(answer or None, final.raw, final.kind if answer else "empty_answer", others)
    whole = region.strip().rstrip(".").strip()
    end, has_math = math_prefix(whole)
    if whole and has_math and end == len(whole):
        answer = normalize_math(whole)
        return Extraction(answer or None, whole, "bare_answer" if answer else "empty_answer")
    numbers = _NUMBER.findall(region)
    if numbers:
        return Extraction(normalize_math(numbers[-1], False), numbers[-1], "last_number")
    return Extraction(None, None, "no_answer_found")


def math_gold(gold: str) -> str:
    """A gold answer normalised as predictions are; a gold that is a worked solution gives its stated final answer
    (a gold is trusted: no hedge or fallback rules, its whole text when it states nothing)."""
    found = extract_math(gold) if gold.strip() else None
    if found is not None and found.answer is not None and found.method not in FALLBACK_METHODS:
        return found.answer
    return normalize_math(gold)


def final_answer_markers(text: str) -> list[str]:
    """Every explicit final-answer statement (boxed, answer tags, "the answer is"), normalised, in order."""
    return [normalize_math(m.raw, m.latex) for m in _markers(answer_region(text))]
