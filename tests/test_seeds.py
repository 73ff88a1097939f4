"""Seed datasets: answer parsers (GSM8K, MATH boxed, multiple choice, numbers), malformed rows reported with their
reason, JSONL / Parquet / CSV readers, and the shipped GSM8K subset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cotforge.schemas.config_questions import SeedSourceConfig
from cotforge.tasks.questions.seed_files import read_seed_file
from cotforge.tasks.questions.seeds import RowError, parse_boxed, parse_choice, parse_gsm8k, seed_questions
from tests.conftest import missing_component

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "seeds" / "gsm8k_train_200.jsonl"
SHARED_GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def _source(path, **kw) -> SeedSourceConfig:
    return SeedSourceConfig(name=kw.pop("name", "t"), path=str(path), **kw)


def test_parse_gsm8k_answer_and_steps():
    parsed = parse_gsm8k("She sold 48/2 = <<48/2=24>>24 clips.\nIn all 48+24 = <<48+24=72>>72.\n#### 1,072")
    assert parsed.gold == "1072" and parsed.verifier == "math"
    assert parsed.steps == ("She sold 48/2 = 24 clips.", "In all 48+24 = 72.")


@pytest.mark.parametrize("text, reason", [
    ("no marker here, answer 5", "no_gsm8k_marker"),
    ("work\n#### ", "empty_gsm8k_answer"),
    ("work\n#### five", "gsm8k_answer_not_a_number"),
])
def test_parse_gsm8k_malformed(text, reason):
    with pytest.raises(RowError, match=reason):
        parse_gsm8k(text)


def test_parse_boxed_nested_and_malformed():
    # Boxes close together are one multi-part answer (as math-verify groups them); a box far before is not part of it.
    assert parse_boxed(r"So $x = \boxed{\frac{1}{2}}$. Also \boxed{3}").gold == r"\frac{1}{2}, 3"
    assert parse_boxed(r"\boxed{1}\boxed{2}").gold == "1, 2"
    assert parse_boxed(r"A first try gave \boxed{7}. That used the wrong formula for the area of the triangle, so we "
                       r"redo the computation with the right one: \boxed{3}").gold == "3"
    assert parse_boxed(r"The answer is $\boxed{\frac{\sqrt{3}}{2}}$.").gold == r"\frac{\sqrt{3}}{2}"
    for text, reason in [("no box", "no_boxed_answer"), (r"\boxed{\frac{1}{2}", "unbalanced_boxed_answer"),
                         (r"\boxed{ }", "empty_boxed_answer")]:
        with pytest.raises(RowError, match=reason):
            parse_boxed(text)


def test_parse_choice_letters_indices_and_option_text():
    options = ["red", "green", "blue"]
    assert parse_choice("B", options).gold == "B"
    assert parse_choice("(c)", options).gold == "C"
    assert parse_choice("A) red", options).gold == "A"
    assert parse_choice(2, options).gold == "C"
    assert parse_choice("green", options).gold == "B"
    for value, reason in [("D", "choice_out_of_range"), (5, "choice_index_out_of_range"), ("purple", "not_a_choice"),
                          (True, "boolean")]:
        with pytest.raises(RowError, match=reason):
            parse_choice(value, options)


def test_malformed_jsonl_rows_are_rejected_with_reasons(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [
        json.dumps({"question": "What is 2+3?", "answer": "Add.\n#### 5"}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"question": "", "answer": "#### 1"}),
        json.dumps({"question": "What is 1+1?", "answer": "two"}),
        json.dumps({"question": "What is 4+4?", "answer": None}),
        json.dumps({"question": "What is 6+1?", "answer": "#### 7"}),
    ]
    path.write_text("\n".join(rows) + "\n")
    questions, rejected = seed_questions(_source(path, answer_format="gsm8k"), None, 0, "r", "b")
    assert [q.gold_answer for q in questions] == ["5", "7"]
    reasons = {r.row: r.reason for r in rejected}
    assert reasons[1].startswith("invalid_json") and reasons[2].startswith("not_a_json_object")
    assert reasons[3] == "missing_question" and reasons[4] == "no_gsm8k_marker" and reasons[5] == "missing_answer"
    assert len(questions) + len(rejected) == len(rows), "every row is either a question or a rejected row"
    assert all(r.source == "seed:t" for r in rejected)
    assert json.loads(rejected[-1].row_json)["question"] == "What is 4+4?", "the raw row is kept"


def test_parquet_math_boxed_from_solution_field(tmp_path):
    path = tmp_path / "math.parquet"
    pq.write_table(pa.table({
        "problem": ["Compute 1/2 + 1/4.", "Find x if 2x = 6.", "Broken row."],
        "solution": [r"We add: $\boxed{\frac{3}{4}}$.", r"Divide: $x = \boxed{3}$", "no box at all"],
    }), path)
    source = _source(path, answer_format="boxed", fields={"question": "problem", "answer": "solution"})
    questions, rejected = seed_questions(source, None, 0, "r", "b")
    assert [q.gold_answer for q in questions] == ["3/4", "3"]  # normalised as predictions are
    assert [(r.row, r.reason) for r in rejected] == [(2, "no_boxed_answer")]


def test_csv_multiple_choice_with_json_options(tmp_path):
    path = tmp_path / "mc.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["q", "options", "key"])
        writer.writerow(["Which is a prime?", json.dumps(["4", "6", "7"]), "C"])
        writer.writerow(["Which is even?", json.dumps(["3", "8"]), "1"])
        writer.writerow(["Which is odd?", "not a list", "A"])
        writer.writerow(["Which is largest?", json.dumps(["1", "2"]), "E"])
    source = _source(path, answer_format="choice", fields={"question": "q", "answer": "key", "choices": "options"})
    questions, rejected = seed_questions(source, None, 0, "r", "b")
    assert [q.gold_answer for q in questions] == ["C", "B"]
    assert questions[0].text.endswith("A) 4\nB) 6\nC) 7") and questions[0].verifier == "choice"
    assert [r.reason for r in rejected] == ["choices_not_a_list", "choice_out_of_range: E with 2 options"]


def test_missing_column_is_a_clear_recipe_error(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "What is 1+1?", "answer": "2"}) + "\n")
    with pytest.raises(ValueError, match=r"fields.question names column 'question'.*columns: \['answer', 'prompt'\]"):
        seed_questions(_source(path), None, 0, "r", "b")
    with pytest.raises(FileNotFoundError):
        seed_questions(_source(tmp_path / "absent.jsonl"), None, 0, "r", "b")


def test_recipe_seed_source_needs_one_location():
    with pytest.raises(ValueError, match="exactly one of `path`"):
        SeedSourceConfig(name="x")


def test_shipped_gsm8k_subset_parses_fully():
    questions, rejected = seed_questions(_source(SHIPPED, name="gsm8k", answer_format="gsm8k"), None, 0, "r", "b")
    assert len(questions) == 200 and not rejected
    assert questions[0].gold_answer == "72" and questions[0].source == "seed:gsm8k"
    assert all(q.reference_steps for q in questions)
    assert (ROOT / "data" / "seeds" / "GSM8K_LICENSE").read_text().startswith("MIT License")


def test_real_gsm8k_train_auto_format_and_count_with_shuffle():
    if not SHARED_GSM8K.is_file():
        missing_component(f"the shared GSM8K copy is not at {SHARED_GSM8K}")
    source = _source(SHARED_GSM8K, name="gsm8k", n=50, shuffle=True)
    rows = read_seed_file(SHARED_GSM8K)
    assert len(rows.rows) == 7473
    questions, rejected = seed_questions(source, 50, 3, "r", "b")
    again, _ = seed_questions(source, 50, 3, "r", "b")
    assert len(questions) == 50 and [q.question_id for q in questions] == [q.question_id for q in again]
    assert all(q.verifier == "math" and q.gold_answer for q in questions)
    assert not rejected


def test_bad_rows_are_screened_each_with_its_reason(tmp_path):
    """Non-UTF-8 bytes, an empty or non-text question, a question over the source's `max_question_chars` and a
    malformed row are each a rejected row naming why; no question is stored with replacement characters."""
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps({"question": "What is 2+3?", "answer": "5"}).encode(),
             b'{"question": "What is caf\xe9 + 1?", "answer": "2"}',  # Latin-1 bytes
             json.dumps({"question": "   ", "answer": "1"}).encode(),
             json.dumps({"question": 42, "answer": "1"}).encode(),
             json.dumps({"question": "What is " + "9 + " * 400 + "1?", "answer": "3601"}).encode(),
             b'{"question": "unclosed',
             json.dumps({"question": "What is 6+1?", "answer": "7"}).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    questions, rejected = seed_questions(_source(path, max_question_chars=1000), None, 0, "r", "b")
    assert [q.gold_answer for q in questions] == ["5", "7"]
    reasons = {r.row: r.reason for r in rejected}
    assert reasons[1].startswith("not_utf8: ") and "0xe9" in reasons[1]
    assert reasons[2] == "missing_question" and reasons[3] == "question_not_text: int"
    assert reasons[4] == "question_too_long: 1610 characters > max_question_chars 1000"
    assert reasons[5].startswith("invalid_json")
    assert len(questions) + len(rejected) == len(lines)
    assert not any("\ufffd" in q.text for q in questions)
    assert SeedSourceConfig(name="t", path="x.jsonl").max_question_chars == 20_000  # the default guard


def test_csv_non_utf8_and_malformed_rows_are_rejected_not_read(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"question,answer\nWhat is 1+1?,2\nWhat is na\xefve 2+2?,4\nWhat is 3+3?,6,extra\n"
                     b"What is 4+4?\nWhat is 5+5?,10\n")
    questions, rejected = seed_questions(_source(path), None, 0, "r", "b")
    assert [q.gold_answer for q in questions] == ["2", "10"]
    assert [(r.row, r.reason.split(":")[0]) for r in rejected] == [
        (1, "not_utf8"), (2, "malformed_csv_row"), (3, "malformed_csv_row")]
    assert all("\udcef" not in r.row_json for r in rejected)
