"""Reading a math expression off the text that states it: "The answer is 4\\sqrt{2} cm." gives "4\\sqrt{2}".

An expression is numbers, operators, one-letter variables, LaTeX commands with their arguments, math spans
(`$...$`, `\\(...\\)`, `$$...$$`, `\\[...\\]`), "and"/"or" between two items, and percent words; it ends at the
first word of prose. A `$` that opens no span on its line is a currency sign. Every step is a linear scan, so texts
built to make a regex backtrack cost nothing here.
"""

from __future__ import annotations

import re

from cotforge.tasks.verify.math_answer import balanced_group

# Words between "the answer is" and its value; the hedging ones are skipped too, for the hedge check to name them.
_FILLER = re.compile(r"(?:[\s:*—]|\\?\"|\b(?:therefore|thus|hence|so|then|just|simply|exactly|clearly|indeed|now|still|"
                     r"a\s+total\s+of|equal\s+to|equals|given\s+by|approximately|about|around|roughly|probably|maybe|"
                     r"perhaps|possibly|likely|actually)\b)*", re.I)
_LAST_COPULA = re.compile(r".*(?:\b(?:is|are|equals|be)\b|=)", re.I)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_MATH_WORDS = frozenset({"sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos", "arctan", "sinh", "cosh",
                         "tanh", "log", "ln", "exp", "sqrt", "pi", "inf", "infty", "infinity", "mod", "gcd", "lcm",
                         "max", "min", "det", "oo"})
_PERCENT_WORDS = frozenset({"percent", "percentage", "pct"})
_CLOSES = set(")]}|!'%°∞π")  # characters an expression may end on (besides digits, letters and commands)
_OPERATORS = set("+-*/^_=<>([{≤≥≠≈±∓×÷·−–√,;") | _CLOSES
_COMMAND = re.compile(r"\\(?:[A-Za-z]+|.)")
_WORD = re.compile(r"[^\W\d_]+")
MAX_GROUP_CHARS = 10_000
_NEXT_DIGIT = re.compile(r" *\d")
_MATH_START = re.compile(r" *(?:[\d$\\(\[{.-]|[^\W\d_](?![^\W\d_]))")
_DIGITS = re.compile(r"\d+(?:(?:[.,]|\\,|\{,\})\d+)*")


def _closing_dollar(x: str, i: int) -> int | None:
    """Where the inline math opened by the `$` at `i` closes on its line, or None when that `$` is a currency sign
    ("$18", "$5 and $6")."""
    j = i + 1
    while j < len(x) and x[j] != "\n":
        if x[j] == "\\":
            j += 2
            continue
        if x[j] == "$":
            if x[i + 1:i + 2].isdecimal() and (x[j - 1].isspace() or x[j + 1:j + 2].isdecimal()):
                return None
            return j
        j += 1
    return None


def math_prefix(x: str) -> tuple[int, bool]:
    """(length of the math expression `x` starts with, whether it holds any math): numbers, operators, single-letter
    variables, LaTeX commands with their arguments, math spans, "and"/"or" between two items, percent words."""
    i, end, has_math = 0, 0, False
    while i < len(x):
        c = x[i]
        if c in " \t":
            i += 1
        elif x.startswith("$$", i) or x.startswith("\\[", i) or x.startswith("\\(", i):
            close = x.find({"$": "$$", "[": "\\]", "(": "\\)"}[x[i + 1] if c == "\\" else "$"], i + 2)
            if close < 0:
                break
            i = end = close + 2
            has_math = True
        elif c == "$":
            close = _closing_dollar(x, i)
            if close is None:  # a currency sign, before the number or after it ("1,000.99$")
                end = i + 1 if end and x[end - 1].isdigit() and not x[end:i].strip() else end
                i += 1
            else:
                i = end = close + 1
                has_math = True
        elif c == "\\":
            if x.startswith('\\"', i):  # an escaped quote around the answer
                i += 2
                continue
            command = _COMMAND.match(x, i)
            if command is None:
                break
            j = command.end()
            while j < len(x) and x[j] == "{":
                group = balanced_group(x, j + 1, MAX_GROUP_CHARS)
                if group is None:  # an argument never closed: the expression cannot go on
                    return end, has_math
                j += len(group) + 2
            i = end = j
            has_math = True
        elif c.isdecimal() or (c == "." and x[i + 1:i + 2].isdecimal()):  # not "²": isdigit() but no \d
            i = end = _DIGITS.match(x, i + (c == ".")).end()
            has_math = True
        elif c.isalpha():
            word = _WORD.match(x, i)
            lower = word.group(0).lower()
            if (len(lower) == 1 and c.isascii()) or lower in _MATH_WORDS or (end and lower in _PERCENT_WORDS):
                i = end = word.end()
            elif end and lower in ("and", "or") and _starts_math(x, word.end()):
                i = word.end()
            else:
                break
        elif c == ":" and _NEXT_DIGIT.match(x, i + 1):
            i += 1  # a ratio, 7:32
        elif c in _OPERATORS:
            i += 1
            if c in _CLOSES:
                end = i
        else:
            break
    return end, has_math


def _starts_math(x: str, i: int) -> bool:
    """An item of an expression starts at `i` (after spaces): a number, a span, a command, a bracket, a variable."""
    return _MATH_START.match(x, i) is not None


def stated_expression(x: str) -> tuple[str, int] | None:
    """(expression, end in `x`) of the answer a statement gives: its leading expression, or the value after the last
    "is" / "=" of its first sentence ("the largest $n$ is 34"); None when it gives none."""
    start = _FILLER.match(x).end()
    sentence_end = m.start() if (m := _SENTENCE_END.search(x, start)) else len(x)
    end, has_math = math_prefix(x[start:])
    if end and has_math:
        equals = x.rfind("=", start + end, sentence_end)  # "15 gallons * 8 pints / gallon = 120 pints"
        if equals >= 0:
            after = equals + 1 + len(x[equals + 1:]) - len(x[equals + 1:].lstrip(" "))
            tail_end, tail_math = math_prefix(x[after:sentence_end])
            if tail_end and tail_math:
                return _trim(x[after:after + tail_end]), after + tail_end
        return _trim(x[start:start + end]), start + end
    sentence = x[start:sentence_end]
    copula = _LAST_COPULA.match(sentence)
    if copula:
        after = start + copula.end()
        after += len(x[after:]) - len(x[after:].lstrip(" :"))
        end, has_math = math_prefix(x[after:])
        if end and has_math:
            return _trim(x[after:after + end]), after + end
    return None


def _trim(expression: str) -> str:
    """Without trailing one-letter words ("18 I think", "5 m") or closing brackets nothing opened ("18)")."""
    expression = re.sub(r"(?:\s+[A-Za-z])+$", "", expression.strip()) or expression.strip()
    while expression[-1:] in (")", "]", "}") and _unopened(expression):
        expression = expression[:-1].rstrip()
    return expression


def _unopened(expression: str) -> bool:
    """More closing brackets than opening ones (mixed brackets count together: "[0,1)" is an interval)."""
    return sum(map(expression.count, ")]}")) > sum(map(expression.count, "([{"))


def statement_end(text: str, start: int, limit: int) -> int:
    """End of the statement that starts at `start`: its line, or further while a display-math block is open (at most
    2,000 characters), never past `limit` (where the next statement starts)."""
    end = text.find("\n", start, limit)
    end = limit if end < 0 else end
    segment = text[start:end]
    if segment.count("$$") % 2:
        close = text.find("$$", end, min(limit, end + 2000))
    elif segment.count("\\[") > segment.count("\\]"):
        close = text.find("\\]", end, min(limit, end + 2000))
    else:
        return end
    return close + 2 if close >= 0 else end
