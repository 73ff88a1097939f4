"""Optional LLM judge per PRM step: its yes/no per step and its agreement with the Monte-Carlo hard labels."""

import re

import polars as pl
import pytest

from cotforge.schemas.config_views import PrmJudgeConfig, PrmViewConfig
from cotforge.tasks.generate.base import Completion
from cotforge.tasks.generate.simulated import SimulatedGenerator
from cotforge.tasks.label.step_judge import judge_agreement, parse_yes_no
from cotforge.tasks.label.steps import label_steps
from cotforge.tasks.views.builders import build_prm
from tests.views_support import simulated_joined

_ARITHMETIC = re.compile(r"^(-?\d+)\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a // b}


class RuleStepJudge:
    """A deterministic step judge implementing the Generator protocol: it reads the step and the previous steps from
    the prompt and checks their arithmetic. `strict` judges a step wrong when any step up to it is wrong (the
    question's wording, "correct given the previous ones"); otherwise only the step's own arithmetic counts.
    `mumble_on` makes it answer without yes/no for steps containing that text."""

    backend, model, revision = "rule-step-judge", "arithmetic", "1"

    def __init__(self, strict: bool = True, mumble_on: str | None = None):
        self.strict, self.mumble_on = strict, mumble_on
        self.calls: list[list] = []

    @staticmethod
    def _right(step: str, previous_result: int | None) -> tuple[bool, int | None]:
        found = _ARITHMETIC.match(step)
        if found:
            a, op, b, c = int(found[1]), found[2], int(found[3]), int(found[4])
            return _OPS[op](a, b) == c, c
        answer = re.search(r"answer is (-?\d+)", step)
        return (answer is not None and int(answer[1]) == previous_result), previous_result

    def generate(self, requests):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            prompt = r.messages[-1]["content"]
            previous = re.findall(r"^Step \d+: (.*)$", prompt.split("Step to check:")[0], re.M)
            step = re.search(r"Step to check:\nStep \d+: (.*)\n", prompt)[1]
            result, ok_before = None, True
            for p in previous:
                ok, result = self._right(p, result)
                ok_before = ok_before and ok
            ok, _ = self._right(step, result)
            good = ok and (ok_before or not self.strict)
            text = "Hmm, hard to say." if self.mumble_on and self.mumble_on in step else \
                f"{'Yes' if good else 'No'}, the arithmetic {'holds' if good else 'is off'}."
            out.append(Completion(r.request_id, 0, text, "stop", 10, 5))
        return out

    def close(self):
        pass


JUDGE_ON = PrmJudgeConfig(enabled=True)


@pytest.fixture(scope="module")
def joined():
    return simulated_joined(n=12, difficulty=3, samples=4, seed=21)


def _labels(frame, generation, judge, **config):
    config = PrmViewConfig(judge=JUDGE_ON, max_samples_per_question=4, **config)
    return pl.from_arrow(label_steps(frame, SimulatedGenerator(0.15, 0.05), config, generation, 21, "r", "b",
                                     judge=judge)).filter(pl.col("status") == "labelled")


def test_parse_yes_no_and_agreement():
    assert parse_yes_no("Yes, it follows.") is True and parse_yes_no("no - 3 * 4 is 12") is False
    assert parse_yes_no("The step is fine") is None and parse_yes_no("") is None
    assert parse_yes_no("Nope. yes") is True  # "nope" is not a standalone no
    assert judge_agreement([True, False, None], [True, True, False]) == 0.5
    assert judge_agreement([None, None], [True, False]) is None


def test_strict_judge_finds_the_known_first_error_in_one_batched_call(joined):
    """On ground-truth labels (the simulated solver's known first error) a judge that checks each step given the
    previous ones says yes before the first error and no from it on: full agreement on every sample that has an
    answer line (format failures, with no wrong step, are excluded: the truth puts their error on the last line)."""
    frame, generation = joined
    judge = RuleStepJudge(strict=True)
    rows = _labels(frame, generation, judge, label_method="simulated_ground_truth")
    assert len(judge.calls) == 1 and len(judge.calls[0]) == sum(len(s) for s in rows["steps"])
    truth = dict(zip(frame["sample_id"], frame["first_error_step"]))
    checked = 0
    for row in rows.iter_rows(named=True):
        assert row["judge_model"] == "rule-step-judge/arithmetic" and len(row["judge_replies"]) == len(row["steps"])
        if not row["steps"][-1].startswith("The answer is"):
            continue
        first = truth[row["sample_id"]]
        assert row["judge_step_labels"] == [first is None or i < first for i in range(len(row["steps"]))]
        assert row["judge_agreement"] == 1.0
        checked += 1
    assert checked >= 30 and any(truth[s] is not None for s in rows["sample_id"])


def test_lenient_judge_agreement_with_mc_labels_is_the_expected_share(joined):
    """A judge that checks only each step's own arithmetic says no at the first error and yes after it (the later
    steps compute right from the wrong value), so with labels false from the first error on it agrees on
    (first + 1) of the K steps; the MC labels are compared the same way, step by step."""
    frame, generation = joined
    rows = _labels(frame, generation, RuleStepJudge(strict=False), rollouts=4)
    truth = dict(zip(frame["sample_id"], frame["first_error_step"]))
    wrong = 0
    for row in rows.iter_rows(named=True):
        first, k = truth[row["sample_id"]], len(row["steps"])
        if first is None or not row["steps"][-1].startswith("The answer is"):
            continue
        assert row["judge_step_labels"] == [i != first for i in range(k)]
        expected = sum(j == h for j, h in zip(row["judge_step_labels"], row["labels"])) / k
        assert row["judge_agreement"] == pytest.approx(expected)
        if row["labels"] == [i < first for i in range(k)]:  # MC found the first error exactly (most samples)
            assert row["judge_agreement"] == pytest.approx((first + 1) / k)
            wrong += 1
    assert wrong >= 5


def test_unparseable_replies_are_none_and_kept_raw(joined):
    frame, generation = joined
    rows = _labels(frame, generation, RuleStepJudge(mumble_on="The answer is"),
                   label_method="simulated_ground_truth")
    for row in rows.iter_rows(named=True):
        last = len(row["steps"]) - 1
        if row["steps"][last].startswith("The answer is"):
            assert row["judge_step_labels"][last] is None and row["judge_replies"][last] == "Hmm, hard to say."
            assert all(x is not None for x in row["judge_step_labels"][:last])
            # The undecided step is left out of the agreement's denominator.
            assert row["judge_agreement"] == judge_agreement(row["judge_step_labels"][:last], row["labels"][:last])


def test_backend_failure_leaves_the_labels_and_nulls_the_judge(joined):
    class Broken(RuleStepJudge):
        def generate(self, requests):
            raise RuntimeError("judge server down")

    frame, generation = joined
    rows = _labels(frame, generation, Broken(), label_method="simulated_ground_truth")
    assert rows.height > 0 and rows["judge_agreement"].null_count() == rows.height
    row = rows.row(0, named=True)
    assert set(row["judge_step_labels"]) == {None} and "judge server down" in row["judge_replies"][0]


def test_judge_off_leaves_the_columns_null(joined):
    frame, generation = joined
    judge = RuleStepJudge()
    config = PrmViewConfig(label_method="simulated_ground_truth")  # judge disabled by default
    labels = pl.from_arrow(label_steps(frame, None, config, generation, 21, "r", "b", judge=judge))
    assert not judge.calls
    prm = pl.from_arrow(build_prm(frame, labels))
    assert prm.height > 0
    for column in ("judge_step_labels", "judge_agreement", "judge_model"):
        assert prm[column].null_count() == prm.height
    # Turned on, the same view carries them.
    on = pl.from_arrow(build_prm(frame, _labels(frame, generation, judge, label_method="simulated_ground_truth")))
    assert on["judge_agreement"].null_count() == 0 and set(on["judge_model"]) == {"rule-step-judge/arithmetic"}


def test_judged_labels_are_cached_with_the_shard(tmp_path):
    """The judge runs inside the step-labels stage: its columns are written with the shard, a resume does not ask it
    again, and turning it on re-makes the shard (the judge config is part of the key)."""
    from cotforge.schemas.config_verify import VerifyConfig
    from cotforge.tasks.core.context import BuildContext
    from cotforge.tasks.core.join import RecordRefs
    from cotforge.tasks.core.shards import ShardStore
    from cotforge.tasks.label.steps import label_steps_shard
    from tests.views_support import simulated_records

    records = simulated_records(n=6, difficulty=2, samples=2, seed=4)
    store = ShardStore(str(tmp_path))
    refs = {name: store.write(name, f"k-{name}", records[name].to_arrow())
            for name in ("questions", "samples", "verdicts", "votes", "dedup")}
    judge = RuleStepJudge()

    def run(config):
        return label_steps_shard.fn(BuildContext(store, "r", seed=4), RecordRefs(*([refs[name]] for name in (
            "questions", "samples", "verdicts", "votes", "dedup"))), SimulatedGenerator(0.15, 0.05), config,
            records["generation"], VerifyConfig(), None, judge)

    off = run(PrmViewConfig(rollouts=2))
    assert not judge.calls and pl.from_arrow(store.read(off))["judge_agreement"].null_count() == off.rows
    on = run(PrmViewConfig(rollouts=2, judge=JUDGE_ON))
    assert on.key != off.key and len(judge.calls) == 1
    table = pl.from_arrow(store.read(on)).filter(pl.col("status") == "labelled")
    assert table.height > 0 and table["judge_agreement"].null_count() == 0
    assert run(PrmViewConfig(rollouts=2, judge=JUDGE_ON)) == on and len(judge.calls) == 1  # resumed, not re-judged


def test_prm_consensus_keeps_only_rows_where_judge_and_rollouts_agree(joined):
    """Noisy MC labels (one rollout per prefix) against the strict judge, which finds the true first error: in
    consensus mode the view keeps exactly the agreeing rows, every other labelled row stays in the stage with the
    reason (never silently dropped) and is flagged, and the kept rows find the true first error more often."""
    from cotforge.tasks.label.summary import labelling_rules, labelling_summary

    frame, generation = joined
    config = PrmViewConfig(judge=PrmJudgeConfig(enabled=True, mode="consensus"), max_samples_per_question=4,
                           rollouts=1, label_method="mc_rollout")
    stage = pl.from_arrow(label_steps(frame, SimulatedGenerator(0.15, 0.05), config, generation, 21, "r", "b",
                                      judge=RuleStepJudge(strict=True)))
    labelled = stage.filter(pl.col("status") == "labelled")
    agree = labelled.filter(pl.col("consensus") == True)  # noqa: E712
    disagree = labelled.filter(pl.col("consensus") == False)  # noqa: E712
    assert agree.height >= 20 and disagree.height >= 3
    assert (agree["judge_first_error_step"].eq_missing(agree["first_error_step"])).all()
    for row in disagree.iter_rows(named=True):
        assert row["consensus_reason"].startswith("judge_disagrees (judge ") and "judge_disagrees" in \
            row["uncertain_reasons"] and row["label_status"] == "uncertain"
        assert row["judge_first_error_step"] != row["first_error_step"]
    undecided = labelled.filter(pl.col("consensus").is_null())
    assert set(undecided["consensus_reason"]) <= {"judge_undecided"}
    view = pl.from_arrow(build_prm(frame, stage, config))
    assert set(view["sample_id"]) == set(agree["sample_id"]) & set(view["sample_id"]) and view.height > 0
    assert view["consensus"].all()
    annotated = pl.from_arrow(build_prm(frame, stage, config.model_copy(
        update={"judge": PrmJudgeConfig(enabled=True, mode="annotate")})))
    assert annotated.height > view.height  # annotate keeps the disagreeing rows too, flagged
    exact = lambda v: v["first_error_step"].eq_missing(v["reference_first_error_step"]).mean()  # noqa: E731
    assert exact(view) > exact(annotated)
    summary = labelling_summary(stage, config)
    assert summary["judge agreement on the first error"] == pytest.approx(agree.height / (agree.height
                                                                                           + disagree.height))
    assert summary["left out of the view by consensus"] == labelled.height - agree.height
    assert "in consensus mode" in " ".join(labelling_rules(summary, config))
