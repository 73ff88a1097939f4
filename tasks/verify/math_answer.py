"""One normalisation for math answers, gold and prediction alike, and the screens that refuse tricks.

The normalised answer is what the vote counts and what math-verify receives (as LaTeX, never a pre-digested number):
math delimiters, currency signs and thin-space separators go; plain numbers get one canonical spelling ("1,000.50",
"1 000.5" and "$1000.5$" all become "1000.5"); decimals stay decimals (math-verify compares them at its precision);
integer fractions become "a/b" in lowest terms. A comma is a thousands separator only between groups of three
digits. Any other single comma between two numbers is read as math-verify reads it: a decimal comma in plain text
("1,22" is 1.22), a list separator in LaTeX ("$-2,1$" is {-2, 1}, kept as "-2, 1" so a second normalisation agrees).
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_ANSWER_CHARS = 1000  # a longer final answer is refused before math-verify or sympy ever sees it

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_SEPARATOR = re.compile(r"\b(?:and|or)\b|,|;")
MAX_BOXES = 64
MAX_BOX_CHARS = 10_000  # a box longer than this holds no final answer (and is not scanned further)
_BRACES = re.compile(r"[{}]")
_LATEX_CONTEXT = re.compile(r"\$|\\\(|\\\[|\\(?:boxed|fbox)\b")
_DELIMITERS = re.compile(r"\\\$|\$|\\[()\[\]]")
_CURRENCY = "€£¥₹"
_PERCENT = re.compile(r"\s*(?:\\?%|\\text\{\s*%\s*\}|\s(?:percent(?:age)?|pct))\s*$", re.I)
_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(?:(?:,|\\,| )\d{3})+(?:\.\d+)?", re.A)
_DECIMAL = re.compile(r"([+-]?)(\d*)(?:\.(\d+))?", re.A)
_ONE_COMMA = re.compile(r"([+-]?\d+),(\d+)", re.A)
_INT_FRACTION = re.compile(r"([+-]?)\s*(?:\\[dtc]?frac\{\s*(\d+)\s*\}\{\s*(\d+)\s*\}|(\d+)\s*/\s*(\d+))", re.A)
_INTEGER = re.compile(r"-?\d+", re.A)  # ASCII digits only: "١٨" is no number here


def balanced_group(text: str, start: int, limit: int | None = None) -> str | None:
    """Text from `start` up to the brace that closes an already opened one (None: not closed within `limit`)."""
    depth = 1
    stop = len(text) if limit is None else min(len(text), start + limit)
    for brace in _BRACES.finditer(text, start, stop):
        depth += 1 if brace.group() == "{" else -1
        if depth == 0:
            return text[start:brace.start()]
    return None


def _canonical_decimal(sign: str, whole: str, fraction: str | None) -> str:
    whole = whole.lstrip("0") or "0"
    fraction = (fraction or "").rstrip("0")
    text = f"{whole}.{fraction}" if fraction else whole
    return text if sign != "-" or text == "0" else "-" + text


def canonical_number(text: str, latex: bool) -> str | None:
    """The canonical spelling of a plain number, or None when `text` is not one (see the module docstring)."""
    text = text.strip()
    if _THOUSANDS.fullmatch(text):
        text = text.replace("\\,", "").replace(",", "").replace(" ", "")
    comma = _ONE_COMMA.fullmatch(text)
    if comma:
        return f"{comma.group(1)}, {comma.group(2)}" if latex else canonical_number(text.replace(",", "."), latex)
    decimal = _DECIMAL.fullmatch(text)
    if decimal and (decimal.group(2) or decimal.group(3)):
        return _canonical_decimal(decimal.group(1), decimal.group(2), decimal.group(3))
    fraction = _INT_FRACTION.fullmatch(text)
    if fraction:
        sign, a, b = fraction.group(1), fraction.group(2) or fraction.group(4), fraction.group(3) or fraction.group(5)
        if len(a) + len(b) > 60 or int(b) == 0:  # sympy decides those; never a huge int() here
            return None
        value = Fraction(int(a), int(b)) * (-1 if sign == "-" else 1)
        return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    return None


def boxes(text: str) -> list[tuple[int, int, str]]:
    """Every balanced, non-nested `\\boxed{}` / `\\fbox{}` (the last MAX_BOXES): (start, end, contents)."""
    out: list[tuple[int, int, str]] = []
    for m in list(_BOXED.finditer(text))[-MAX_BOXES:]:  # bounded: each unclosed box scans to the end of the text
        if out and m.start() < out[-1][1]:
            continue  # nested inside the previous box
        inner = balanced_group(text, m.end(), MAX_BOX_CHARS)
        if inner is not None:
            out.append((m.start(), m.end() + len(inner) + 1, inner.strip()))
    return out


def box_groups(text: str) -> list[tuple[int, int, str]]:
    """Boxes grouped into answers as math-verify groups them: a box joins the next one when less than 10 characters
    lie between them, or less than 70 with "and", "or", a comma or a semicolon and a different content. Each group:
    (start, end, contents joined with ", "), in text order."""
    found = boxes(text)
    groups = []
    i = len(found) - 1
    while i >= 0:
        members = [found[i]]
        j = i - 1
        while j >= 0:
            between = text[found[j][1]:members[-1][0]]
            if len(between) < 10 or (found[j][2] != members[-1][2] and len(between) < 70
                                     and _BOX_SEPARATOR.search(between)):
                members.append(found[j])
                j -= 1
            else:
                break
        contents: list[str] = []
        for _, _, content in reversed(members):
            if content and (not contents or contents[-1] != content):  # repeated boxes are one answer
                contents.append(content)
        groups.append((members[-1][0], members[0][1], ", ".join(contents)))
        i = j
    return groups[::-1]


def last_box_group(text: str) -> str | None:
    groups = box_groups(text)
    return groups[-1][2] if groups else None


def normalize_math(answer: str, latex: bool | None = None) -> str:
    """The canonical form of a math answer (see the module docstring); `latex` says whether it was written as LaTeX
    (inside a box or math delimiters); None: decided by the text itself."""
    text = answer.replace("\n", " ").replace("\r", " ")
    if latex is None:
        latex = bool(_LATEX_CONTEXT.search(text))
    if _BOXED.search(text):
        text = last_box_group(text) or text
    text = _DELIMITERS.sub(" ", text)
    text = re.sub(r"(?<=\d)\s*(?:\{\s*,\s*\}|,\s*\\!)\s*(?=\d)", ",", text).replace("\\!", "")  # 11,\! 111 and 14{,}916
    text = re.sub(r"\s+", " ", text).strip().strip(_CURRENCY).strip()
    text = re.sub(r"^(?:\*\*|:)+|(?:\*\*)+$", "", text).strip()
    while text and text[-1] in ".,;:" and not text.endswith("\\;") and not text.endswith("\\,"):
        text = text[:-1].rstrip()
    percent = _PERCENT.search(text)
    if percent and percent.start() > 0:
        number = canonical_number(text[:percent.start()], latex)
        return (number or text[:percent.start()].strip()) + "\\%"
    number = canonical_number(text, latex)
    return number if number is not None else text


def as_rational(text: str) -> Fraction | None:
    """The exact rational a plain number or fraction denotes ("1,000", "-2.50", "3/4"), else None."""
    number = canonical_number(normalize_math(text), latex=False)
    if number is None or ", " in number:
        return None
    try:
        return Fraction(number)
    except (ValueError, ZeroDivisionError):
        return None


def is_integer(answer: str) -> bool:
    """A canonical integer: two of them are equal exactly when their strings are."""
    return _INTEGER.fullmatch(answer) is not None


# Commands that hide, overlay, recolour, strike or redefine what is shown: an answer written with them says one thing
# to a reader and may say another to a parser. Never needed to state a final answer.
_TRICKS = re.compile(
    r"\\(phantom|hphantom|vphantom|smash|color|textcolor|colorbox|fcolorbox|llap|rlap|clap|mathllap|mathrlap|"
    r"mathclap|raisebox|scalebox|resizebox|hspace|hskip|kern|mkern|mskip|def|newcommand|renewcommand|"
    r"providecommand|let|cancel|bcancel|xcancel|sout|overset|underset|stackrel|require|tag|iffalse|catcode)"
    r"(?![A-Za-z])")
_COMMENT = re.compile(r"(?<!\\)%\s*\S")  # an unescaped % hides the rest of its line from a reader of the LaTeX
# 10^{10^{10}}, 10^10^10, 2**3**40, 2^{99999999}, 12345!
_TOWER = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\d+\s*\^|\*\*\s*\d+\s*\*\*|(?:\^|\*\*)\s*\{?\s*\d{7,}|\d{5,}\s*!")


def screen_math_answer(answer: str) -> str | None:
    """Why an extracted math answer must not be judged at all (verdict None), or None when it may be."""
    if len(answer) > MAX_ANSWER_CHARS:
        return "answer_too_long"
    if any(ch.isdecimal() and not ch.isascii() for ch in answer):
        return "non_ascii_digits"  # "١٨" or "１８": int() reads them as 18, a reader of the data may not
    trick = _TRICKS.search(answer)
    if trick:
        return f"latex_trick:{trick.group(1)}"
    if _COMMENT.search(answer):
        return "latex_comment"
    if _TOWER.search(answer):
        return "huge_power"  # would make sympy build numbers of billions of digits
    return None
