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
the text. Every break is a named reason; `read_answer` is the one function every verifier extracts with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
_TAG = re.compile(r"<(/?)answer>", re.I)
_CLAUSE_START = re.compile(r"(?:^|[.!?:;]\s+|[。！？]\s*|\n|,\s*)\s*(?:[>#*_-]+\s*)*(?:\*\*)?\s*" + _LEAD_PREFIX
                           + r"(?:\*\*)?\s*\Z", re.I)
# What may follow the final statement: closing markup, one full stop, and Minerva's sign-off ("..." trails off).
_MARKUP = r"(?:\s|[*_$)\]}\"'`]|\\\]|\\\)|\\end\{\w+\*?\}|</answer>)*"
_CLOSING = re.compile(rf"{_MARKUP}(?:[.!]{_MARKUP})?(?:(?<=[$)\]}}*_\"'`])[.!]{_MARKUP})?"
                      rf"(?:I\s+hope\s+it\s+is\s+correct\.?{_MARKUP})?\Z", re.I)  # "$18.$." closes; "18..." does not
# Words between "the answer is" and its value that leave the value as it is.
_FILLER = re.compile(r"(?:[\s*_:]|\b(?:therefore|thus|hence|clearly|simply|exactly|indeed)\b,?)*", re.I)
_OPENERS = re.compile(r"(?:\s|\*\*|__|\$\$|\$|\\\[|\\\(|\\begin\{(?:align|equation|gather)\*?\})*")
# Where a statement's expression may end: closing markup, then a sentence end or the end of the line.
_STATEMENT_CLOSE = re.compile(r"(?:\*\*|[*_$\"'`)]|\\\]|\\\))*[ \t]*[.!]?(?:\*\*|[*_\"'`])*(?=\s|\Z)")
_TEXT_WRAPPER = re.compile(r"\\(?:text|mathrm|textbf|mathbf|mbox|textnormal|operatorname)\s*\{([^{}]*)\}")
_CHOICE = re.compile(r"[ \t]*(?:\*\*|__|\$|\\(?:text|textbf|mathrm|mathbf)\{)*[ \t]*\(?([A-J])\)?(?:\}|\$|\*\*|__)*")
_WORD = re.compile(r"[A-Za-z]+")
# Number and quantity words change a value ("3 thousand", "2 dozen", "half"): a closed class of English.
_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred hundreds "
    "thousand thousands million millions billion billions trillion trillions dozen dozens score half halves quarter "
    "quarters third thirds double twice triple thrice times k m bn mn mil grand squared cubed".split())
# Words that join, qualify or negate (a closed class of English): never a unit, even where the question uses them.
_FUNCTION_WORDS = frozenset(
    "a an the and or nor but not no to from than then about around approximately roughly nearly almost maybe perhaps "
    "probably possibly also too more less least most over under only just each per with without plus minus either "
    "neither because since which that this these those what when where how many much her his their she they you are "
    "was were has have had does did will would could should might may can for off out all any some few if unless "
    "until through between except instead actually wait sorry oops sure think guess".split())
# Units any answer may carry without the question naming them.
_COMMON_UNITS = frozenset(
    "dollar dollars cent cents euro euros pound pounds yen rupees usd eur gbp percent percentage pct degree degrees "
    "second seconds minute minutes hour hours day days week weeks month months year years sec min hr hrs "
    "meter meters metre metres cm mm km inch inches foot feet ft yard yards mile miles gram grams g kg mg ounce "
    "ounces oz lb lbs liter liters litre litres ml gallon gallons cup cups unit units square cubic sq".split())
# Words of the judge's protocol and notes to a grader: text addressed to whoever grades, not an answer.
_GRADER = re.compile(
    r"^[ \t*#>]*(?:score|verdict)[ \t*]*[:=]|\breference\s+answer\b|"
    r"^[ \t*#>]*(?:(?:note|message)\s+)?(?:to\s+(?:the\s+)?)?(?:grader|judge|evaluator|reviewer|assessor|checker)s?"
    r"[ \t*]*[:,]|\b(?:dear|attention|note\s+(?:to|for)|message\s+(?:to|for)|hey|hi|hello)[ ,]+(?:the\s+|any\s+)?"
    r"(?:grader|judge|evaluator|reviewer|assessor|checker|ai|model|assistant|grading\s+\w+)s?\b|"
    r"\bthe\s+(?:grader|judge|evaluator|reviewer|assessor|checker)\s+(?:should|must|will|can|is\s+to|has\s+to)\b|"
    r"\bignore\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above|earlier|other)\s+instructions?\b|"
    r"\b(?:mark|grade|score|rate|judge|evaluate|count)\s+(?:this|it|me|my\s+answer|this\s+answer|the\s+answer)\s+"
    r"(?:as\s+)?(?:correct|right|10|full)\b|\b(?:respond|reply|answer|output|say|write|print|return)\s+(?:with\s+)?"
    r"(?:only\s+)?(?:the\s+word\s+)?[\"'`]?(?:correct|incorrect|yes|true)\b", re.I | re.M)
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


def answer_tags(text: str) -> list[tuple[int, int, str]]:
    """Every `<answer>...</answer>`: (start, end, contents), each closing tag with the last opening one before it."""
    out, opened = [], None
    for tag in _TAG.finditer(text):
        if not tag.group(1):
            opened = tag
        elif opened is not None:
            out.append((opened.start(), tag.end(), text[opened.end():tag.start()].strip()))
            opened = None
    return out


def _containers(region: str) -> list[tuple[str, int, int, str]]:
    found = [("boxed", s, e, inner) for s, e, inner in box_groups(region)]
    found += [("answer_tag", s, e, inner) for s, e, inner in answer_tags(region)]
    return sorted(found, key=lambda c: c[1])


def _unwrap(payload: str) -> str:
    """The answer without the markup around it: math delimiters, bold, one box or answer tag."""
    text = payload.strip()
    for _ in range(4):
        before = text
        text = re.sub(r"^(?:\*\*|__)(.*)(?:\*\*|__)$", r"\1", text, flags=re.S).strip()
        text = re.sub(r"^(?:\$\$|\\\[)(.*)(?:\$\$|\\\])$", r"\1", text, flags=re.S).strip()
        text = re.sub(r"^(?:\$|\\\()(.*)(?:\$|\\\))$", r"\1", text, flags=re.S).strip()
        box = boxes(text)
        if len(box) == 1 and box[0][0] == 0 and box[0][1] == len(text):
            text = box[0][2]
        tag = answer_tags(text)
        if len(tag) == 1 and tag[0][0] == 0 and tag[0][1] == len(text):
            text = tag[0][2]
        if text == before:
            break
    return text


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


_UNIT_WORD = re.compile(r"[ \t]++([A-Za-z]+)\b\.?(?=[\s,.!*)$]|\Z)")
_IN_TOTAL = re.compile(r"[ \t]++(?:in\s+total|in\s+all|altogether|overall)\b", re.I)  # leaves the value as it is
MAX_PAYLOAD_CHARS = 2000  # a statement's answer is read from at most this much text after its lead-in


def _unit_tail(text: str, allowed: frozenset[str]) -> int:
    """Length of the unit words after an expression ("apples", "square feet"): at most three, each a common unit or
    a word of the question, none a number word; 0 when the words are anything else."""
    end = 0
    for _ in range(3):
        word = _UNIT_WORD.match(text, end)
        if word is None or _IN_TOTAL.match(text, end):
            break
        lower = word.group(1).lower()
        if lower in _NUMBER_WORDS:
            return -1
        if lower not in _COMMON_UNITS and lower not in allowed:
            return -2
        end = word.end() - (1 if word.group(0).endswith(".") else 0)
    total = _IN_TOTAL.match(text, end)
    return total.end() if total else end


def _math_payload(payload: str, allowed: frozenset[str]) -> tuple[str | None, int, str | None]:
    """(expression, where it ends in `payload`, why it is no whole answer). An equation's value is its right-hand
    side, as math-verify reads it ("15 * 8 = 120 pints" states 120)."""
    lead = _FILLER.match(payload).end()
    body = payload[lead:]
    end, has_math = math_prefix(body)
    if not end or not has_math:
        return None, 0, "no_expression"
    sentence = re.search(r"[.!?](?=\s|\Z)|\n", body)
    equals = body.rfind("=", end, sentence.start() if sentence else len(body))
    if equals >= 0 and "$" not in body[:equals]:
        rhs = equals + 1 + len(body[equals + 1:]) - len(body[equals + 1:].lstrip(" "))
        rhs_end, rhs_math = math_prefix(body[rhs:])
        if rhs_end and rhs_math:
            lead, body, end = lead + rhs, body[rhs:], rhs_end
    expression = body[:end].strip()
    why = _words_break(expression)
    if why:
        return None, 0, why
    units = _unit_tail(body[end:], allowed)
    if units < 0:
        return None, 0, "number_word_in_answer" if units == -1 else "words_after_expression"
    return expression, lead + end + units, None


def _words_break(expression: str) -> str | None:
    """Why the words inside a stated expression (`\\text{...}`) make it no whole answer."""
    plain = re.sub(r"\\[A-Za-z]+", " ", _TEXT_WRAPPER.sub(r" \1 ", expression))
    words = {w.lower() for w in _WORD.findall(plain) if len(w) > 1}
    if words & _NUMBER_WORDS:
        return "number_word_in_answer"
    if words & _FUNCTION_WORDS - {"and", "or"}:  # "and"/"or" join values: `shape_breaks` compares them with the gold
        return "words_in_answer"
    return None


_RELATION = re.compile(r"[<>≤≥≠≈∼]|\\(?:le|ge|leq|geq|lt|gt|neq|ne|approx|sim|simeq|propto|leqslant|geqslant)"
                       r"(?![A-Za-z])")


def shape_breaks(expression: str) -> str | None:
    """Alternatives or relations a stated math expression holds ("18 or 19", "\\pm 3", "\\le 3", "a = b = c"): the
    math verifier refuses them where the gold holds none."""
    plain = _TEXT_WRAPPER.sub(r" \1 ", expression)
    if re.search(r"\b(?:or|and/or)\b|\\pm\b|\\mp\b|±|∓", plain):
        return "alternative_in_answer"
    if _RELATION.search(plain) or plain.count("=") > 1:
        return "relation_in_answer"
    return None


def _choice_payload(payload: str, whole: bool) -> tuple[str | None, int, str | None]:
    """One option letter, in parentheses, bold or math at most."""
    m = _CHOICE.match(payload)
    if m is None or payload[m.end():m.end() + 1].isalnum():
        return None, 0, "no_option_letter"
    if whole and payload[m.end():].strip(" .\t\n"):
        return None, 0, "not_one_option_letter"
    return m.group(1), m.end(), None


def _text_payload(payload: str) -> tuple[str | None, int, str | None]:
    """One line of text, up to its first sentence end."""
    line = payload.split("\n", 1)[0]
    stop = re.search(r"[.!?](?=\s|\Z)", line)
    end = stop.start() if stop else len(line.rstrip())
    text = _unwrap(line[:end]).strip().strip("*_\"'`").strip()
    return (text, end, None) if text else (None, 0, "empty_answer")


def _read_payload(payload: str, answer_type: str, allowed: frozenset[str], whole: bool) -> tuple[str | None, int,
                                                                                                    str | None]:
    """(answer as written, end in `payload`, why broken). `whole`: the payload is a container's contents, all of
    which must be the answer."""
    if answer_type == "choice":
        got = _choice_payload(payload, whole)
    elif answer_type == "number" and whole:
        inner = _unwrap(payload)  # delimited: all of it is the answer, math-verify reads it
        got = (inner, len(payload), _words_break(inner))
    elif answer_type == "number":
        got = _math_payload(payload, allowed)
    else:
        got = (_unwrap(payload), len(payload), None) if whole else _text_payload(payload)
    answer, end, why = got
    if why is None and whole:
        end = len(payload)
    if why is None and not (answer or "").strip():
        return None, 0, "empty_answer"
    return answer, end, why


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
        answer, end, why = _read_payload(region[p_start:p_end], answer_type, allowed, whole=False)
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
        answer, end, why = _read_payload(body, answer_type, allowed, whole=True)
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
    answer, _, why = _read_payload(inner, answer_type, allowed, whole=True)
    if answer_type == "number" and why is None:
        answer = f"\\boxed{{{answer}}}" if kind == "boxed" else _boxed_spelling(inner, answer)
        closed = end + re.match(r"(?:\$|\\\)|\\\])*", region[end:]).end()
        units = _unit_tail(region[closed:], allowed)
        end = closed + units if units > 0 else end
    return _Statement(form, start, end, answer or "", why)


_ALTERNATIVE_WORDS = re.compile(r"\b(?:or|and/or)\b", re.I)


def text_alternative(answer: str, gold: str | None) -> bool:
    """A text answer that offers alternatives ("Paris or Lyon") where the gold offers none."""
    return bool(_ALTERNATIVE_WORDS.search(answer)) and not _ALTERNATIVE_WORDS.search(gold or "")


def grader_address(text: str) -> bool:
    """Whether a text speaks to whoever grades it (the judge's protocol words, notes to a grader)."""
    return _GRADER.search(text) is not None


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
    allowed = frozenset(w.lower() for w in _WORD.findall(question) if len(w) > 2) - _NUMBER_WORDS - _FUNCTION_WORDS
    statements = _statements(region, answer_type, frozenset(forms), allowed)
    if statements is None or len(statements) > MAX_STATEMENTS:
        return None, "too_many_statements"
    if not statements:
        whole = region.strip()
        if "bare" in forms and answer_type != "text" and whole and "\n" not in whole:  # any line reads as text
            answer, end, why = _read_payload(whole, answer_type, allowed, whole=False)
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
