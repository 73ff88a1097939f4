"""The verifier cascade: one row per sample, every check kept, failures as reasons."""

import polars as pl
import pytest

from cotforge.schemas.config_verify import FormatConfig, LanguageConfig, LengthConfig, SandboxConfig, VerifyConfig
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardStore, shard_key
from cotforge.tasks.publish.report import verdict_breakdown
from cotforge.tasks.verify.cascade import verify_samples, verify_shard
from cotforge.tasks.verify.pool import VerifierPool
from cotforge.tasks.verify.rules import VERIFIERS, letter_scripts, register_verifier
from tests.verify_helpers import question, sample, tables


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(2) as p:
        yield p


def _by_id(table) -> dict[str, dict]:
    return {r["sample_id"]: r for r in table.to_pylist()}


def test_contract_verifier_names_are_registered():
    assert {"math", "exact", "choice", "regex", "code", "abstain", "judge", "format", "language",
            "length"} <= set(VERIFIERS)


def test_math_cascade_keeps_every_check_and_one_row_per_sample(pool):
    qs = [question("q1", "12"), question("q2", None)]
    ss = [sample("q1", 0, "Step 1: 5 + 7 = 12\nThe answer is 12."),
          sample("q1", 1, "Step 1: 5 + 7 = 13\nThe answer is 13."),
          sample("q1", 2, "I am not sure."),
          sample("q1", 3, "", error="backend down", finish_reason="error"),
          sample("q1", 4, "Half of 24 is \\boxed{\\frac{24}{2}}"),
          sample("q2", 0, "The answer is 4.")]
    out = verify_samples(*tables(qs, ss), "r", "b", VerifyConfig(), pool)
    assert out.num_rows == len(ss)
    rows = _by_id(out)
    assert (rows["q1-0"]["verdict"], rows["q1-0"]["reason"], rows["q1-0"]["extracted_answer"]) == (
        True, "math_equivalent", "12")
    assert (rows["q1-1"]["verdict"], rows["q1-1"]["reason"]) == (False, "math_mismatch")
    assert (rows["q1-2"]["verdict"], rows["q1-2"]["reason"], rows["q1-2"]["extracted_answer"]) == (
        False, "no_answer_found", None)
    assert (rows["q1-3"]["verdict"], rows["q1-3"]["reason"]) == (None, "generation_error")
    assert (rows["q1-4"]["verdict"], rows["q1-4"]["extraction_method"]) == (True, "boxed")
    assert (rows["q2-0"]["verdict"], rows["q2-0"]["reason"]) == (None, "no_gold_answer")
    checks = rows["q1-1"]["checks"]
    assert [c["name"] for c in checks] == ["math", "format", "language", "length"]
    assert all(c["version"] for c in checks)
    assert rows["q1-0"]["verifier_name"] == "math" and rows["q1-0"]["verifier_version"] == VERIFIERS["math"][0]
    assert rows["q1-0"]["n_steps"] == 2 and rows["q1-0"]["scripts"] == "latin"


def test_rule_verifiers_exact_choice_regex_abstain_and_unknown(pool):
    qs = [question("e", "Paris", "exact", "text"), question("c", "B", "choice", "choice"),
          question("r", r"(paris|lyon)", "regex", "text"), question("a", "ABSTAIN", "abstain", "none"),
          question("u", "1", "no_such_verifier")]
    ss = [sample("e", 0, "The answer is paris."), sample("e", 1, "The answer is Rome."),
          sample("c", 0, "Looking at the options, the answer is (B)."), sample("c", 1, "I pick (D)"),
          sample("r", 0, "The answer is Lyon"), sample("r", 1, "The answer is Nice"),
          sample("a", 0, "There is not enough information to answer."), sample("a", 1, "The answer is 7."),
          sample("u", 0, "The answer is 1.")]
    rows = _by_id(verify_samples(*tables(qs, ss), "r", "b", VerifyConfig(), pool))
    got = {k: (v["verdict"], v["reason"]) for k, v in rows.items()}
    assert got == {
        "e-0": (True, "exact_match"), "e-1": (False, "exact_mismatch"),
        "c-0": (True, "choice_match"), "c-1": (False, "choice_mismatch"),
        "r-0": (True, "pattern_matched"), "r-1": (False, "pattern_mismatch"),
        "a-0": (True, "declined"), "a-1": (False, "answered_unanswerable"),
        "u-0": (None, "unknown_verifier:no_such_verifier"),
    }


def test_code_verifier_runs_candidates_in_the_sandbox(pool):
    tests = "assert square(3) == 9\nassert square(-2) == 4\n"
    qs = [question("k", None, "code", "code", tests=tests), question("n", None, "code", "code")]
    ss = [sample("k", 0, "Here:\n```python\ndef square(x):\n    return x * x\n```"),
          sample("k", 1, "```python\ndef square(x):\n    return x + x\n```"),
          sample("k", 2, "```python\ndef square(x):\n    while True:\n        pass\n```\n"),
          sample("k", 3, "I would square it."),
          sample("n", 0, "```python\nprint(1)\n```")]
    config = VerifyConfig(sandbox=SandboxConfig(cpu_s=1, wall_s=4.0))
    rows = _by_id(verify_samples(*tables(qs, ss), "r", "b", config, pool))
    got = {k: (v["verdict"], v["reason"]) for k, v in rows.items()}
    assert got["k-0"] == (True, "tests_passed")
    assert got["k-1"] == (False, "wrong_answer")  # square(-2): 4 == -4 fails; square(3) 6 != 9
    assert got["k-2"][0] is False and got["k-2"][1] in ("cpu_limit", "timeout")
    assert got["k-3"] == (False, "no_code_block")
    assert got["n-0"] == (None, "no_tests")
    counts = {k: (v["tests_passed"], v["tests_total"], v["test_mode"]) for k, v in rows.items()}
    assert counts["k-0"] == (2, 2, "values") and counts["k-1"] == (0, 2, "values")
    assert counts["k-2"] == (0, 2, "values") and counts["k-3"] == (None, None, None)
    assert rows["k-0"]["checks"][0]["version"] == VERIFIERS["code"][0] == "3"


def test_a_verification_past_its_deadline_costs_one_null_verdict(pool):
    """A registered verifier whose pooled check hangs on some items: those rows get None/timeout, the rest decide."""
    def sleepy(items, ctx):
        calls = [("tests.test_verify_pool:hang", (60 if item.answer == "0" else 0,)) for item in items]
        return ctx.pool.run(calls, 1.5)

    register_verifier("test_sleepy", "0")(sleepy)
    try:
        qs = [question("q", "3", verifier="test_sleepy")]
        ss = [sample("q", i, f"The answer is {i}.") for i in range(3)]
        rows = _by_id(verify_samples(*tables(qs, ss), "r", "b", VerifyConfig(), pool))
    finally:
        VERIFIERS.pop("test_sleepy")
    assert [(rows[f"q-{i}"]["verdict"], rows[f"q-{i}"]["reason"]) for i in range(3)] == [
        (None, "timeout"), (True, "woke_up"), (True, "woke_up")]
    assert rows["q-0"]["checks"][0] == {"name": "test_sleepy", "version": "0", "verdict": None, "reason": "timeout"}


def test_structure_gates_veto_only_when_enforced(pool):
    qs = [question("q", "4")]
    ss = [sample("q", 0, "The answer is 2^2. So \\boxed{4}"),  # two final answers, equal but written differently
          sample("q", 1, "答案是 4。The answer is 4."),  # mixed scripts
          sample("q", 2, "Step 1: 2+2=4\nThe answer is 4", finish_reason="length")]
    lenient = _by_id(verify_samples(*tables(qs, ss), "r", "b", VerifyConfig(), pool))
    assert all(v["verdict"] is True for v in lenient.values())
    # Two different final answers are a hedge, whatever the gates: the math verifier itself says no.
    hedge = verify_samples(*tables(qs, [sample("q", 3, "The answer is 5. No wait, \\boxed{4}")]), "r", "b",
                           VerifyConfig(), pool).to_pylist()[0]
    assert (hedge["verdict"], hedge["reason"]) == (False, "hedged_answer")
    formats = {k: next(c for c in v["checks"] if c["name"] == "format")["reason"] for k, v in lenient.items()}
    assert formats["q-0"] == "conflicting_final_answers"
    strict = VerifyConfig(format=FormatConfig(enforce=True),
                          language=LanguageConfig(policy="target_only", target="latin", enforce=True),
                          length=LengthConfig(enforce=True))
    rows = _by_id(verify_samples(*tables(qs, ss), "r", "b", strict, pool))
    assert (rows["q-0"]["verdict"], rows["q-0"]["reason"], rows["q-0"]["verifier_name"]) == (
        False, "format:conflicting_final_answers", "format")
    assert (rows["q-1"]["verdict"], rows["q-1"]["reason"]) == (False, "language:other_script:cjk")
    assert (rows["q-2"]["verdict"], rows["q-2"]["reason"]) == (False, "length:truncated")
    # The answer check itself still says the answer was right: nothing is lost.
    assert all(v["checks"][0]["verdict"] is True for v in rows.values())


def test_weak_rows_are_kept_out_of_training_by_default(pool):
    """Cut off at the token limit, no stated final answer, a fallback extraction: not trainable by default (the
    verdict is left as the answer check said); a recipe may let the first two in, never the fallback."""
    qs = [question("q", "4"), question("a", "ABSTAIN", "abstain", "none")]
    ss = [sample("q", 0, "Step 1: 2+2=4\nThe answer is 4."),
          sample("q", 1, "Step 1: 2+2=4\nThe answer is 4", finish_reason="length"),
          sample("q", 2, "Step 1: 2+2=4\nbut it's still 4", finish_reason="length"),
          sample("q", 3, "Step 1: 2+2=4\nSo we get 4"),
          sample("q", 4, "", error="backend down", finish_reason="error"),
          sample("a", 0, "The question does not say, so it cannot be determined.")]
    rows = _by_id(verify_samples(*tables(qs, ss), "r", "b", VerifyConfig(), pool))
    got = {k: (v["trainable"], v["untrainable_reason"]) for k, v in rows.items()}
    assert got == {"q-0": (True, None), "q-1": (False, "length:truncated"), "q-2": (False, "length:truncated"),
                   "q-3": (False, "format:no_final_answer_statement"), "q-4": (False, "generation_error"),
                   "a-0": (True, None)}
    assert rows["q-1"]["verdict"] is True  # the answer is right; it is only no training example
    opted_out = VerifyConfig(format=FormatConfig(enforce=False), length=LengthConfig(enforce="never"))
    rows = _by_id(verify_samples(*tables(qs, ss), "r", "b", opted_out, pool))
    got = {k: (v["trainable"], v["untrainable_reason"]) for k, v in rows.items()}
    assert got["q-1"] == (True, None)  # the recipe said so
    assert got["q-2"] == got["q-3"] == (False, "fallback:last_number")  # the fallback alone never makes one


def test_language_policies(pool):
    assert letter_scripts("Let θ be the angle; 角度 is angle")["greek"] == 0  # one-letter Greek is notation
    qs = [question("q", "4")]
    ss = [sample("q", 0, "The answer is 4, 因为 two plus two."), sample("q", 1, "Ответ 4, потому что два плюс два")]
    mixed = _by_id(verify_samples(*tables(qs, ss), "r", "b",
                                  VerifyConfig(language=LanguageConfig(policy="mixed_allowed")), pool))
    lang = {k: next(c for c in v["checks"] if c["name"] == "language") for k, v in mixed.items()}
    assert (lang["q-0"]["verdict"], lang["q-0"]["reason"]) == (True, "target_dominant")
    assert (lang["q-1"]["verdict"], lang["q-1"]["reason"]) == (False, "target_share_below_min")
    assert mixed["q-0"]["scripts"] == "latin,cjk"


def test_verify_shard_caches_by_config_and_breakdown_reads_checks(tmp_path, pool):
    store = ShardStore(str(tmp_path))
    samples, questions = tables([question("q", "2")], [sample("q", 0, "The answer is 2."),
                                                       sample("q", 1, "The answer is 3.")])
    s_ref = store.write("samples", shard_key("samples", "x"), samples)
    q_ref = store.write("questions", shard_key("questions", "x"), questions)
    first = verify_shard.fn(BuildContext(store, "r"), s_ref, q_ref, VerifyConfig(), pool)
    again = verify_shard.fn(BuildContext(store, "r"), s_ref, q_ref, VerifyConfig(), pool)
    other = verify_shard.fn(BuildContext(store, "r"), s_ref, q_ref, VerifyConfig(timeout_s=9.0), pool)
    same = verify_shard.fn(BuildContext(store, "r"), s_ref, q_ref, VerifyConfig(workers=1), pool)
    assert first == again == same and other.key != first.key and first.rows == 2
    breakdown = verdict_breakdown(pl.from_arrow(store.read(first)))
    counts = {(b["verifier_name"], b["verdict"], b["reason"]): b["len"] for b in breakdown}
    assert counts[("final:math", "true", "math_equivalent")] == 1
    assert counts[("math", "false", "math_mismatch")] == 1
    assert counts[("length", "true", "within_limits")] == 2


def test_verify_recipe_section_errors_name_the_field():
    from cotforge.schemas.recipe import RecipeError, parse_recipe

    base = {"name": "t", "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 2}]}}
    recipe = parse_recipe({**base, "verify": {"judge": {"generation": {"backend": "simulated"}, "everywhere": True},
                                              "language": {"policy": "target_only", "target": "cyrillic"}}})
    assert recipe.verify.judge.everywhere and recipe.verify.language.target == "cyrillic"
    for bad, field in (({"sandbox": {"cpu_s": 0}}, "verify.sandbox.cpu_s"),
                       ({"judge": {"rubrik": "x"}}, "verify.judge.rubrik"),
                       ({"language": {"policy": "english"}}, "verify.language.policy"),
                       ({"sandbox": {"network": "off"}}, "verify.sandbox.network"),
                       ({"sandbox": {"isolation": "audit_hook"}}, "verify.sandbox.isolation"),
                       ({"format": {"enforce": "sometimes"}}, "verify.format.enforce")):
        with pytest.raises(RecipeError, match=field.replace(".", r"\.")):
            parse_recipe({**base, "verify": bad})


def test_empty_shards_and_orphan_samples_still_get_rows(pool):
    empty = verify_samples(*tables([question("q", "1")], []), "r", "b", VerifyConfig(), pool)
    assert empty.num_rows == 0 and "checks" in empty.column_names
    orphan = verify_samples(*tables([question("q", "1")], [sample("missing", 0, "The answer is 1.")]), "r", "b",
                            VerifyConfig(), pool).to_pylist()
    assert [(r["verdict"], r["reason"]) for r in orphan] == [(None, "question_missing")]


def test_code_without_isolation_is_not_run_and_the_card_says_so(monkeypatch):
    """No bwrap for the pool's workers: code verdicts are null (`no_isolation`), counted, and stated in the card;
    the recipe's explicit opt-out (`isolation: none`) runs them, and the card says that instead."""
    from cotforge.tasks.publish.card import verification_rules
    from cotforge.tasks.publish.report import stage_counts
    from cotforge.tasks.verify.vote import vote_answers

    monkeypatch.setenv("PATH", "/nonexistent-bin")  # the workers started below find no bwrap
    qs = [question("k", None, "code", "code", tests="assert square(3) == 9\n")]
    ss = [sample("k", 0, "```python\ndef square(x):\n    return x * x\n```")]
    samples, questions = tables(qs, ss)
    opt_out = VerifyConfig(sandbox=SandboxConfig(isolation="none"))
    with VerifierPool(1, preload=()) as own:
        refused = verify_samples(samples, questions, "r", "b", VerifyConfig(), own)
        plain = verify_samples(samples, questions, "r", "b", opt_out, own)
    assert [(r["verdict"], r["reason"]) for r in refused.to_pylist()] == [(None, "no_isolation")]
    assert [(r["verdict"], r["reason"]) for r in plain.to_pylist()] == [(True, "tests_passed")]
    q = pl.from_arrow(questions)
    dedup = q.select("question_id", pl.lit(True).alias("keep"), pl.lit(None, pl.String).alias("drop_reason"))
    for verdicts, config, says in ((refused, VerifyConfig(), "1 code samples were not run"),
                                   (plain, opt_out, "Candidate programs ran without isolation")):
        votes = vote_answers(verdicts, questions, config, "m", "r", "b")
        counts = stage_counts(q, pl.from_arrow(samples), pl.from_arrow(verdicts), pl.from_arrow(votes), dedup, {})
        assert counts["code samples not run: no isolation"] == (1 if verdicts is refused else 0)
        assert says in " ".join(verification_rules(config, counts, code_questions=1))


def test_math_verifier_sends_each_distinct_check_once():
    """Samples of a question that give the same answer cost one math-verify call; integers none at all."""
    from cotforge.tasks.verify.pool import run_item

    class CountingPool:
        items: list = []

        def run(self, items, timeouts):
            self.items = self.items + items
            return [run_item(function, args) for function, args in items]

    counting = CountingPool()
    qs = [question("f", "0.5"), question("i", "12")]
    ss = [sample("f", i, "So \\boxed{\\frac{1}{2}}.") for i in range(4)] + [sample("f", 4, "So \\boxed{\\frac{1}{3}}.")]
    ss += [sample("i", i, f"The answer is {11 + i % 2}.") for i in range(4)]
    rows = verify_samples(*tables(qs, ss), "r", "b", VerifyConfig(), counting).to_pylist()
    assert [r["verdict"] for r in rows] == [True] * 4 + [False] + [False, True, False, True]
    assert len(counting.items) == 2  # 1/2 and 1/3 against the gold 0.5; the integers never went to the pool
