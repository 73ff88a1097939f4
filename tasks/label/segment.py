"""Segmentation of a rationale into steps: one step per line, but never a step of a bare list marker, a bare number
or a sentence fragment (they are merged with the line they belong to)."""

from __future__ import annotations

import re

_STEP_PREFIX = re.compile(r"^\s*(?:step\s*\d+\s*[:.)-]\s*)", re.I)
# A line holding only a list marker or a number: "1", "2.", "(3)", "a)", "-", "Step 4:".
_MARKER_ONLY = re.compile(r"^\s*(?:\(?-?\d+(?:[.,]\d+)?[.):]?|\(?[a-z][.)]|[-*\u2022]|#+|step\s*\d+\s*[:.)-]?)\s*$", re.I)
_SENTENCE_END = re.compile(r"[.!?:;]\s*$")
_JOINS_NEXT = re.compile(r"(?:,|\b(?:and|or|is|are|of|to|the|a|by|from|with|then|so))\s*$", re.I)


def _is_marker(line: str) -> bool:
    return bool(_MARKER_ONLY.match(line))


def _is_symbols(line: str) -> bool:
    return not any(ch.isalnum() for ch in line)


def _continues(previous: str, line: str) -> bool:
    """Whether `line` carries on the sentence `previous` left open ("so the total\\nis 12 apples.")."""
    stripped = line.strip()
    return (bool(_JOINS_NEXT.search(previous)) or (previous.rstrip()[-1:].isalpha() and stripped[:1].islower()
                                                   and "=" not in stripped and not _STEP_PREFIX.match(line)))


def segment_groups(lines: list[str]) -> list[list[str]]:
    """Non-empty lines grouped into steps: a marker-only line joins the next line (it numbers it), or the previous
    one when it ends the text or follows an open sentence ("The answer is\\n15"); a line of symbols only joins its
    neighbour; a line continuing an unfinished sentence joins the previous one."""
    groups: list[list[str]] = []
    carry: list[str] = []  # markers waiting for the line they number
    for i, line in enumerate(lines):
        previous = groups[-1][-1] if groups else None
        is_last = i == len(lines) - 1
        if _is_marker(line) or _is_symbols(line):
            closes_previous = previous is not None and not carry and (
                is_last or _is_symbols(line) or not _SENTENCE_END.search(previous))
            if closes_previous:
                groups[-1].append(line)
            else:
                carry.append(line)
            continue
        if carry:
            groups.append([*carry, line])
            carry = []
        elif previous is not None and _continues(previous, line):
            groups[-1].append(line)
        else:
            groups.append([line])
    if carry:  # markers with nothing after them
        if groups:
            groups[-1].extend(carry)
        else:
            groups.append(carry)
    return groups


def segment_lines(text: str) -> tuple[list[str], list[str]]:
    """(steps, raw steps): one step per line, markers and fragments merged (segment_groups); the step text drops a
    leading "Step i:" marker and joins its lines with a space.

    The raw steps (their lines joined by newlines) rebuild the exact prefix the model wrote, so a rollout continues
    the text it would have continued.
    """
    groups = segment_groups([line for line in text.splitlines() if line.strip()])
    steps = [" ".join(p for p in (_STEP_PREFIX.sub("", part).strip() for part in group) if p)
             or " ".join(part.strip() for part in group) for group in groups]
    return steps, ["\n".join(group) for group in groups]


SEGMENTERS = {"lines": segment_lines}
