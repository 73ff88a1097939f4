"""Completions against their questions through the build's own verify cascade (`verify_samples`): what an RL reward
function calls, so a reward is the verdict the build gives the same text, under the same answer rules.

A question is described by a `QuestionSpec` dict (what the `rlvr` view and the exports carry): `gold`, `verifier`,
`answer_type`, `tests` and `metadata_json` (a reasoning-gym entry for its scorer). Nothing here re-implements a
verifier: a change to extraction or to the answer contract applies to the rewards as it does to the builds.
"""

from __future__ import annotations

import atexit
import json
from typing import TypedDict

import pyarrow as pa

from cotforge.schemas.config_verify import VerifyConfig
from cotforge.tasks.verify.cascade import verify_samples
from cotforge.tasks.verify.pool import VerifierPool
from cotforge.tasks.verify.rules import Result


class QuestionSpec(TypedDict, total=False):
    question: str  # the question's text: the contract lets a number carry a unit the question names
    gold: str | None
    verifier: str
    answer_type: str
    tests: str | None
    metadata_json: str


_POOL: VerifierPool | None = None


def shared_pool(workers: int = 1) -> VerifierPool:
    """One verifier pool per process, started on first use and closed at exit: a trainer asks for rewards every
    step, and starting workers (math-verify's import) costs seconds."""
    global _POOL
    if _POOL is None:
        _POOL = VerifierPool(workers)
        atexit.register(_POOL.close)
    return _POOL


def verify_completions(texts: list[str], questions: list[QuestionSpec], config: VerifyConfig | None = None,
                       pool: VerifierPool | None = None) -> list[Result]:
    """(verdict, reason) of each text against its question, by the cascade a build runs (LLM judge excepted: a
    verdict only the judge could give is None here)."""
    if len(texts) != len(questions):
        raise ValueError(f"{len(texts)} texts for {len(questions)} questions")
    if not texts:
        return []
    n = len(texts)
    ids = [str(i) for i in range(n)]
    samples = pa.table({"sample_id": ids, "question_id": ids, "text": pa.array(texts, pa.string()),
                        "error": pa.array([None] * n, pa.string()), "finish_reason": ["stop"] * n})
    questions_table = pa.table({
        "question_id": ids, "text": [q.get("question") or "" for q in questions],
        "gold_answer": pa.array([q.get("gold") for q in questions], pa.string()),
        "verifier": [q.get("verifier") or "math" for q in questions],
        "answer_type": [q.get("answer_type") or "number" for q in questions],
        "tests": pa.array([q.get("tests") for q in questions], pa.string()),
        "metadata_json": [q.get("metadata_json") or "{}" for q in questions],
    })
    verdicts = verify_samples(samples, questions_table, "", "", config or VerifyConfig(), pool or shared_pool())
    return [(row["verdict"], row["reason"]) for row in verdicts.select(["verdict", "reason"]).to_pylist()]


def question_spec(solution: str | None, verifier: str, answer_type: str | None = None, tests: str | None = None,
                  verifier_spec: str | None = None, question: str = "") -> QuestionSpec:
    """The spec of an `rlvr` row's question: its solution as the gold answer, its reasoning-gym entry (the row's
    `verifier_spec`) as the metadata the gym scorer reads, and the question's text (units it names)."""
    metadata = json.loads(verifier_spec) if verifier_spec else {}
    return QuestionSpec(question=question, gold=solution, verifier=verifier, answer_type=answer_type or "number",
                        tests=tests, metadata_json=json.dumps(metadata, sort_keys=True))


def completion_reward(text: str, question: QuestionSpec, config: VerifyConfig | None = None) -> float:
    """1.0 where the cascade verifies the text, else 0.0 (wrong, undecided, or no answer under the rules)."""
    return 1.0 if verify_completions([text], [question], config)[0][0] is True else 0.0
