"""Builders of small question/sample tables for the verification tests."""

from __future__ import annotations

import pyarrow as pa

from cotforge.schemas.arrow import to_table
from cotforge.schemas.records import Question, Sample


def question(qid: str, gold: str | None, verifier: str = "math", answer_type: str = "number",
             tests: str | None = None, text: str | None = None) -> Question:
    return Question(question_id=qid, source="test", text=text or f"question {qid}", gold_answer=gold,
                    answer_type=answer_type, verifier=verifier, tests=tests, recipe_hash="r", build_id="b")


def sample(qid: str, index: int, text: str, error: str | None = None, finish_reason: str = "stop") -> Sample:
    return Sample(sample_id=f"{qid}-{index}", question_id=qid, sample_index=index, text=text,
                  finish_reason=finish_reason, prompt_tokens=1, completion_tokens=1, error=error, backend="test",
                  model="m", model_revision="1", sampling_json="{}", seed=index, prompt_template_hash="h",
                  recipe_hash="r", build_id="b")


def tables(questions: list[Question], samples: list[Sample]) -> tuple[pa.Table, pa.Table]:
    return to_table(samples, Sample), to_table(questions, Question)
