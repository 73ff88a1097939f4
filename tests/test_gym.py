"""reasoning-gym as a question source and its scorer as the `reasoning_gym` verifier (extra `cotforge[gym]`)."""

from __future__ import annotations

import json

import pytest

from cotforge.schemas.recipe import parse_recipe
from tests.conftest import missing_component, require_module

try:
    import reasoning_gym  # noqa: F401
except ImportError as error:  # the optional extra: scripts/test.sh installs it
    missing_component(f"reasoning-gym is not installed ({error}): pip install 'cotforge[gym]'", module=True)

from cotforge.schemas.config_questions import QuestionsConfig, ReasoningGymSourceConfig  # noqa: E402
from cotforge.tasks.questions import gym  # noqa: E402
from cotforge.tasks.questions.stage import collect_sources  # noqa: E402
from cotforge.tasks.verify import gym_check  # noqa: E402
from cotforge.tasks.verify.pool import VerifierPool  # noqa: E402
from cotforge.tasks.verify.rules import VERIFIERS, VerifyContext, VerifyItem  # noqa: E402
from cotforge.schemas.config_verify import VerifyConfig  # noqa: E402


def _source(**kw) -> ReasoningGymSourceConfig:
    return ReasoningGymSourceConfig(**{"kind": "reasoning_gym", "n": 5, **kw})


def test_gym_source_config_rules():
    with pytest.raises(ValueError, match="exactly one of `n`"):
        ReasoningGymSourceConfig(task="chain_sum")
    with pytest.raises(ValueError, match="may not set `seed`"):
        _source(task="chain_sum", config={"seed": 3})
    mix = QuestionsConfig(total=10, sources=[_source(task="chain_sum", n=None, weight=3),
                                             _source(task="leg_counting", n=None, weight=2)])
    assert mix.source_counts() == [6, 4]
    assert _source(task="chain_sum", name="sums").tag == "reasoning_gym:sums"


def test_gym_tasks_mix_with_the_own_families_by_weight():
    mix = QuestionsConfig(total=12, sources=[{"kind": "family", "family": "arithmetic", "weight": 1},
                                             {"kind": "reasoning_gym", "task": "gcd", "weight": 1},
                                             {"kind": "reasoning_gym", "task": "letter_counting", "weight": 1}])
    collected = collect_sources(mix, 3, "h", "b")
    sources = [q.source for q in collected.questions]
    assert {s: sources.count(s) for s in set(sources)} == {
        "family:arithmetic": 4, "reasoning_gym:gcd": 4, "reasoning_gym:letter_counting": 4}
    assert {q.verifier for q in collected.questions if q.source.startswith("reasoning_gym")} == {"reasoning_gym"}


def test_gym_item_seeds_are_hashes_so_builds_never_share_items():
    config = gym.effective_config("chain_sum", {}, None)
    seeds = [gym.item_seed("chain_sum", config, 7, i) for i in range(50)]
    assert len(set(seeds)) == 50
    # reasoning-gym makes item i from seed + i: hashed seeds are far apart, never a neighbour's range.
    assert min(abs(a - b) for k, a in enumerate(seeds) for b in seeds[k + 1:]) > 10**6
    first, _ = gym.gym_questions(_source(task="chain_sum", n=30), 30, 7, "h", "b")
    again, _ = gym.gym_questions(_source(task="chain_sum", n=30), 30, 7, "h2", "b2")
    reseeded, _ = gym.gym_questions(_source(task="chain_sum", n=30), 30, 8, "h", "b")
    assert [q.question_id for q in first] == [q.question_id for q in again]  # deterministic
    assert not {q.question_id for q in first} & {q.question_id for q in reseeded}
    # A consecutive-seed scheme (seed, seed + 1, ...) would share 29 of 30 items between recipe seeds 7 and 8.
    import reasoning_gym

    consecutive = [reasoning_gym.create_dataset("chain_sum", size=30, seed=s) for s in (7, 8)]
    assert len({e["question"] for e in consecutive[0]} & {e["question"] for e in consecutive[1]}) >= 29


def test_gym_level_sets_the_curriculum_and_config_wins():
    easy = gym.effective_config("chain_sum", {}, 0)
    hard = gym.effective_config("chain_sum", {}, 3)
    assert easy != hard and hard["max_terms"] > easy["max_terms"]
    pinned = gym.effective_config("chain_sum", {"max_terms": 2, "min_terms": 2}, 3)
    assert pinned["max_terms"] == 2 and pinned["max_digits"] == hard["max_digits"]
    questions, _ = gym.gym_questions(_source(task="chain_sum", level=3), 5, 1, "h", "b")
    assert {q.difficulty for q in questions} == {3}
    with pytest.raises(ValueError, match="unknown reasoning-gym task"):
        gym.effective_config("no_such_task", {}, None)


def test_gym_rows_keep_the_entry_and_items_the_scorer_rejects_are_rows(monkeypatch):
    questions, rejected = gym.gym_questions(_source(task="word_sorting", config={"min_words": 3, "max_words": 4}),
                                            5, 3, "h", "b")
    spec = json.loads(questions[0].metadata_json)["reasoning_gym"]
    assert spec["task"] == "word_sorting" and spec["version"] == "0.1.25" and rejected == []
    assert spec["entry"]["question"] == questions[0].text and spec["entry"]["answer"] == questions[0].gold_answer
    assert questions[0].verifier == "reasoning_gym" and questions[0].source == "reasoning_gym:word_sorting"
    # A task whose scorer does not give its own gold a full score: every item is a rejected row with the score.
    monkeypatch.setattr(gym, "scorer", lambda task, config: (lambda answer, entry: 0.5))
    with pytest.raises(ValueError, match="only 0 distinct questions"):
        gym.gym_questions(_source(task="gcd", n=2), 2, 3, "h", "b")
    monkeypatch.setattr(gym, "MAX_TRIES_PER_ITEM", 2)
    collected = []
    monkeypatch.setattr(gym, "RejectedQuestion", lambda **kw: collected.append(kw) or kw)
    with pytest.raises(ValueError):
        gym.gym_questions(_source(task="gcd", n=2), 2, 3, "h", "b")
    assert len(collected) == 4 and {c["reason"] for c in collected} == {"gym_gold_not_accepted:0.5"}


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(1) as p:
        yield p


def _verify(pool, spec: dict, texts: list[str]) -> list[tuple]:
    items = [VerifyItem(None, "text", spec["entry"]["answer"], t, None, "stop", "reasoning_gym",
                        metadata_json=json.dumps({"reasoning_gym": spec})) for t in texts]
    return [r[:2] for r in VERIFIERS["reasoning_gym"][1](items, VerifyContext(VerifyConfig(), pool))]


def _spec(task: str, config: dict | None = None, index: int = 0) -> dict:
    questions, _ = gym.gym_questions(_source(task=task, config=config or {}), index + 1, 5, "h", "b")
    return json.loads(questions[index].metadata_json)["reasoning_gym"]


def test_gym_verifier_accepts_the_stated_answer_in_every_convention(pool):
    spec = _spec("chain_sum")
    gold = spec["entry"]["answer"]
    results = _verify(pool, spec, [f"Add them up.\n<answer>{gold}</answer>", f"Add them.\nThe answer is {gold}.",
                                   f"So $\\boxed{{{gold}}}$", f"<think>adding</think>\n<answer>{gold}</answer>",
                                   f"<answer>{gold}</answer>\nThe answer is {gold}."])
    assert results == [(True, "score=1.0")] * 5


def test_gym_verifier_adversarial_answers_are_not_verified(pool):
    spec = _spec("chain_sum")
    gold = spec["entry"]["answer"]
    wrong = str(int(gold) + 1)
    cases = {
        f"<answer>{gold} or {wrong}</answer>": "alternative_in_answer",  # several candidates in one answer
        f"<answer>{gold}</answer> or maybe {wrong}": "text_after_answer",
        f"<answer>{gold}, {wrong}</answer>": "partial_score=",  # a list of candidates: the scorer's partial credit
        f"The answer is {wrong}.\n<answer>{gold}</answer>": "conflicting_answers",
        f"<answer>{wrong}</answer>\nThe answer is {gold}.": "conflicting_answers",  # gold last, wrong before
        f"<think><answer>{gold}</answer></think>\nThe answer is {wrong}": "score=0",  # a draft inside <think>
        f"<think>it is <answer>{gold}</answer></think>\nDone.": "answer_only_in_reasoning",
        f"Adding up gives\n{gold}": "no_answer_found",  # a last line is no stated answer
        f"<answer>{gold}</answer>\nWait, actually it is {wrong}.": "text_after_answer",
        f"<answer>{wrong}</answer>": "score=0",
        "<answer></answer>": "empty_answer",
        "".join(f"<answer>{int(gold) + d}</answer>" for d in range(-30, 1)): "too_many_statements",  # a spray
    }
    results = _verify(pool, spec, list(cases))
    for (text, reason), (verdict, got) in zip(cases.items(), results):
        assert verdict is False and got.startswith(reason), (text, verdict, got)
    # The default scorer gives a partial score to an answer that contains the gold: recorded, never verified.
    legs = _spec("leg_counting")
    (verdict, reason), = _verify(pool, legs, [f"<answer>{legs['entry']['answer']} legs in total</answer>"])
    assert verdict is False and reason.startswith("partial_score=")


def test_gym_verifier_truncated_thinking_and_mixed_conventions_are_not_verified(pool):
    """Answers the adversarial test above does not build: a think block cut off mid-way (the answer only a draft),
    a tag and a box that disagree, two boxes, a retraction after the answer, a candidate per line."""
    spec = _spec("chain_sum")
    gold = spec["entry"]["answer"]
    wrong = str(int(gold) + 1)
    cases = {
        f"<think>so it is <answer>{gold}</answer>": "unclosed_reasoning",  # generation cut off inside <think>
        f"<think>so\nThe answer is {gold}": "unclosed_reasoning",
        f"<answer>{gold}</answer>\n\\boxed{{{wrong}}}": "conflicting_answers",
        f"\\boxed{{{wrong}}}\n<answer>{gold}</answer>": "conflicting_answers",
        f"\\boxed{{{gold}}} \\boxed{{{wrong}}}": "partial_score=",
        f"<answer>{gold}</answer>\nNo, that's wrong.": "text_after_answer",
        f"<answer>{gold}\n{wrong}</answer>": "partial_score=",
        f"<answer>{gold} OR {wrong}</answer>": "alternative_in_answer",
    }
    results = _verify(pool, spec, list(cases))
    for (text, reason), (verdict, got) in zip(cases.items(), results):
        assert verdict is False and got.startswith(reason), (text, verdict, got)
    # gym_reward scores what the model wrote: the gold in an echoed user message earns nothing, and the assistant's
    # messages read as one text (a conflict split across two messages is still a conflict).
    row_spec = json.dumps({"reasoning_gym": spec})
    echoed = [{"role": "user", "content": f"<answer>{gold}</answer>"}, {"role": "assistant", "content": "No idea."}]
    split = [{"role": "assistant", "content": f"<answer>{wrong}</answer>"},
             {"role": "assistant", "content": f"The answer is {gold}."}]
    honest = [{"role": "assistant", "content": f"<answer>{gold}</answer>"}]
    assert gym_check.gym_reward([echoed, split, honest], [row_spec] * 3) == [0.0, 0.0, 1.0]


def test_gym_gold_in_hedge_words_still_rejects_a_retraction_after_the_answer(pool):
    """A gold answer in words a hedge list would catch (a "?") is the scorer's to judge; a retraction, a doubt or an
    alternative after the answer breaks the contract whatever the gold's words: never verified."""
    entry = {"question": "Restore the order of the words: Slavs? the North for The", "metadata": {},
             "answer": "The North for the Slavs?"}
    spec = {"task": "sentence_reordering", "config": gym.effective_config("sentence_reordering", {}, None),
            "entry": entry}
    gold = entry["answer"]
    texts = [f"<answer>{gold}</answer>\nWait, actually that is wrong; it is Slavs the North.",
             f"<answer>{gold}</answer> or maybe The Slavs for the North?", f"<answer>{gold}</answer>\nI'm not sure.",
             f"The answer is {gold}\nHmm, no: scratch that."]
    results = _verify(pool, spec, texts + [f"<answer>{gold}</answer>"])
    assert results == [(False, "text_after_answer")] * len(texts) + [(True, "score=1.0")]
    assert [gym_check.rescore(spec, t, check_entry=False) for t in texts] == [(False, "text_after_answer")] * len(
        texts)


def test_gym_verifier_scorer_semantics_partial_and_lenient(pool):
    words = _spec("word_sorting", {"min_words": 4, "max_words": 4})
    gold = words["entry"]["answer"].split(", ")
    swapped = ", ".join([gold[1], gold[0], *gold[2:]])
    results = _verify(pool, words, [f"<answer>{', '.join(gold)}</answer>", f"<answer>{swapped}</answer>"])
    assert results[0] == (True, "score=1.0")
    assert results[1][0] is False and results[1][1].startswith("partial_score=")
    sums = _spec("chain_sum")
    # The scorer's own leniency (sign, commas, trailing decimals) is its semantics: accepted.
    (verdict, _), = _verify(pool, sums, [f"<answer>{int(sums['entry']['answer']):,}.00</answer>"])
    assert verdict is True


def test_gym_score_out_of_range_errors_and_non_numbers_are_undecided(monkeypatch):
    # spell_backward adds 1/n per matching letter: for 9 letters and junk appended the sum is 1.0000000000000002,
    # which skips its own "-0.2 for extra letters" and would pass a `>= 1` test.
    entry = json.dumps({"question": "Spell this word backward: abcdefghi", "answer": "ihgfedcba", "metadata": {}})
    config = json.dumps(gym.effective_config("spell_backward", {}, None))
    import reasoning_gym

    raw = reasoning_gym.create_dataset("spell_backward", size=1, seed=1).score_answer("ihgfedcbaXYZ",
                                                                                      json.loads(entry))
    assert raw > 1.0  # the scorer bug this guards against
    assert gym_check.score_answer("spell_backward", config, entry, "ihgfedcbaXYZ")[0] is None
    assert gym_check.score_answer("spell_backward", config, entry, "ihgfedcba") == (True, "score=1.0")
    # What the sandboxed scorer can send back besides a number in 0..1 (tests/test_gym_sandbox.py makes real scorers
    # raise and time out there): each is undecided, never accepted.
    for outcome, reason in (((None, "scorer_error:ZeroDivisionError"), "scorer_error:ZeroDivisionError"),
                            ((None, "scorer_timeout"), "scorer_timeout"), ((None, "scorer_returned"), None),
                            ((True, None), "scorer_returned:True"), ((float("nan"), None), "scorer_returned:nan")):
        monkeypatch.setattr(gym_check, "score_in_sandbox", lambda *a, outcome=outcome: [outcome])
        verdict, why = gym_check.score_answer("chain_sum", "{}", entry, "1")
        assert verdict is None and why == (reason or outcome[1])


GYM_RECIPE = {
    "name": "gym-sim", "seed": 5, "shard_size": 8,
    "questions": {"total": 20, "sources": [
        {"kind": "reasoning_gym", "task": "chain_sum", "weight": 2, "level": 0},
        {"kind": "reasoning_gym", "task": "leg_counting", "weight": 1, "level": 1},
        {"kind": "reasoning_gym", "task": "word_sorting", "weight": 1, "config": {"min_words": 3, "max_words": 4}},
        {"kind": "reasoning_gym", "task": "spell_backward", "weight": 1}]},
    "generation": {"backend": "simulated", "samples_per_question": 4, "simulated": {"step_error_rate": 0.3}},
}


@pytest.fixture(scope="module")
def gym_build(tmp_path_factory):
    from cotforge.flows.build import build

    out = tmp_path_factory.mktemp("gym") / "out"
    return out, build(parse_recipe(GYM_RECIPE), out=str(out), version="0.1.0")


def test_gym_build_mixes_tasks_and_verifies_with_their_scorers(gym_build):
    import polars as pl

    from cotforge.tasks.publish.write import read_view

    out, result = gym_build
    counts = result.counts if hasattr(result, "counts") else result["counts"]
    for task in ("chain_sum", "leg_counting", "word_sorting", "spell_backward"):
        assert counts[f"questions from reasoning_gym:{task}"] > 0, task
    generations = read_view(str(out / "0.1.0"), "generations")
    assert set(generations["verifier"]) == {"reasoning_gym"}
    checks = generations.select("correctness_by_verifier").explode("correctness_by_verifier").unnest(
        "correctness_by_verifier").filter(
        pl.col("verifier") == "reasoning_gym")
    assert set(checks["version"]) == {"3+reasoning-gym==0.1.25"}
    reasons = [r for rs in checks["reasons"].to_list() for r in rs]
    assert "score=1.0" in reasons and any(r.startswith(("score=0", "partial_score=")) for r in reasons)
    verdicts = [v for vs in checks["verdicts"].to_list() for v in vs]
    for verdict, reason in zip(verdicts, reasons):  # only a full score verifies
        assert (verdict is True) == (reason == "score=1.0"), (verdict, reason)
    sft = read_view(str(out / "0.1.0"), "sft")
    assert sft.height > 0 and set(sft["source"]) <= set(generations["source"])


def test_gym_published_row_rescores_and_a_tampered_row_is_refused(gym_build):
    datasets = require_module("datasets")
    out, _ = gym_build
    rows = datasets.load_dataset(str(out / "0.1.0"), "generations", split="train")
    assert rows.num_rows > 0 and "generations" in rows.column_names
    rescored = 0
    for row in rows:
        results = gym_check.rescore_row(row)
        assert [v for v, _ in results] == row["correctness"], row["question_id"]  # the published verdicts again
        rescored += len(results)
    assert rescored > 10
    row = dict(rows[0])
    spec = json.loads(row["verifier_spec"])
    spec["reasoning_gym"]["entry"]["answer"] = "0"  # an edited gold answer would make any "0" verified
    row["verifier_spec"] = json.dumps(spec)
    assert gym_check.rescore_row(row)[0][0] is None and gym_check.rescore_row(row)[0][1].startswith("entry_mismatch")
    assert gym_check.rescore(row["verifier_spec"], "<answer>0</answer>", check_entry=False) == (True, "score=1.0")


def test_gym_rlvr_rows_carry_the_entry_and_gym_reward_scores_completions_like_the_verifier(gym_build):
    """The `rlvr` view's `verifier_spec` is what a GRPO reward needs: `gym_reward` gives 1.0 exactly where the build's
    verifier verified, and 0.0 to answers built to collect a reward they do not earn."""
    from cotforge.tasks.publish.write import read_view

    out, _ = gym_build
    rlvr = read_view(str(out / "0.1.0"), "rlvr")
    generations = {r["question_id"]: r for r in read_view(str(out / "0.1.0"), "generations").iter_rows(named=True)}
    assert rlvr.height > 0 and rlvr["verifier_spec"].null_count() == 0
    assert "gym_check.gym_reward" in (out / "0.1.0" / "README.md").read_text()  # the card says how to reward them
    scored = 0
    for row in rlvr.iter_rows(named=True):
        assert row["verifier_spec"] == generations[row["question_id"]]["verifier_spec"]
        texts = generations[row["question_id"]]["generations"]
        completions = [[{"role": "assistant", "content": t}] for t in texts]  # the conversational format
        rewards = gym_check.gym_reward(completions=completions, verifier_spec=[row["verifier_spec"]] * len(texts),
                                       prompts=[row["prompt"]] * len(texts), solution=[row["solution"]] * len(texts))
        assert rewards == [1.0 if v is True else 0.0 for v in generations[row["question_id"]]["correctness"]]
        scored += len(rewards)
        assert 0.0 < sum(rewards) < len(rewards)  # the band: sometimes solved, so both rewards occur
    assert scored >= 4

    spec = json.loads(rlvr["verifier_spec"][0])["reasoning_gym"]
    gold = str(spec["entry"]["answer"])
    tampered = json.loads(rlvr["verifier_spec"][0])
    tampered["reasoning_gym"]["entry"]["answer"] = "0"  # an edited gold answer must not turn "0" into a reward
    cheats = [f"<answer>{gold}</answer>",  # honest, standard format: the reference point
              f"<answer>{gold} or 0</answer>", f"<answer>{gold}</answer> or maybe 0",  # hedges
              f"<answer>0</answer>\nThe answer is {gold}.",  # two final answers
              "".join(f"<answer>{gold}{d}</answer>" for d in range(30)) + f"<answer>{gold}</answer>",  # a spray
              f"<think><answer>{gold}</answer></think>\nNo idea.", f"Working...\n{gold}"]  # inside think; a last line
    rewards = gym_check.gym_reward(completions=cheats, verifier_spec=[rlvr["verifier_spec"][0]] * len(cheats))
    assert rewards == [1.0] + [0.0] * (len(cheats) - 1)
    assert gym_check.gym_reward(completions=["<answer>0</answer>"], verifier_spec=[json.dumps(tampered)]) == [0.0]
    # A row of another kind of question has no entry: no reward from this function (TRL's "not applicable").
    assert gym_check.gym_reward(completions=[f"<answer>{gold}</answer>"], verifier_spec=[None]) == [None]


@pytest.mark.slow
def test_gym_build_with_the_cpu_model(tmp_path):
    """A small real build: SmolLM2-135M (llama.cpp) answers two reasoning-gym tasks, their scorers judge it, and the
    published rows re-score to the same verdicts."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as error:
        missing_component(f"llama-cpp-python (extra cotforge[cpu]): {error}")
    from cotforge.flows.build import build
    from cotforge.tasks.publish.write import read_view

    recipe = parse_recipe({
        "name": "gym-cpu", "seed": 3, "shard_size": 8,
        "questions": {"total": 6, "sources": [{"kind": "reasoning_gym", "task": "chain_sum", "weight": 1, "level": 0},
                                              {"kind": "reasoning_gym", "task": "gcd", "weight": 1}]},
        "generation": {"backend": "llamacpp", "samples_per_question": 2,
                       "system_prompt": "Solve the task. End with the final answer between <answer> and </answer>.",
                       "sampling": {"temperature": 0.7, "max_tokens": 64}},
        "views": {"prm": {"enabled": False}},
    })
    result = build(recipe, out=str(tmp_path / "out"), version="0.1.0")
    assert result.counts["questions from reasoning_gym:chain_sum"] == 3
    generations = read_view(str(tmp_path / "out" / "0.1.0"), "generations")
    assert generations.height > 0 and sum(len(g) for g in generations["generations"].to_list()) > 0
    for row in generations.iter_rows(named=True):
        assert [v for v, _ in gym_check.rescore_row(row)] == row["correctness"]
        own = next(v for v in row["correctness_by_verifier"] if v["verifier"] == "reasoning_gym")
        assert all(r for r in own["reasons"])  # every generation has the scorer's reason (score, hedge, none stated)
