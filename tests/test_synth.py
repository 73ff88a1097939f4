"""LLM-synthesised questions: parsing, rule validity, the judge where rules can't tell, solvability by sampling,
verdicts kept on the rows, the shard cache (a re-run calls no model), evolve mode, and the real llama.cpp model."""

from __future__ import annotations

import json
import re
from typing import Sequence

import pytest

from cotforge.schemas.config_questions import QuestionsConfig, SynthSourceConfig, ValidityConfig
from cotforge.tasks.core.shards import ShardStore
from cotforge.tasks.generate.base import Completion, GenerationRequest
from cotforge.tasks.questions.stage import collect_sources
from cotforge.tasks.questions.synth import Generators, synth_candidates_cached
from cotforge.tasks.questions.synth_checks import parse_candidate, parse_judge, rule_validity, solvability


class ScriptedGenerator:
    """A deterministic backend: the reply to a request is picked by a rule on its last message (and index)."""

    backend, model, revision = "scripted", "scripted", "1"

    def __init__(self, reply):
        self.reply = reply
        self.calls = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.calls += 1
        return [Completion(r.request_id, i, self.reply(r.messages[-1]["content"], i), "stop", 1, 1)
                for r in requests for i in range(r.n)]

    def close(self) -> None:
        pass


WRITER_REPLIES = {
    "fractions": ["Question: What is 1/2 + 1/4?\nAnswer: 3/4", "Question: Tom has 3 apples and eats 1. How many are "
                  "left?\nAnswer: 2"],
    "geometry": ["Question: {topic} problem here\nAnswer: 5", "Question: A square has side 4. What is its area?\n"
                 "Answer: 16 or 17"],
    "trains": ["Question: A train travels 60 km in one hour, then 40 km in the next hour. Compute the distance.",
               "Question: A train goes 30 km each hour for 3 hours. What distance does it cover?\nAnswer: 90"],
}


def writer(prompt: str, index: int) -> str:
    topic = re.search(r"about (\w+)", prompt)
    if topic:
        return WRITER_REPLIES[topic.group(1)][index]
    if "harder" in prompt:
        return "Question: Ava has 10 apples, gets 5 more, then gives away 3. How many does she have?\nAnswer: 12"
    return "Question: Ava has 10 apples and gets 5 more. How many does she have?\nAnswer: 15"


def solver(prompt: str, index: int) -> str:
    """Answers right, except the train-distance question on which the samples disagree."""
    answers = {"1/2 + 1/4": ["3/4"] * 4, "eats 1": ["2", "2", "2", "3"], "30 km each hour": ["90", "80", "70", "60"],
               "gets 5 more, then": ["12"] * 4, "gets 5 more.": ["15", "15", "14", "15"],
               "60 km in one hour": ["100"] * 4}
    for key, outs in answers.items():
        if key in prompt:
            return f"Step 1: work it out.\nThe answer is {outs[index]}."
    return "I am not sure."


def judge(prompt: str, index: int) -> str:
    return "VERDICT: YES" if "train" in prompt else "VERDICT: maybe"


def _generators():
    return Generators(ScriptedGenerator(writer), ScriptedGenerator(judge), ScriptedGenerator(solver))


def _source(**kw) -> SynthSourceConfig:
    base = dict(name="t", topics=["fractions", "geometry", "trains"], candidates_per_prompt=2,
                solvability={"samples": 4, "min_agreement": 0.75}, generation={"backend": "simulated"})
    return SynthSourceConfig(**(base | kw))


def test_parse_candidate_forms():
    assert parse_candidate("Question: What is 2+2?\nAnswer: 4") == ("What is 2+2?", "4")
    assert parse_candidate("**Question:** Find x.\n**Answer:** 3")[1] == "3"
    assert parse_candidate("What is 3+3?") == ("What is 3+3?", None)
    assert parse_candidate("   ") == (None, None)


def test_rule_validity_decides_clear_cases_and_leaves_the_rest():
    cfg = ValidityConfig()
    assert rule_validity("What is 12 times 3?", "36", "number", cfg) == (True, "well_formed")
    assert rule_validity(None, "3", "number", cfg) == (False, "no_question_found")
    assert rule_validity("Hi?", "3", "number", cfg)[1] == "too_short"
    assert rule_validity("Solve the {topic} problem about sums.", "3", "number", cfg)[1] == "unfilled_placeholder"
    assert rule_validity("What is 2 plus 2 in base ten?", "4 or 5", "number", cfg)[1] == "several_answers"
    assert rule_validity("What is 2 plus 2 in base ten?", "four", "number", cfg)[1] == "answer_not_a_number"
    assert rule_validity("A? B? C? D? is it long enough", "4", "number", cfg)[1] == "several_questions"
    assert rule_validity("What is 2 plus 2 in base ten?", None, "number", cfg) == (None, "no_proposed_answer")
    assert rule_validity("Add 2 and 2 in base ten.", "4", "number", cfg) == (None, "not_clearly_a_question")
    assert rule_validity(r"What is \text{half} of \frac{1}{2}?", "1/4", "number", cfg)[0] is True


def test_judge_parse_and_solvability():
    assert parse_judge("Thinking... VERDICT: YES") == (True, "judge_yes")
    assert parse_judge("verdict: no") == (False, "judge_no")
    assert parse_judge("it is fine") == (None, "judge_unparseable")
    assert solvability(["4", "4", "5", None], "4", 0.5) == (True, "samples_agree", 0.5, "4")
    assert solvability(["4", "5", "6", "7"], None, 0.5)[:2] == (False, "samples_disagree")
    assert solvability([None, None], "3", 0.5)[:2] == (False, "no_sample_answered")


def test_synth_verdicts_on_rows_and_cache_prevents_regeneration(tmp_path):
    store = ShardStore(str(tmp_path / "out"))
    gens = _generators()
    candidates = synth_candidates_cached(store, _source(), 0, [], lambda s: gens)
    by_text = {c["text"]: c for c in candidates}
    assert len(candidates) == 6
    ok = by_text["What is 1/2 + 1/4?"]
    assert ok["accepted"] and ok["gold_answer"] == "3/4" and ok["validity_by"] == "rules" and ok["agreement"] == 1.0
    assert by_text["Tom has 3 apples and eats 1. How many are left?"]["accepted"], "3 of 4 samples agree: enough"
    assert by_text["{topic} problem here"]["reject_reason"] == "invalid:unfilled_placeholder"
    assert by_text["A square has side 4. What is its area?"]["reject_reason"] == "invalid:several_answers"
    no_answer = by_text["A train travels 60 km in one hour, then 40 km in the next hour. Compute the distance."]
    assert no_answer["validity_by"] == "judge" and no_answer["validity"] is True and no_answer["accepted"]
    assert no_answer["gold_answer"] == "100", "without a proposed answer the samples' majority becomes gold"
    disagree = by_text["A train goes 30 km each hour for 3 hours. What distance does it cover?"]
    assert disagree["reject_reason"] == "unsolvable:samples_disagree" and disagree["agreement"] == 0.25
    calls = (gens.writer.calls, gens.judge.calls, gens.solver.calls)
    assert calls == (1, 1, 1)

    def no_models(source):
        raise AssertionError("a cached synthesis must not open a model")

    again = synth_candidates_cached(store, _source(), 0, [], no_models)
    assert again == candidates
    changed = synth_candidates_cached(store, _source(candidates_per_prompt=1), 0, [], lambda s: _generators())
    assert len(changed) == 3, "a changed source config is a new cache key"


def test_synth_questions_in_the_mix_with_rejects_and_metadata(tmp_path):
    store = ShardStore(str(tmp_path / "out"))
    config = QuestionsConfig(sources=[_source(n=2)])
    collected = collect_sources(config, 0, "r", "b", store, open_generators=lambda s: _generators())
    assert [q.text for q in collected.questions] == ["What is 1/2 + 1/4?",
                                                    "Tom has 3 apples and eats 1. How many are left?"]
    meta = json.loads(collected.questions[0].metadata_json)["synth"]
    assert meta["validity"] is True and meta["solvable"] is True and meta["solve_answers"] == ["3/4"] * 4
    assert all(q.source == "synth:t" and q.verifier == "math" for q in collected.questions)
    reasons = sorted(r.reason for r in collected.rejected)
    assert reasons == ["synth_invalid:several_answers", "synth_invalid:unfilled_placeholder", "synth_over_count",
                       "synth_unsolvable:samples_disagree"]


def test_synth_evolve_from_family_harder_and_easier(tmp_path):
    source = SynthSourceConfig(name="evo", mode="evolve", from_family={"family": "arithmetic", "n": 1},
                               generation={"backend": "simulated"}, candidates_per_prompt=1,
                               solvability={"samples": 4, "min_agreement": 0.75})
    collected = collect_sources(QuestionsConfig(sources=[source]), 0, "r", "b", ShardStore(str(tmp_path)),
                                open_generators=lambda s: _generators())
    directions = {json.loads(q.metadata_json)["synth"]["direction"]: q for q in collected.questions}
    assert set(directions) == {"harder", "easier"}
    assert directions["harder"].gold_answer == "12" and directions["easier"].gold_answer == "15"
    assert json.loads(directions["harder"].metadata_json)["synth"]["parent_question_id"]


def test_synth_recipe_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs `topics`"):
        SynthSourceConfig(name="x")
    with pytest.raises(ValueError, match="exactly one of `from_seed` or `from_family`"):
        SynthSourceConfig(name="x", mode="evolve")


@pytest.mark.slow
def test_synth_with_real_llamacpp_model(tmp_path):
    """SmolLM2-135M writes, judges and solves two tiny prompts; whatever it writes, every candidate carries its
    verdicts and a re-run reads the cache instead of the model."""
    from cotforge.tasks.generate.llamacpp import LlamaCppGenerator, default_model_path

    model = LlamaCppGenerator(default_model_path(), n_ctx=1024, n_threads=2)
    try:
        source = SynthSourceConfig(
            name="llm", topics=["adding two small numbers"], candidates_per_prompt=2,
            sampling={"temperature": 0.7, "max_tokens": 48},
            solvability={"samples": 2, "min_agreement": 0.5, "sampling": {"temperature": 0.7, "max_tokens": 48}})
        store = ShardStore(str(tmp_path / "out"))
        gens = Generators(model, model, model)
        candidates = synth_candidates_cached(store, source, 0, [], lambda s: gens)
        assert len(candidates) == 2
        for c in candidates:
            assert c["raw"] and c["writer_model"].startswith("llamacpp")
            assert c["validity_by"] in ("rules", "judge") and c["validity_reason"]
            assert c["accepted"] == (c["reject_reason"] is None)
            if c["validity"]:
                assert len(c["solve_answers"]) == 2 and c["solvability_reason"] != "not_checked"
        again = synth_candidates_cached(store, source, 0, [], lambda s: pytest.fail("cache miss"))
        assert again == candidates
    finally:
        model.close()
