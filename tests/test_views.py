"""View builders on stage records made by the real kernels (simulated solver): what each view selects and writes."""

import polars as pl
import pytest

from cotforge.schemas.config_views import (
    CalibrationViewConfig,
    PreferenceViewConfig,
    RlvrViewConfig,
    SftViewConfig,
    UnpairedViewConfig,
    ViewsConfig,
)
from cotforge.schemas.views import VIEWS
from cotforge.tasks.views.builders import (
    build_calibration,
    build_preference,
    build_rlvr,
    build_sft,
    build_unpaired,
    render_assistant,
    split_reasoning,
    view_builders,
)
from tests.views_support import simulated_joined


@pytest.fixture(scope="module")
def joined():
    frame, generation = simulated_joined(n=30, difficulty=3, samples=6, seed=9, step_error_rate=0.12)
    return frame, generation


def test_split_reasoning_keeps_the_answer_line_apart():
    text = "Step 1: 2 + 3 = 5\nStep 2: 5 * 2 = 10\nThe answer is 10."
    assert split_reasoning(text) == ("Step 1: 2 + 3 = 5\nStep 2: 5 * 2 = 10", "The answer is 10.")
    assert split_reasoning("x = \\boxed{7}") == ("", "x = \\boxed{7}")
    rendered = render_assistant("r1\nr2", "The answer is 3.", "think_tags")
    assert rendered == "<think>\nr1\nr2\n</think>\n\nThe answer is 3."
    assert render_assistant("r1", "The answer is 3.", "plain") == "r1\nThe answer is 3."


def _words(text: str) -> list[str]:
    return text.replace("<think>", " ").replace("</think>", " ").split()


@pytest.mark.parametrize("text", [
    "2 + 3 = 5\n5 * 2 = 10",  # no answer line: nothing is made up
    "Step 1: 4 + 4 = 8\nbut it's still",  # cut off at the token limit
    "The answer is 8.\nActually, let me double-check: 4 + 4 = 8.",  # the answer line is not the last line
    "Plan: loop.\n```python\ndef f(x):\n    return x\n```\nThat is all.",  # code: the final part is the block
    "<think>\nhmm, 2 + 2\n</think>\nThe answer is 4.",  # the model's own think tags are not doubled
])
def test_views_render_the_models_own_words(text):
    """Rendering only splits the text: the words of the assistant turn are the sample's, none added or lost."""
    for fmt in ("think_tags", "plain"):
        reasoning, final = split_reasoning(text)
        assert _words(render_assistant(reasoning, final, fmt)) == _words(text)
    assert "The answer is" not in split_reasoning("2 + 3 = 5\n5 * 2 = 10")[1]
    code_final = split_reasoning("Plan: loop.\n```python\ndef f(x):\n    return x\n```\nThat is all.")[1]
    assert code_final.startswith("```python")


def test_sft_strict_and_lenient(joined):
    frame, generation = joined
    strict = pl.from_arrow(build_sft(frame, SftViewConfig(keep="verified"), generation.system_prompt))
    lenient = pl.from_arrow(build_sft(frame, SftViewConfig(keep="majority", reasoning_format="plain"),
                                      generation.system_prompt))
    usable = frame.filter(pl.col("usable") & pl.col("trainable"))
    assert set(strict["sample_id"]) == set(usable.filter(pl.col("verdict") == True)["sample_id"])  # noqa: E712
    assert set(lenient["sample_id"]) == set(usable.filter(
        pl.col("agrees_with_majority") & (pl.col("verdict") != False))["sample_id"])  # noqa: E712
    assert strict.height > 0 and lenient.height > 0 and set(strict["keep_rule"]) == {"verified"}
    texts = dict(zip(frame["sample_id"], frame["text"]))
    for row in strict.iter_rows(named=True):
        chat = row["prompt"] + row["completion"]
        assistant = chat[-1]
        assert [m["role"] for m in chat] == ["system", "user", "assistant"]
        assert chat[0] == {"role": "system", "content": generation.system_prompt}
        assert "messages" not in row  # one format per row: TRL refuses a row with two
        assert assistant["content"] == f"<think>\n{row['reasoning']}\n</think>\n\n{row['final_answer']}"
        assert "answer is" not in row["reasoning"].lower() and row["answer"] in row["final_answer"]
        assert _words(assistant["content"]) == _words(texts[row["sample_id"]])
    first = lenient.row(0, named=True)
    assert first["prompt"][0] == {"role": "system", "content": generation.system_prompt}
    assert "<think>" not in first["completion"][-1]["content"]


def test_sft_never_takes_a_weak_row(joined):
    """Cut off at the token limit, no answer line (the contract breaks), or (lenient) judged wrong by a gold verifier:
    none of these rows is in either sft view, even when it agrees with the majority or is verified correct."""
    frame, generation = joined
    weak = frame.filter(~pl.col("trainable"))
    assert weak.height > 0  # the simulated solver drops some answer lines (format_error_rate)
    assert set(weak["untrainable_reason"]) >= {"format:no_answer_found"}  # the contract names it
    sft_ids = set()
    for keep in ("verified", "majority"):
        sft_ids |= set(build_sft(frame, SftViewConfig(keep=keep), generation.system_prompt)["sample_id"].to_pylist())
    assert not sft_ids & set(weak["sample_id"])
    judged_wrong = frame.filter((pl.col("verdict") == False) & pl.col("agrees_with_majority"))  # noqa: E712
    assert not sft_ids & set(judged_wrong["sample_id"])
    # A truncated copy of a verified sample, agreeing with the majority: kept out as well.
    row = frame.filter(pl.col("verdict") == True).row(0, named=True)  # noqa: E712
    cut = frame.filter(pl.col("sample_id") == row["sample_id"]).with_columns(
        sample_id=pl.lit("cut"), trainable=pl.lit(False), untrainable_reason=pl.lit("length:truncated"))
    assert build_sft(pl.concat([frame, cut]), SftViewConfig(keep="majority"))["sample_id"].to_pylist().count(
        "cut") == 0


def test_preference_pairs_stay_within_a_question_and_record_their_method(joined):
    frame, _ = joined
    # The simulated solver's correct rationales of a question are the same steps; make some verbose (two lines
    # restating the plan) so concise-vs-verbose pairs exist.
    verbose = (pl.col("sample_index") % 2 == 1) & (pl.col("verdict") == True)  # noqa: E712
    frame = frame.with_columns(
        text=pl.when(verbose).then(pl.lit("We restate the problem and track the count.\nWe work one operation per "
                                          "line and keep the running total.\n") + pl.col("text")).otherwise("text"),
        completion_tokens=pl.when(verbose).then(pl.col("completion_tokens") + 14).otherwise("completion_tokens"))
    pref = pl.from_arrow(build_preference(frame, PreferenceViewConfig(max_pairs_per_question=2), "SYSTEM"))
    by_id = {r["sample_id"]: r for r in frame.iter_rows(named=True)}
    methods = pref["pair_method"].value_counts()
    assert set(methods["pair_method"]) == {"correct_vs_incorrect", "concise_vs_verbose"}
    for row in pref.iter_rows(named=True):
        chosen, rejected = by_id[row["chosen_sample_id"]], by_id[row["rejected_sample_id"]]
        assert chosen["question_id"] == rejected["question_id"] == row["question_id"]
        assert chosen["sample_id"] != rejected["sample_id"]
        assert row["prompt"] == [{"role": "system", "content": "SYSTEM"},
                                 {"role": "user", "content": chosen["question"]}]
        assert chosen["trainable"]
        if row["pair_method"] == "correct_vs_incorrect":
            assert chosen["verdict"] is True and rejected["verdict"] is False
        else:
            assert chosen["verdict"] is True and rejected["verdict"] is True
            assert rejected["completion_tokens"] >= 1.25 * chosen["completion_tokens"]
            assert row["chosen"] != row["rejected"]
    assert pref.group_by("question_id", "pair_method").len()["len"].max() <= 2
    only = pl.from_arrow(build_preference(frame, PreferenceViewConfig(methods=["correct_vs_incorrect"])))
    assert set(only["pair_method"]) == {"correct_vs_incorrect"}


def test_unpaired_labels_are_the_verdicts(joined):
    frame, _ = joined
    rows = pl.from_arrow(build_unpaired(frame, UnpairedViewConfig(max_per_question=3)))
    verdict = dict(zip(frame["sample_id"], frame["verdict"]))
    trainable = dict(zip(frame["sample_id"], frame["trainable"]))
    assert rows.height > 0 and set(rows["label"]) == {True, False}
    assert all(verdict[s] is label for s, label in zip(rows["sample_id"], rows["label"]))
    assert all(trainable[s] for s, label in zip(rows["sample_id"], rows["label"]) if label)  # desirable: trainable
    assert rows.group_by("question_id").len()["len"].max() <= 3


def test_rlvr_band_filter(joined):
    frame, generation = joined
    rows = pl.from_arrow(build_rlvr(frame, RlvrViewConfig(), generation.system_prompt))
    per_question = frame.filter(pl.col("usable")).group_by("question_id").agg(
        rate=pl.col("verdict").fill_null(False).mean())
    expected = set(per_question.filter((pl.col("rate") > 0) & (pl.col("rate") < 1))["question_id"])
    assert set(rows["question_id"]) == expected and rows.height > 0
    gold = dict(zip(frame["question_id"], frame["gold_answer"]))
    assert all(gold[q] == s for q, s in zip(rows["question_id"], rows["solution"]))
    assert set(rows["verifier"]) == {"math"} and set(rows["solution_kind"]) == {"gold"}
    assert rows["prompt"][0][0]["role"] == "system"
    inclusive = build_rlvr(frame, RlvrViewConfig(exclusive=False))
    assert inclusive.num_rows == per_question.height  # [0, 1] inclusive keeps every question with a pass rate
    narrow = pl.from_arrow(build_rlvr(frame, RlvrViewConfig(min_pass_rate=0.5, max_pass_rate=0.9)))
    assert narrow["pass_rate"].is_between(0.5, 0.9, closed="none").all()
    with pytest.raises(ValueError, match="min_pass_rate"):
        RlvrViewConfig(min_pass_rate=0.8, max_pass_rate=0.2)


def test_calibration_target_is_the_questions_empirical_accuracy(joined):
    frame, _ = joined
    rows = pl.from_arrow(build_calibration(frame, CalibrationViewConfig()))
    assert rows.height == frame.filter(pl.col("usable")).height
    accuracy = frame.group_by("question_id").agg(acc=pl.col("verdict").fill_null(False).mean())
    check = rows.join(accuracy, on="question_id")
    assert (check["confidence_target"] - check["acc"]).abs().max() < 1e-12
    # Agreement: the share of the question's answered samples with the same answer.
    answers = frame.filter(pl.col("extracted_answer").is_not_null())
    share = answers.group_by("question_id", "extracted_answer").len().join(
        answers.group_by("question_id").len().rename({"len": "total"}), on="question_id")
    check = rows.join(share, left_on=["question_id", "answer"], right_on=["question_id", "extracted_answer"])
    assert ((check["answer_agreement"] - check["len"] / check["total"]).abs().max()) < 1e-12


def test_every_view_builds_with_its_registered_schema(joined):
    frame, generation = joined
    builders = view_builders(frame, None, ViewsConfig(), generation.system_prompt)
    assert set(builders) == set(VIEWS)
    for name, build in builders.items():
        table = build()
        assert table.schema.equals(VIEWS[name].arrow), name
        assert table.num_rows > 0, name
    off = ViewsConfig(rlvr={"enabled": False}, calibration={"enabled": False})
    assert set(view_builders(frame, None, off, "")) == set(VIEWS) - {"rlvr", "calibration"}


def test_views_built_slice_by_slice_equal_the_views_built_whole(joined, monkeypatch):
    """A build makes each view from slices of whole questions (bounded memory): every view, sliced at every few
    samples, has the same rows in the same order as built from the whole frame at once."""
    from cotforge.tasks.core.join import question_slices
    from cotforge.tasks.publish.write import rows_digest
    from cotforge.tasks.views import builders as view_module

    frame, generation = joined
    slices = question_slices(frame, rows=7)
    assert len(slices) > 10 and sum(s.height for s in slices) == frame.height
    firsts = [s["question_id"][0] for s in slices]
    lasts = [s["question_id"][-1] for s in slices]
    assert all(last != first for last, first in zip(lasts, firsts[1:]))  # no question is cut in two
    whole = {name: rows_digest(build()) for name, build in
             view_builders(frame, None, ViewsConfig(), generation.system_prompt).items()}
    monkeypatch.setattr(view_module, "SLICE_ROWS", 7)  # the builds below cut every 7 samples
    sliced = {name: build() for name, build in
              view_builders(frame, None, ViewsConfig(), generation.system_prompt).items()}
    assert {name: rows_digest(table) for name, table in sliced.items()} == whole
    assert all(table.num_rows > 0 for table in sliced.values())
    unsorted = frame.reverse()  # not ordered by question: built whole, one slice
    assert len(question_slices(unsorted, rows=7)) == 1


def test_generations_view_lists_every_generation_in_parallel(joined):
    from cotforge.schemas.config_views import GenerationsViewConfig
    from cotforge.tasks.views.generations import build_generations

    frame, generation = joined
    rows = build_generations(frame, GenerationsViewConfig(), generation.system_prompt, "0.1.0").to_pylist()
    kept = frame.filter(pl.col("keep") & pl.col("error").is_null())
    assert len(rows) == kept["question_id"].n_unique() and rows
    by_sample = {r["sample_id"]: r for r in frame.iter_rows(named=True)}
    with_messages = 0
    for row in rows:
        n = len(row["generations"])
        assert n == kept.filter(pl.col("question_id") == row["question_id"]).height
        for column in ("sample_ids", "finish_reasons", "extracted_answers", "correctness", "trainable",
                       "prompt_tokens", "completion_tokens"):
            assert len(row[column]) == n, column
        samples = [by_sample[s] for s in row["sample_ids"]]
        assert [s["sample_index"] for s in samples] == sorted(s["sample_index"] for s in samples)
        assert row["generations"] == [s["text"] for s in samples]
        assert row["correctness"] == [s["verdict"] for s in samples]
        assert row["correctness_count"] == sum(v is True for v in row["correctness"])
        assert row["answer"] == samples[0]["gold_answer"] and row["pass_rate"] == samples[0]["pass_rate"]
        names = [v["verifier"] for v in row["correctness_by_verifier"]]
        assert names == ["math", "format", "language", "length"]
        math = row["correctness_by_verifier"][0]
        assert len(math["verdicts"]) == len(math["reasons"]) == n
        assert math["verdicts"] == [next(c["verdict"] for c in s["checks"] if c["name"] == "math") for s in samples]
        verified = [s for s in samples if s["verdict"] is True and s["trainable"]]
        if verified:
            with_messages += 1
            assert row["messages"][:-1] == row["prompt"] and row["messages"][-1] == {
                "role": "assistant", "content": verified[0]["text"]}
        else:
            assert row["messages"] is None
        assert row["prompt"][0] == {"role": "system", "content": generation.system_prompt}
        assert row["verifier_spec"] is None and row["added_in"] == "0.1.0"
    assert with_messages > 0
    wrong = build_generations(frame.with_columns(verdict=pl.lit(False)), GenerationsViewConfig(),
                              generation.system_prompt).to_pylist()
    assert all(r["messages"] is None and r["correctness_count"] == 0 for r in wrong)  # nothing verified: no chat
