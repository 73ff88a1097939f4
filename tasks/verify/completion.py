"""One completion against one question's gold, under the answer contract: the function a reward function calls.

`verify_completion` runs the build's own cascade (`verify_samples`) on a one-row table, so a reward and a published
verdict never disagree. Hang-prone checks go to the `pool` when one is given (a `VerifierPool`, as the build uses);
without one they run in this process, with no deadline (a reward function that must bound time passes a pool).
"""

from __future__ import annotations

from dataclasses import dataclass

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_verify import VerifyConfig
from cotforge.schemas.records import Question, Sample
from cotforge.tasks.verify.cascade import verify_samples
from cotforge.tasks.verify.pool import run_item


@dataclass(frozen=True)
class CompletionVerdict:
    verdict: bool | None  # True only when the contract holds and the answer is right
    reason: str  # the verifier's reason, or the contract's when it broke
    answer: str | None  # the contract's final answer, normalised
    trainable: bool


class _InProcess:
    """The pool protocol (`run(items, timeout_s)`), running each item here."""

    def run(self, items, timeout_s):
        return [run_item(function, args) for function, args in items]


def verify_completion(completion: str, gold: str | None, verifier: str = "math", answer_type: str = "number",
                      question: str = "", tests: str | None = None, metadata_json: str = "{}",
                      config: VerifyConfig = VerifyConfig(), pool=None) -> CompletionVerdict:
    """Verify one model completion against a question's gold answer (or tests, or reasoning-gym entry in
    `metadata_json`) exactly as a build does: the answer contract, then the question's verifier."""
    q = Question(question_id="q", source="reward", text=question, gold_answer=gold, answer_type=answer_type,
                 verifier=verifier, tests=tests, metadata_json=metadata_json, recipe_hash="", build_id="")
    s = Sample(sample_id="s", question_id="q", sample_index=0, text=completion, finish_reason="stop",
               prompt_tokens=0, completion_tokens=0, error=None, backend="reward", model="", model_revision="",
               sampling_json="{}", seed=0, prompt_template_hash="", recipe_hash="", build_id="")
    row = verify_samples(to_table([s], Sample), to_table([q], Question), "", "", config,
                         pool or _InProcess()).to_pylist()[0]
    return CompletionVerdict(row["verdict"], row["reason"], row["extracted_answer"], row["trainable"])
