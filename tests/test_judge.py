"""The LLM judge: prompt, parsing, where the cascade asks it, and a real llama.cpp backend end to end."""

from __future__ import annotations

import re

import pytest

from cotforge.schemas.config_generation import GenerationConfig, SamplingConfig
from cotforge.schemas.config_verify import JudgeConfig, VerifyConfig
from cotforge.tasks.generate import make_generator
from cotforge.tasks.generate.base import Completion
from cotforge.tasks.verify.cascade import verify_samples
from cotforge.tasks.verify.judge import judge_messages, judge_samples, parse_judgement
from cotforge.tasks.verify.pool import VerifierPool
from tests.verify_helpers import question, sample, tables


class RuleJudge:
    """A deterministic judge backend implementing the Generator protocol: it reads the prompt it is given and
    grades the candidate by whether it states the reference answer (or, without one, whether it shows any step)."""

    backend, model, revision = "rule-judge", "rule-judge", "1"

    def __init__(self, fail_on: str | None = None):
        self.prompts: list[str] = []
        self.fail_on = fail_on

    def generate(self, requests):
        out = []
        for r in requests:
            prompt = r.messages[-1]["content"]
            self.prompts.append(prompt)
            if self.fail_on and self.fail_on in prompt:
                out.append(Completion(r.request_id, 0, "", "error", 0, 0, error="backend unavailable"))
                continue
            gold = re.search(r"<<<REFERENCE-\w+\n(.*)\nREFERENCE-", prompt)
            candidate = prompt.split("Question:", 1)[1].split("\n\n", 1)[1]  # all the judge is shown of the candidate
            good = (gold.group(1) in candidate) if gold else ("Step" in candidate)
            text = f"The candidate {'matches' if good else 'does not match'}.\nSCORE: {9 if good else 2}\n" \
                   f"VERDICT: {'CORRECT' if good else 'INCORRECT'}"
            out.append(Completion(r.request_id, 0, text, "stop", 10, 10))
        return out

    def close(self):
        pass


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(1) as p:
        yield p


def test_parse_judgement_formats():
    assert parse_judgement("Looks fine.\nSCORE: 8\nVERDICT: CORRECT") == (True, "judge_correct", 0.8)
    assert parse_judgement("verdict: incorrect (score 3/10)") == (False, "judge_incorrect", 0.3)
    assert parse_judgement("**Score:** 7/10") == (True, "judge_score_pass", 0.7)
    assert parse_judgement("Score: 2") == (False, "judge_score_fail", 0.2)
    assert parse_judgement("I like turtles") == (None, "judge_unparseable", None)
    assert parse_judgement("SCORE: 45") == (None, "judge_unparseable", None)  # out of range: not a score
    # The template echoed back is no verdict; the score still counts.
    assert parse_judgement("SCORE: 10\nVERDICT: CORRECT or INCORRECT") == (True, "judge_score_pass", 1.0)
    assert parse_judgement("VERDICT: CORRECT or INCORRECT") == (None, "judge_unparseable", None)


def test_judge_prompt_carries_rubric_reference_and_candidate():
    system, user = judge_messages("What is 2+2?", "The answer is 4.", "4", "Be strict about units.", "4",
                                  nonce="n0nce")
    assert "Be strict about units." in system["content"] and "n0nce" in system["content"]
    assert "<<<REFERENCE-n0nce\n4\nREFERENCE-n0nce>>>" in user["content"]
    assert "<<<CANDIDATE-n0nce\nThe answer is 4.\nCANDIDATE-n0nce>>>" in user["content"]
    assert "No reference answer" in judge_messages("q", "c", None, "r")[1]["content"]
    # With a reference and show_rationale off, only the contract's final answer is shown.
    only = judge_messages("q", "Long rationale. The answer is 4.", "4", "r", "4", show_rationale=False)[1]["content"]
    assert "rationale" not in only and "FINAL_ANSWER" in only
    # Each request draws its own nonce: a candidate cannot write the closing marker in advance.
    nonces = {re.search(r"<<<QUESTION-(\w+)", judge_messages("q", "c", None, "r")[1]["content"]).group(1)
              for _ in range(20)}
    assert len(nonces) == 20


def test_judge_runs_only_where_rules_return_null(pool):
    qs = [question("gold", "12"), question("open", None)]
    ss = [sample("gold", 0, "The answer is 12."), sample("gold", 1, "The answer is 13."),
          sample("open", 0, "Step 1: think\nThe answer is 5."), sample("open", 1, "The answer is 5.")]
    judge = RuleJudge()
    config = VerifyConfig(judge=JudgeConfig(rubric="Check the steps."))
    rows = {r["sample_id"]: r for r in verify_samples(*tables(qs, ss), "r", "b", config, pool, judge).to_pylist()}
    assert len(judge.prompts) == 2  # only the two rows math could not decide (no gold answer)
    assert all("Check the steps." not in p for p in judge.prompts)  # the rubric goes in the system message
    assert (rows["gold-0"]["verdict"], rows["gold-0"]["verifier_name"], rows["gold-0"]["judge_score"]) == (
        True, "math", None)
    assert (rows["open-0"]["verdict"], rows["open-0"]["verifier_name"], rows["open-0"]["reason"]) == (
        True, "judge", "judge_correct")
    assert rows["open-0"]["judge_score"] == 0.9 and "VERDICT: CORRECT" in rows["open-0"]["judge_rationale"]
    assert (rows["open-1"]["verdict"], rows["open-1"]["judge_score"]) == (False, 0.2)
    # The rule verifier's null is still on the row.
    assert [(c["name"], c["verdict"], c["reason"]) for c in rows["open-1"]["checks"]][0] == (
        "math", None, "no_gold_answer")
    assert rows["open-1"]["checks"][-1]["name"] == "judge"


def test_judge_everywhere_can_reject_a_right_answer(pool):
    qs = [question("q", "12")]
    ss = [sample("q", 0, "The answer is 12."), sample("q", 1, "Guess: 7. The answer is \\boxed{12}")]

    class Skeptic(RuleJudge):  # rejects answers given as guesses even when they are right
        def generate(self, requests):
            out = super().generate(requests)
            for c, r in zip(out, requests):
                if "Guess" in r.messages[-1]["content"]:
                    c.text = "A guess is not reasoning.\nSCORE: 1\nVERDICT: INCORRECT"
            return out

    config = VerifyConfig(judge=JudgeConfig(everywhere=True))
    rows = {r["sample_id"]: r for r in verify_samples(*tables(qs, ss), "r", "b", config, pool, Skeptic()).to_pylist()}
    assert (rows["q-0"]["verdict"], rows["q-0"]["verifier_name"]) == (True, "math")
    assert (rows["q-1"]["verdict"], rows["q-1"]["reason"], rows["q-1"]["verifier_name"]) == (
        False, "judge_rejected:judge_incorrect", "judge")
    assert rows["q-1"]["checks"][0]["verdict"] is True  # math said right; both judgements are kept


def test_judge_backend_failures_are_null_verdicts():
    config = JudgeConfig()
    rows = [{"sample_id": "a", "question": "q", "text": "fine", "gold_answer": None, "answer": "fine"},
            {"sample_id": "b", "question": "q", "text": "BROKEN", "gold_answer": None, "answer": "BROKEN"}]
    a, b = judge_samples(RuleJudge(fail_on="BROKEN"), rows, config)
    assert a.verdict is False and a.reason == "judge_incorrect"
    assert (b.verdict, b.reason, b.rationale) == (None, "judge_error", "backend unavailable")

    class Exploding(RuleJudge):
        def generate(self, requests):
            raise ConnectionError("server gone")

    assert {j.reason for j in judge_samples(Exploding(), rows, config)} == {"judge_error:ConnectionError"}


@pytest.mark.slow
def test_judge_with_real_smollm2_on_llamacpp(pool):
    """A real model as judge: every judged row keeps the model's output; its verdict is what could be parsed.

    SmolLM2-135M does not follow the output format on its own; the "SCORE:" prefix makes it state a score first.
    (It scores a wrong answer as high as a right one: a judge this small is wiring, not quality.)"""
    generation = GenerationConfig(backend="llamacpp", sampling=SamplingConfig(temperature=0.0, max_tokens=24))
    config = VerifyConfig(judge=JudgeConfig(generation=generation, assistant_prefix="SCORE:"))
    qs = [question("open", None, text="What is 2 + 3?")]
    ss = [sample("open", 0, "Step 1: 2 + 3 = 5\nThe answer is 5."), sample("open", 1, "The answer is 9.")]
    judge = make_generator(generation)
    try:
        rows = verify_samples(*tables(qs, ss), "r", "b", config, pool, judge).to_pylist()
    finally:
        judge.close()
    for row in rows:
        assert row["judge_rationale"]  # the model said something, and it is kept
        judge_check = row["checks"][-1]
        assert judge_check["name"] == "judge"
        parsed = parse_judgement(row["judge_rationale"])
        assert (judge_check["verdict"], judge_check["reason"]) == parsed[:2]
        assert row["verdict"] == judge_check["verdict"]  # math could not decide: the judge's word is final
        assert row["judge_rationale"].startswith("SCORE:") and row["judge_score"] is not None
        assert judge_check["verdict"] is not None
