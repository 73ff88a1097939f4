"""The contract's "whole" rule (rule 5 of tasks/verify/contract.py): reading a stated answer as the whole answer.

What follows a lead-in, or fills a box or `<answer>` tag, is read here (`read_payload`): a math expression with at
most a unit after it (a common unit, or a word of the question), one option letter, or one line of text. Number
words, words that join or qualify, alternatives ("18 or 19", "\\pm 3") and relations where the gold has none break
it; text addressed to the grader breaks the contract anywhere (`grader_address`). Moved out of contract.py, which
finds the region and the statements and reads each with these rules, to keep both modules short; this module
imports nothing of the contract, so imports only point down.
"""

from __future__ import annotations

import re

from cotforge.tasks.verify.math_answer import boxes
from cotforge.tasks.verify.math_expression import math_prefix

# Words between "the answer is" and its value that leave the value as it is.
_FILLER = re.compile(r"(?:[\s*_:]|\b(?:therefore|thus|hence|clearly|simply|exactly|indeed)\b,?)*", re.I)
_TEXT_WRAPPER = re.compile(r"\\(?:text|mathrm|textbf|mathbf|mbox|textnormal|operatorname)\s*\{([^{}]*)\}")
_TAG = re.compile(r"<(/?)answer>", re.I)
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
_UNIT_WORD = re.compile(r"[ \t]++([A-Za-z]+)\b\.?(?=[\s,.!*)$]|\Z)")
_IN_TOTAL = re.compile(r"[ \t]++(?:in\s+total|in\s+all|altogether|overall)\b", re.I)  # leaves the value as it is


def question_units(question: str) -> frozenset[str]:
    """The words of a question an answer may carry as its unit (no number word, no function word)."""
    return frozenset(w.lower() for w in _WORD.findall(question) if len(w) > 2) - _NUMBER_WORDS - _FUNCTION_WORDS


def unit_tail(text: str, allowed: frozenset[str]) -> int:
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


def math_payload(payload: str, allowed: frozenset[str]) -> tuple[str | None, int, str | None]:
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
    why = words_break(expression)
    if why:
        return None, 0, why
    units = unit_tail(body[end:], allowed)
    if units < 0:
        return None, 0, "number_word_in_answer" if units == -1 else "words_after_expression"
    return expression, lead + end + units, None


def words_break(expression: str) -> str | None:
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


_ALTERNATIVE_WORDS = re.compile(r"\b(?:or|and/or)\b", re.I)


def text_alternative(answer: str, gold: str | None) -> bool:
    """A text answer that offers alternatives ("Paris or Lyon") where the gold offers none."""
    return bool(_ALTERNATIVE_WORDS.search(answer)) and not _ALTERNATIVE_WORDS.search(gold or "")


def grader_address(text: str) -> bool:
    """Whether a text speaks to whoever grades it (the judge's protocol words, notes to a grader)."""
    return _GRADER.search(text) is not None


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


def unwrap(payload: str) -> str:
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


def choice_payload(payload: str, whole: bool) -> tuple[str | None, int, str | None]:
    """One option letter, in parentheses, bold or math at most."""
    m = _CHOICE.match(payload)
    if m is None or payload[m.end():m.end() + 1].isalnum():
        return None, 0, "no_option_letter"
    if whole and payload[m.end():].strip(" .\t\n"):
        return None, 0, "not_one_option_letter"
    return m.group(1), m.end(), None


def text_payload(payload: str) -> tuple[str | None, int, str | None]:
    """One line of text, up to its first sentence end."""
    line = payload.split("\n", 1)[0]
    stop = re.search(r"[.!?](?=\s|\Z)", line)
    end = stop.start() if stop else len(line.rstrip())
    text = unwrap(line[:end]).strip().strip("*_\"'`").strip()
    return (text, end, None) if text else (None, 0, "empty_answer")


def read_payload(payload: str, answer_type: str, allowed: frozenset[str],
                 whole: bool) -> tuple[str | None, int, str | None]:
    """(answer as written, end in `payload`, why broken). `whole`: the payload is a container's contents, all of
    which must be the answer."""
    if answer_type == "choice":
        got = choice_payload(payload, whole)
    elif answer_type == "number" and whole:
        inner = unwrap(payload)  # delimited: all of it is the answer, math-verify reads it
        got = (inner, len(payload), words_break(inner))
    elif answer_type == "number":
        got = math_payload(payload, allowed)
    else:
        got = (unwrap(payload), len(payload), None) if whole else text_payload(payload)
    answer, end, why = got
    if why is None and whole:
        end = len(payload)
    if why is None and not (answer or "").strip():
        return None, 0, "empty_answer"
    return answer, end, why


__all__ = ["answer_tags", "choice_payload", "grader_address", "math_payload", "question_units", "read_payload",
           "shape_breaks", "text_alternative", "text_payload", "unit_tail", "unwrap", "words_break"]
