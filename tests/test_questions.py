"""The question stage: weighted mix, stable ids and source tags, duplicates across sources, rejected rows in their
own shard, recipe errors, and the mix in a real build's report and card."""

from __future__ import annotations

import json

import polars as pl
import pytest

from cotforge.schemas.config_questions import QuestionsConfig
from cotforge.schemas.recipe import RecipeError, parse_recipe
from cotforge.schemas.records import question_id_for
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardStore
from cotforge.tasks.questions.stage import collect_sources, question_mix, questions_shards, rejects_ref


def _seed_file(tmp_path, rows):
    path = tmp_path / "seed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_weights_share_the_total_exactly():
    config = QuestionsConfig(total=10, sources=[
        {"kind": "family", "family": "arithmetic", "weight": 1},
        {"kind": "family", "family": "linear", "weight": 1},
        {"kind": "family", "family": "logic", "weight": 1},
        {"kind": "family", "family": "coding", "n": 4},
    ])
    assert config.source_counts() == [4, 3, 3, 4]
    collected = collect_sources(config, 0, "r", "b")
    assert len(collected.questions) == 14
    assert {q.source for q in collected.questions} == {"family:arithmetic", "family:linear", "family:logic",
                                                      "family:coding"}


def test_ids_are_hashes_of_normalised_text():
    config = QuestionsConfig(sources=[{"kind": "family", "family": "number_theory", "n": 5, "difficulty": 2}])
    for q in collect_sources(config, 1, "r", "b").questions:
        assert q.question_id == question_id_for(q.text) == question_id_for("  " + q.text.upper() + "\n")


def test_same_question_from_two_sources_is_kept_once_and_the_copy_rejected(tmp_path):
    family = QuestionsConfig(sources=[{"kind": "family", "family": "arithmetic", "n": 2}])
    first = collect_sources(family, 0, "r", "b").questions[0]
    path = _seed_file(tmp_path, [{"question": first.text.upper(), "answer": first.gold_answer},
                                 {"question": "What is 40 + 2?", "answer": "42"}])
    config = QuestionsConfig(sources=[{"kind": "family", "family": "arithmetic", "n": 2},
                                      {"kind": "seed", "name": "s", "path": path, "answer_format": "number"}])
    collected = collect_sources(config, 0, "r", "b")
    assert len({q.question_id for q in collected.questions}) == len(collected.questions) == 3
    assert [(r.source, r.reason) for r in collected.rejected] == [("seed:s", "duplicate_of:family:arithmetic")]


def test_questions_shard_task_writes_rejects_and_mix(tmp_path):
    path = _seed_file(tmp_path, [{"question": "What is 2+2?", "answer": "#### 4"},
                                 {"question": "What is 3+3?", "answer": "six"}])
    config = QuestionsConfig(sources=[{"kind": "family", "family": "logic", "n": 3},
                                      {"kind": "seed", "name": "s", "path": path, "answer_format": "gsm8k"}])
    store = ShardStore(str(tmp_path / "out"))
    refs = questions_shards.fn(BuildContext(store, "r"), config, 2)
    assert [r.rows for r in refs] == [2, 1, 1]  # a shard never mixes two sources (3 logic questions, 1 seed)
    rejects = pl.from_arrow(store.read(rejects_ref(BuildContext(store, "r"), config)))
    assert rejects.select("source", "row", "reason").to_dicts() == [{"source": "seed:s", "row": 1,
                                                                     "reason": "no_gsm8k_marker"}]
    questions = pl.from_arrow(store.read_all(refs))
    mix = {m["source"]: m for m in question_mix(questions, rejects)}
    assert mix["family:logic"]["questions"] == 3 and mix["seed:s"]["questions"] == 1
    assert mix["seed:s"]["rejected"] == 1 and mix["seed:s"]["reject_reasons"] == {"no_gsm8k_marker": 1}
    assert mix["family:logic"]["share"] == 0.75


@pytest.mark.parametrize("source, message, field", [
    ({"kind": "family", "family": "arithmetic"}, "exactly one of `n`", "questions.sources.0"),
    ({"kind": "family", "family": "arithmetic", "n": 2, "weight": 1}, "exactly one of `n`", "questions.sources.0"),
    ({"kind": "family", "family": "arithmetic", "weight": 1}, "need `questions.total`", "'questions'"),
    ({"kind": "seed", "name": "x", "path": "a.jsonl", "answer_format": "roman"}, "answer_format",
     "questions.sources.0.answer_format"),
    ({"kind": "oracle", "n": 1}, "kind", "questions.sources.0"),
])
def test_recipe_errors_name_the_field(source, message, field):
    with pytest.raises(RecipeError, match=message) as error:
        parse_recipe({"name": "x", "questions": {"sources": [source]}})
    assert field in str(error.value)


@pytest.mark.slow
def test_build_report_and_card_show_the_mix(tmp_path):
    from cotforge.flows.build import build

    path = _seed_file(tmp_path, [{"question": "Ann has 3 pens and buys 4 more. How many pens?", "answer": "#### 7"},
                                 {"question": "A broken row with no marker?", "answer": "7"}])
    recipe = parse_recipe({
        "name": "mixtest", "seed": 2, "shard_size": 16,
        "questions": {"total": 12, "sources": [
            {"kind": "family", "family": "algorithmic", "weight": 1, "difficulty": 2},
            {"kind": "family", "family": "coding", "weight": 1, "params": {"unanswerable_rate": 0.3}},
            {"kind": "seed", "name": "mini", "path": path, "answer_format": "gsm8k"}]},
        "generation": {"backend": "simulated", "samples_per_question": 2},
    })
    result = build(recipe, out=str(tmp_path / "out"), version="0.0.1")
    assert result.counts["questions from family:algorithmic"] == 6
    assert result.counts["questions from seed:mini"] == 1 and result.counts["question rows rejected"] == 1
    report = json.loads((tmp_path / "out/0.0.1/report/report.json").read_text())
    assert {m["source"] for m in report["questions"]} == {"family:algorithmic", "family:coding", "seed:mini"}
    card = (tmp_path / "out/0.0.1/README.md").read_text()
    assert "## Question sources" in card and "| `seed:mini` | 1 |" in card
    assert "no_gsm8k_marker (1)" in (tmp_path / "out/0.0.1/report/report.md").read_text()
