"""Seed datasets: questions from seed rows, with answer parsing (the rows are read by `seed_files.py`).

Answer conventions: GSM8K's `... #### 42` (the worked lines become reference steps, calculator annotations removed),
MATH's `\\boxed{...}` (nested braces balanced, adjacent boxes kept together), multiple-choice letters (a letter, an
option index or the option's text), plain numbers, plain text. A row that cannot be parsed becomes a
`RejectedQuestion` with the reason; nothing is dropped silently. A recipe field that names a column the data does not
have is a clear error instead: that is a recipe mistake, not a bad row.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass

from cotforge.schemas.config_questions import SeedSourceConfig
from cotforge.schemas.records import Question, Record, question_id_for
from cotforge.tasks.questions.seed_files import MAX_ROW_CHARS, SeedRows, read_seed_source
from cotforge.tasks.verify.extract import as_rational, normalize_answer
from cotforge.tasks.verify.math_answer import balanced_group, last_box_group, normalize_math

LETTERS = "ABCDEFGHIJ"


class RejectedQuestion(Record):
    """A candidate question that did not become a Question, and why (seed rows that do not parse, synthesised
    questions that fail validity or solvability, duplicates of an earlier source's question)."""

    source: str  # "seed:gsm8k", "synth:algebra", ...
    row: int  # row index in the source (file row, candidate index)
    reason: str  # "no_gsm8k_marker", "no_boxed_answer", "invalid_json: ...", "synth_invalid:...", ...
    text: str | None = None  # the question text when there was one
    row_json: str = "{}"  # the raw row (truncated), so the row can be fixed and re-read
    recipe_hash: str
    build_id: str


@dataclass(frozen=True)
class ParsedAnswer:
    gold: str | None
    answer_type: str
    verifier: str
    steps: tuple[str, ...] = ()


class RowError(ValueError):
    """One row cannot be parsed; the message is the reason kept on its RejectedQuestion."""


_GSM8K_MARKER = re.compile(r"####\s*(.*)\s*$", re.S)
_CALCULATOR = re.compile(r"<<[^>]*>>")
_BOXED_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_LETTER_ANSWER = re.compile(r"^\(?\s*([A-Ja-j])\s*\)?(?:[.:)\s]|$)")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str)
                                                                                   and not value.strip())


def parse_gsm8k(text: str) -> ParsedAnswer:
    """`worked lines\\n#### 42` -> gold "42" with the worked lines (calculator annotations removed) as steps."""
    match = _GSM8K_MARKER.search(text)
    if match is None:
        raise RowError("no_gsm8k_marker")
    final = match.group(1).strip().replace(",", "").replace("$", "").strip()
    if not final:
        raise RowError("empty_gsm8k_answer")
    if as_rational(final) is None:
        raise RowError(f"gsm8k_answer_not_a_number: {final[:40]}")
    worked = text[:match.start()]
    steps = tuple(line.strip() for line in _CALCULATOR.sub("", worked).splitlines() if line.strip())
    return ParsedAnswer(normalize_answer(final, "number"), "number", "math", steps)


def parse_boxed(text: str) -> ParsedAnswer:
    """The final answer in `\\boxed{...}` (MATH): every box of its final group (adjacent boxes are one multi-part
    answer, "\\boxed{1}\\boxed{2}" is "1, 2"), normalised as predictions are; the whole text becomes the steps."""
    starts = list(_BOXED_START.finditer(text))
    if not starts:
        raise RowError("no_boxed_answer")
    inner = last_box_group(text)
    if inner is None or balanced_group(text, starts[-1].end()) is None:
        raise RowError("unbalanced_boxed_answer")
    gold = normalize_math(inner, latex=True)
    if not gold:
        raise RowError("empty_boxed_answer")
    steps = tuple(line.strip() for line in text.splitlines() if line.strip())
    return ParsedAnswer(gold, "number", "math", steps)


def parse_choice(value, options: list[str] | None) -> ParsedAnswer:
    """An option letter from a letter ("B", "(b)", "B) text"), a 0-based index, or the text of an option."""
    letter = None
    if isinstance(value, bool):
        raise RowError("choice_answer_is_a_boolean")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit() and options):
        index = int(value)
        if not 0 <= index < (len(options) if options else len(LETTERS)):
            raise RowError(f"choice_index_out_of_range: {index}")
        letter = LETTERS[index]
    elif isinstance(value, str):
        stripped = value.strip()
        match = _LETTER_ANSWER.match(stripped)
        if match and (len(stripped) <= 3 or stripped[1:2] in ".:)" or stripped.startswith("(")):
            letter = match.group(1).upper()
        elif options and stripped in options:
            letter = LETTERS[options.index(stripped)]
    if letter is None:
        raise RowError(f"not_a_choice: {str(value)[:40]}")
    if options is not None and LETTERS.index(letter) >= len(options):
        raise RowError(f"choice_out_of_range: {letter} with {len(options)} options")
    return ParsedAnswer(letter, "choice", "choice")


def parse_number(value) -> ParsedAnswer:
    text = str(value).strip().replace("$", "").strip()
    number = as_rational(text)
    if number is None:
        raise RowError(f"not_a_number: {text[:40]}")
    return ParsedAnswer(normalize_answer(text, "number"), "number", "math")


def parse_options(value) -> list[str]:
    """Options from a list, an ARC-style {"label": [...], "text": [...]}, or a JSON list in a CSV cell."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError("choices_not_a_list") from None
    if isinstance(value, dict) and isinstance(value.get("text"), list):
        value = value["text"]
    if not isinstance(value, list) or not value or not all(isinstance(o, (str, int, float)) for o in value):
        raise RowError("choices_not_a_list")
    if len(value) > len(LETTERS):
        raise RowError(f"too_many_choices: {len(value)}")
    return [str(o) for o in value]


def parse_answer(answer, solution: str | None, answer_format: str, options: list[str] | None) -> ParsedAnswer:
    """The gold answer of one row by the source's convention (auto: gsm8k, boxed, choice, number, text)."""
    if answer_format == "gsm8k":
        if _missing(answer):
            raise RowError("missing_answer")
        return parse_gsm8k(str(answer))
    if answer_format == "boxed":
        for text in (answer, solution):
            if not _missing(text) and _BOXED_START.search(str(text)):
                parsed = parse_boxed(str(text))
                steps = parse_boxed(str(solution)).steps if text is answer and not _missing(solution) and \
                    _BOXED_START.search(str(solution)) else parsed.steps
                return ParsedAnswer(parsed.gold, parsed.answer_type, parsed.verifier, steps)
        raise RowError("missing_answer" if _missing(answer) and _missing(solution) else "no_boxed_answer")
    if _missing(answer):
        if answer_format == "auto" and not _missing(solution) and _BOXED_START.search(str(solution)):
            return parse_boxed(str(solution))
        raise RowError("missing_answer")
    if answer_format == "choice":
        return parse_choice(answer, options)
    if answer_format == "number":
        return parse_number(answer)
    if answer_format == "text":
        return ParsedAnswer(str(answer).strip(), "text", "exact")
    text = str(answer)  # auto
    if "####" in text:
        return parse_gsm8k(text)
    if _BOXED_START.search(text):
        return parse_boxed(text)
    if options is not None:
        return parse_choice(answer, options)
    try:
        return parse_number(answer)
    except RowError:
        return ParsedAnswer(text.strip(), "text", "exact")


def _with_options(question: str, options: list[str]) -> str:
    return question.rstrip() + "\n\n" + "\n".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(options))


def _row_json(row: dict) -> str:
    return json.dumps(row, default=str, ensure_ascii=False)[:MAX_ROW_CHARS]


def check_columns(source: SeedSourceConfig, rows: SeedRows) -> None:
    """A mapped column the data lacks entirely is a recipe error that names the field."""
    if not rows.rows:
        return
    columns = set().union(*(row.keys() for _, row in rows.rows))
    for field_name, column in source.fields.model_dump().items():
        if column is not None and column not in columns:
            raise ValueError(f"seed source {source.name!r}: fields.{field_name} names column {column!r}, which "
                             f"{rows.dataset} does not have (columns: {sorted(columns)})")


def parse_seed_rows(source: SeedSourceConfig, rows: SeedRows, count: int | None, seed: int, recipe_hash: str,
                    build_id: str) -> tuple[list[Question], list[RejectedQuestion]]:
    """Questions from the rows that parse (the first `count`, or a seeded sample with `shuffle`) and a
    RejectedQuestion for every row that does not."""
    check_columns(source, rows)
    tag = f"seed:{source.name}"
    f = source.fields
    rejected = [RejectedQuestion(source=tag, row=i, reason=reason, row_json=raw, recipe_hash=recipe_hash,
                                 build_id=build_id) for i, reason, raw in rows.unreadable]
    parsed: list[Question] = []
    for index, row in rows.rows:
        question = row.get(f.question)
        try:
            if _missing(question):
                raise RowError("missing_question")
            if not isinstance(question, str):
                raise RowError(f"question_not_text: {type(question).__name__}")
            if len(question) > source.max_question_chars:
                raise RowError(f"question_too_long: {len(question)} characters > max_question_chars "
                               f"{source.max_question_chars}")
            options = parse_options(row.get(f.choices)) if f.choices else None
            answer = ParsedAnswer(None, "number", source.verifier or "math") if f.answer is None else \
                parse_answer(row.get(f.answer), row.get(f.solution) if f.solution else None, source.answer_format,
                             options)
        except RowError as error:
            rejected.append(RejectedQuestion(source=tag, row=index, reason=str(error),
                                             text=question if isinstance(question, str) else None,
                                             row_json=_row_json(row), recipe_hash=recipe_hash, build_id=build_id))
            continue
        text = _with_options(question, options) if options else question.strip()
        metadata = {"seed": {"dataset": rows.dataset, "row": index, "answer_format": source.answer_format}}
        if f.id and not _missing(row.get(f.id)):
            metadata["seed"]["id"] = str(row[f.id])
        parsed.append(Question(
            question_id=question_id_for(text), source=tag, text=text, gold_answer=answer.gold,
            answer_type=answer.answer_type, verifier=source.verifier or answer.verifier,
            reference_steps=list(answer.steps), metadata_json=json.dumps(metadata, sort_keys=True),
            source_revision=rows.revision, recipe_hash=recipe_hash, build_id=build_id))
    if count is not None and count < len(parsed):
        parsed = random.Random(f"{tag}:{seed}").sample(parsed, count) if source.shuffle else parsed[:count]
    return parsed, rejected


def seed_questions(source: SeedSourceConfig, count: int | None, seed: int, recipe_hash: str,
                   build_id: str) -> tuple[list[Question], list[RejectedQuestion]]:
    """Read and parse one seed source."""
    return parse_seed_rows(source, read_seed_source(source), count, seed, recipe_hash, build_id)
