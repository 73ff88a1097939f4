"""Binary search for the first error (and per-step MC) as pure plans over known prefixes, then through `label_steps`
with a solver that never errs while rolling out (so a prefix is good exactly when it holds no wrong step)."""

import math

import polars as pl
import pytest

from cotforge.schemas.config_views import PrmViewConfig
from cotforge.tasks.generate.simulated import SimulatedGenerator
from cotforge.tasks.label.search import PrefixResult, per_step_outcome, per_step_probes, search_outcome, search_probes
from cotforge.tasks.label.segment import segment_lines
from cotforge.tasks.label.steps import label_steps
from cotforge.tasks.label.summary import labelling_markdown, labelling_rules, labelling_summary
from cotforge.tasks.views.builders import build_prm
from tests.views_support import simulated_joined


def drive(n_steps: int, verified: bool, good, m: int = 4, first: int = 2, per_step: bool = False):
    """Run a plan against an oracle: `good(i)` says whether prefix i reaches the answer (every rollout then does)."""
    results: list[PrefixResult | None] = [None] * max(n_steps - 1, 0)
    sent = rounds = 0
    while True:
        probes = (per_step_probes(n_steps, verified, m, results) if per_step
                  else search_probes(n_steps, verified, m, results, first))
        if not probes:
            break
        rounds += 1
        for step, n in probes:
            r = results[step] or PrefixResult()
            r.valid += n
            r.successes += n if good(step) else 0
            results[step] = r
            sent += n
    outcome = (per_step_outcome(n_steps, verified, m, results) if per_step
               else search_outcome(n_steps, verified, m, results, first))
    return outcome, sent, rounds


@pytest.mark.parametrize("n_steps", range(2, 9))
def test_prm_bisection_finds_every_known_first_error(n_steps):
    """First step wrong, last step wrong (every prefix good, the answer wrong), each position between, and every step
    wrong: the first error is exact, labels read as labels, and no more than ceil(log2 K) probes are sent."""
    for error in range(n_steps):  # error = n_steps - 1: only the answer step is wrong
        outcome, sent, rounds = drive(n_steps, False, lambda i: i < error)
        assert outcome.status == "labelled" and outcome.first_error_step == error, (n_steps, error)
        assert outcome.labels == [i < error for i in range(n_steps)] and outcome.uncertain == []
        bad_probes = math.ceil(math.log2(n_steps))
        assert rounds <= 2 * bad_probes and sent <= 4 * bad_probes  # good probes stop after their first 2
        assert outcome.scores[-1] == 0.0 and all(s in (None, 0.0, 1.0) for s in outcome.scores)
    every, _, _ = drive(n_steps, False, lambda i: False)
    assert every.first_error_step == 0 and every.labels == [False] * n_steps


def test_prm_no_error_costs_one_probe_and_a_contradiction_is_flagged():
    outcome, sent, rounds = drive(6, True, lambda i: True)
    assert outcome.first_error_step is None and outcome.labels == [True] * 6 and (sent, rounds) == (2, 1)
    assert outcome.scores == [None, None, None, None, 1.0, 1.0]  # soft scores only where measured
    # Verified, yet the prefix before the answer (and every one from step 2 on) fails: searched, flagged.
    odd, _, _ = drive(6, True, lambda i: i < 2)
    assert odd.first_error_step == 2 and odd.labels == [True, True, False, False, False, False]
    assert odd.uncertain == ["verdict_disagrees"]
    single, sent, _ = drive(1, False, lambda i: True)
    assert single.labels == [False] and sent == 0


def test_prm_first_error_semantics_for_per_step_mc():
    """Per-step MC never labels a step correct after the first wrong one; a later prefix that recovers makes the row
    uncertain instead (today's [F, F, T] rows)."""
    outcome, sent, _ = drive(5, False, lambda i: i in (2, 3), per_step=True)
    assert outcome.labels == [False] * 5 and outcome.first_error_step == 0 and outcome.uncertain == ["non_monotone"]
    assert sent == 4 * 4
    verified, _, _ = drive(4, True, lambda i: i != 1, per_step=True)
    assert verified.labels == [True, False, False, False] and verified.uncertain == ["non_monotone",
                                                                                     "verdict_disagrees"]
    few = per_step_outcome(3, False, 4, [PrefixResult(1, 4), PrefixResult(0, 2, 2)])
    assert few.first_error_step == 1 and few.uncertain == ["few_rollouts"]  # two of the four rollouts were lost
    failed = per_step_outcome(3, False, 4, [PrefixResult(1, 4), PrefixResult(0, 0, 4)])
    assert failed.status == "rollouts_failed" and failed.labels == []


def test_prm_weak_good_bound_is_checked_from_the_left():
    """A single lucky success at prefix 3 (the true first error is 1) would make bisection label steps 0..3 correct;
    the check left of a bound resting on one success finds the error, and flags the row."""
    results: list[PrefixResult | None] = [None] * 7
    truth = {0: True, 1: False, 2: False, 3: "lucky", 4: False, 5: False, 6: False}
    while probes := search_probes(8, False, 4, results, 2):
        for step, n in probes:
            r = results[step] or PrefixResult()
            r.valid += n
            r.successes += 1 if truth[step] == "lucky" and r.successes == 0 else n if truth[step] is True else 0
            results[step] = r
    outcome = search_outcome(8, False, 4, results, 2)
    assert outcome.first_error_step == 1 and outcome.uncertain == ["non_monotone"]
    assert outcome.scores[:5] == [1.0, 0.0, None, 0.5, 0.0]  # the lucky probe stopped after its first 2
    # A bound resting on two successes is trusted: no check to its left.
    truth[3] = True
    results = [None] * 7
    while probes := search_probes(8, False, 4, results, 2):
        for step, n in probes:
            r = results[step] or PrefixResult()
            r.valid += n
            r.successes += n if truth[step] is True else 0
            results[step] = r
    assert search_outcome(8, False, 4, results, 2).first_error_step == 4 and results[1] is None


def test_prm_segmentation_merges_numbered_lists_and_fragments():
    steps, raw = segment_lines("1\nAdd 3 to 5 to get 8.\n2.\nDouble it: 8 * 2 = 16.\n3)\nThe answer is\n16")
    assert steps == ["1 Add 3 to 5 to get 8.", "2. Double it: 8 * 2 = 16.", "3) The answer is 16"]
    assert raw == ["1\nAdd 3 to 5 to get 8.", "2.\nDouble it: 8 * 2 = 16.", "3)\nThe answer is\n16"]
    steps, _ = segment_lines("We have 5 apples and\nthen 3 more, so the total\nis 8.\n---\nStep 2:\nx = 8\ny = x + 1 = 9")
    assert steps == ["We have 5 apples and then 3 more, so the total is 8. ---", "x = 8", "y = x + 1 = 9"]
    assert segment_lines("Step 1: 2 + 3 = 5\nStep 2: 5 * 4 = 20\nThe answer is 20.")[0] == [
        "2 + 3 = 5", "5 * 4 = 20", "The answer is 20."]
    assert segment_lines("1\n2\n3")[0] == ["1 2 3"] and segment_lines("")[0] == []


@pytest.fixture(scope="module")
def wide():
    """Samples of 4 to 6 steps; rollouts by a solver that never errs, so a prefix is good iff it holds no error."""
    frames = [simulated_joined(n=10, difficulty=d, samples=4, seed=40 + d) for d in (3, 4, 5)]
    return pl.concat([f for f, _ in frames], how="vertical_relaxed"), frames[0][1]


def _label(frame, generation, **config):
    config = PrmViewConfig(max_samples_per_question=4, **config)
    labels = pl.from_arrow(label_steps(frame, SimulatedGenerator(0.0, 0.0), config, generation, 5, "r", "b"))
    return labels, pl.from_arrow(build_prm(frame, labels, config))


def test_prm_binary_search_matches_the_known_first_errors_at_a_fraction_of_the_rollouts(wide):
    frame, generation = wide
    mc_labels, mc = _label(frame, generation, label_method="mc_rollout")
    labels, prm = _label(frame, generation, label_method="binary_search")
    positions = set(prm["reference_first_error_step"].to_list())
    assert {None, 0} <= positions and len(positions) >= 5  # first step wrong, later ones, no error
    assert prm["first_error_step"].eq_missing(prm["reference_first_error_step"]).all()
    assert mc["first_error_step"].eq_missing(mc["reference_first_error_step"]).all()
    for row in prm.iter_rows(named=True):  # labels read as labels
        first = row["first_error_step"]
        assert row["labels"] == [first is None or i < first for i in range(len(row["labels"]))]
    # Cost on every row: per-step MC spends m * (K - 1) on each; binary search a fraction of it.
    assert (mc_labels["rollouts"] == mc_labels["mc_equivalent_rollouts"]).all()
    assert labels["rollouts"].sum() * 3 <= mc_labels["rollouts"].sum()
    assert (labels["mc_equivalent_rollouts"] == mc_labels["mc_equivalent_rollouts"]).all()
    summary = labelling_summary(labels, PrmViewConfig(label_method="binary_search"))
    assert summary["rollouts"] == labels["rollouts"].sum() and summary["saving against per-step MC"] > 2 / 3
    assert summary["first errors found"] == prm["first_error_step"].drop_nulls().len()
    report = "\n".join(labelling_markdown(summary))
    assert "| saving against per-step MC |" in report and "| binary_search |" in report
    assert "saving" in labelling_rules(summary, PrmViewConfig(label_method="binary_search"))[0]


def test_prm_cheap_check_spends_one_rollout_on_easy_verified_samples(wide):
    frame, generation = wide
    full, _ = _label(frame, generation, label_method="mc_rollout")
    labels, prm = _label(frame, generation, label_method="mc_rollout", cheap_check_pass_rate=0.5)
    joined = labels.join(frame.select("sample_id", "verdict", "pass_rate"), on="sample_id")
    easy = joined.filter(pl.col("verdict") & (pl.col("pass_rate") >= 0.5) & (pl.col("status") == "labelled"))
    assert easy.height > 0 and set(easy["rollout_rule"]) <= {"cheap_check", "cheap_check_then_full"}
    passed = easy.filter(pl.col("rollout_rule") == "cheap_check")
    assert passed.height > 0 and (passed["rollouts"] == 1).all()
    others = joined.filter(~pl.col("sample_id").is_in(easy["sample_id"].to_list()) & (pl.col("status") == "labelled"))
    assert set(others["rollout_rule"]) == {"per_step"}
    assert labels["rollouts"].sum() < full["rollouts"].sum()
    assert prm["first_error_step"].eq_missing(prm["reference_first_error_step"]).all()
    config = PrmViewConfig(cheap_check_pass_rate=0.5)
    card = " ".join(labelling_rules(labelling_summary(labels, config), config))
    assert f"{passed.height} samples passed the check" in card and "pass rate of at least 0.5" in card


def test_prm_after_first_error_omit_ends_rows_at_the_first_wrong_step(wide):
    frame, generation = wide
    _, prm = _label(frame, generation, label_method="binary_search", after_first_error="omit")
    wrong = prm.filter(pl.col("first_error_step").is_not_null())
    assert wrong.height > 0
    for row in wrong.iter_rows(named=True):
        assert len(row["completions"]) == len(row["labels"]) == row["first_error_step"] + 1
        assert row["labels"][-1] is False and all(row["labels"][:-1]) and row["steps_left_out"] >= 0


def _contradictions(row: dict) -> list[str]:
    """Where a row's labels say the opposite of its own measured scores: a step labelled correct whose prefix no
    rollout finished (score 0), or one labelled wrong whose prefix some rollout finished (score > 0)."""
    out = []
    for i, (label, score) in enumerate(zip(row["labels"], row["step_scores"])):
        if score is not None and label and score == 0:
            out.append(f"step {i}: labelled correct, score 0")
        if score is not None and not label and score > 0:
            out.append(f"step {i}: labelled wrong, score {score}")
    return out


@pytest.mark.parametrize("method", ["mc_rollout", "binary_search"])
def test_prm_labels_never_contradict_their_own_scores(method):
    """Every labelled row of both methods, rolled out by a solver that errs (so a good prefix's rollouts can all
    fail): a step labelled correct was never measured at 0, and a row whose labels go against a measured score is
    never `confident` (it says which doubt). Verified siblings witness shared prefixes in the binary search."""
    frames = [simulated_joined(n=12, difficulty=d, samples=4, seed=70 + d) for d in (3, 4, 5)]
    frame, generation = pl.concat([f for f, _ in frames], how="vertical_relaxed"), frames[0][1]
    config = PrmViewConfig(max_samples_per_question=4, label_method=method, rollouts=2)
    labels = pl.from_arrow(label_steps(frame, SimulatedGenerator(0.3, 0.0), config, generation, 5, "r", "b"))
    rows = labels.filter(pl.col("status") == "labelled").to_dicts()
    assert len(rows) > 60
    for row in rows:
        assert len(row["labels"]) == len(row["step_scores"]) == len(row["steps"]), row["sample_id"]
        assert not any(label and score == 0 for label, score in zip(row["labels"], row["step_scores"])
                       if score is not None), (row["sample_id"], row["labels"], row["step_scores"])
        if _contradictions(row):
            assert row["label_status"] == "uncertain" and row["uncertain_reasons"], (row["labels"],
                                                                                     row["step_scores"])
