"""The sampling stage: resumable parts (killed for real and resumed), adaptive budget, guided re-sampling, accounting."""

import json
import textwrap
import time

import polars as pl
import pyarrow as pa
import pytest

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_generation import GenerationConfig
from cotforge.schemas.records import Question
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardStore
from cotforge.tasks.generate.accounting import SamplingStats, generation_accounting
from cotforge.tasks.generate.sample import (
    PART_STAGE,
    accepted_flags,
    plan_extra_samples,
    sample_questions,
    sample_shard,
)
from cotforge.tasks.generate.simulated import SimulatedGenerator
from cotforge.tasks.questions.families import get_family
from tests.conftest import ROOT, kill_once_parts_written


def arithmetic_questions(n: int = 12, difficulty: int = 3, seed: int = 1) -> pa.Table:
    items = get_family("arithmetic").generate(n, difficulty, seed)
    rows = [Question(question_id=f"q{i:03d}", source="family:arithmetic", family="arithmetic", difficulty=difficulty,
                     text=it.text, gold_answer=it.gold_answer, reference_steps=list(it.reference_steps),
                     metadata_json=json.dumps({"params": it.params}), recipe_hash="rh", build_id="b")
            for i, it in enumerate(items)]
    return to_table(rows, Question)


class CountingGenerator:
    """The simulated solver, recording every request it is asked for (and optionally slow, to be killed mid-way)."""

    def __init__(self, delay: float = 0.0, **kwargs):
        self.inner = SimulatedGenerator(**kwargs)
        self.backend, self.model, self.revision = self.inner.backend, self.inner.model, self.inner.revision
        self.delay = delay
        self.asked: list[tuple[str, int, int]] = []

    def generate(self, requests):
        time.sleep(self.delay)
        self.asked += [(r.request_id, r.seed, r.n) for r in requests]
        return self.inner.generate(requests)

    def close(self):
        pass


def _sorted(table: pa.Table) -> pl.DataFrame:
    return pl.from_arrow(table).sort("question_id", "sample_index")


def _store_questions(tmp_path, questions):
    store = ShardStore(str(tmp_path))
    return store, store.write("questions", "qkey", questions)


KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from tests.test_sample_stage import CountingGenerator, arithmetic_questions
    from cotforge.schemas.config_generation import GenerationConfig
    from cotforge.tasks.generate.sample import sample_shard
    from cotforge.tasks.core.context import BuildContext
    from cotforge.tasks.core.shards import ShardStore

    store = ShardStore({out!r})
    questions = store.write("questions", "qkey", arithmetic_questions(24))
    config = GenerationConfig(backend="simulated", samples_per_question=3, part_requests=4, batch_requests=2)
    sample_shard.fn(BuildContext(store, "rh", seed=5), questions, CountingGenerator(delay=0.3), config)
""")


def test_killed_stage_resumes_with_only_missing_requests_and_identical_rows(tmp_path):
    config = GenerationConfig(backend="simulated", samples_per_question=3, part_requests=4, batch_requests=2)
    questions = arithmetic_questions(24)
    # Uninterrupted reference run.
    ref_store, ref_q = _store_questions(tmp_path / "ref", questions)
    ref_ctx = BuildContext(ref_store, "rh", seed=5)
    reference = ref_store.read(sample_shard.fn(ref_ctx, ref_q, CountingGenerator(), config))

    # A real process, SIGKILLed once a few parts (not all) are on disk.
    out = tmp_path / "killed"
    parts_dir = out / "_work" / PART_STAGE
    kill_once_parts_written(KILL_SCRIPT.format(root=str(ROOT), out=str(out)), parts_dir, 2, 0.05)
    finished_parts = len(list(parts_dir.glob("*.done.json")))
    assert 2 <= finished_parts < 6, "the kill must land mid-stage (24 questions = 6 parts of 4)"
    assert not list((out / "_work" / "samples").glob("*.done.json"))

    store = ShardStore(str(out))
    questions_ref = store.done("questions", "qkey")
    resumed_generator = CountingGenerator()
    resumed = store.read(sample_shard.fn(BuildContext(store, "rh", seed=5), questions_ref, resumed_generator, config))
    # Only the questions of missing parts were requested again, with the seeds of the first run.
    assert len(resumed_generator.asked) == 24 - 4 * finished_parts
    reference_requests = {(q, s) for q, s, _ in CountingGenerator_asked(config, questions)}
    assert {(q, s) for q, s, _ in resumed_generator.asked} <= reference_requests
    assert _sorted(resumed).equals(_sorted(reference))
    stats = json.loads((out / "_work" / "samples").glob("*.stats.json").__next__().read_text())
    assert stats["parts_reused"] == finished_parts and stats["parts_generated"] == 6 - finished_parts


def CountingGenerator_asked(config, questions):
    generator = CountingGenerator()
    sample_questions(questions, generator, config, 5, "rh", "b")
    return generator.asked


def test_finished_shard_is_not_resampled(tmp_path):
    config = GenerationConfig(backend="simulated", samples_per_question=2)
    store, q = _store_questions(tmp_path, arithmetic_questions(4))
    first = sample_shard.fn(BuildContext(store, "rh", seed=5), q, CountingGenerator(), config)
    generator = CountingGenerator()
    again = sample_shard.fn(BuildContext(store, "rh", seed=5), q, generator, config)
    assert again == first and generator.asked == []


def test_plan_extra_samples_targets_the_quota_within_the_cap():
    assert plan_extra_samples(n=4, accepted=2, decided=4, quota=2, cap=16, min_step=2) == 0  # quota met
    assert plan_extra_samples(n=16, accepted=0, decided=16, quota=2, cap=16, min_step=2) == 0  # at the cap
    assert plan_extra_samples(n=4, accepted=0, decided=0, quota=2, cap=16, min_step=2) == 0  # nothing decidable
    # 1 of 4 accepted: rate (1.5/5) = 0.3 -> ceil(1/0.3) = 4 more.
    assert plan_extra_samples(n=4, accepted=1, decided=4, quota=2, cap=16, min_step=2) == 4
    # none of 4: rate 0.1 -> 20 wanted, capped at 12 more; a harder question gets more than an easier one.
    assert plan_extra_samples(n=4, accepted=0, decided=4, quota=2, cap=16, min_step=2) == 12
    assert plan_extra_samples(n=4, accepted=3, decided=4, quota=4, cap=16, min_step=2) == 2  # min_step


def test_adaptive_budget_stops_at_quota_or_cap():
    config = GenerationConfig(backend="simulated", samples_per_question=2, simulated={"step_error_rate": 0.35},
                              adaptive={"enabled": True, "quota": 2, "cap": 10, "min_step": 2, "max_rounds": 4})
    questions = arithmetic_questions(16, difficulty=4)
    generator = CountingGenerator(step_error_rate=0.35)
    stats = SamplingStats()
    table = pl.from_arrow(sample_questions(questions, generator, config, 5, "rh", "b", stats=stats))
    rows = {r["question_id"]: r for r in questions.to_pylist()}
    samples = [s for s in table.to_dicts()]
    from cotforge.schemas.records import Sample

    flags = accepted_flags([Sample(**s) for s in samples], questions)
    per_q = {}
    for s, f in zip(samples, flags):
        per_q.setdefault(s["question_id"], []).append((s["sample_index"], f))
    assert stats.rounds >= 2 and len(generator.asked) > len(rows)
    grew = 0
    for qid, items in per_q.items():
        indexes = sorted(i for i, _ in items)
        assert indexes == list(range(len(items)))  # later rounds number their samples after the earlier ones
        accepted = sum(f is True for _, f in items)
        assert len(items) <= 10
        assert accepted >= 2 or len(items) == 10 or stats.rounds == 5
        first_round = [f for i, f in items if i < 2]
        if sum(f is True for f in first_round) >= 2:
            assert len(items) == 2  # met the quota in round 0: no more samples
        grew += len(items) > 2
    assert grew > 0
    # Each round has its own seed, so no sample is a copy of another.
    assert table["sample_id"].n_unique() == table.height


def test_guided_resampling_flags_off_policy_rows_with_the_reference_prefix():
    config = GenerationConfig(backend="simulated", samples_per_question=2,
                              simulated={"step_error_rate": 0.6, "format_error_rate": 0.0},
                              guidance={"enabled": True, "mode": "reference_prefix", "samples": 3,
                                        "prefix_fraction": 0.5})
    questions = arithmetic_questions(12, difficulty=4)
    generator = SimulatedGenerator(step_error_rate=0.6, format_error_rate=0.0)
    table = pl.from_arrow(sample_questions(questions, generator, config, 5, "rh", "b"))
    rows = {r["question_id"]: r for r in questions.to_pylist()}
    plain = table.filter(pl.col("guidance").is_null())
    guided = table.filter(pl.col("guidance") == "reference_prefix")
    assert guided.height > 0
    solved = {q for q, t in zip(plain["question_id"], plain["text"]) if t.endswith(f"is {rows[q]['gold_answer']}.")}
    assert set(guided["question_id"]) == set(rows) - solved  # exactly the questions with no accepted sample
    for s in guided.to_dicts():
        steps = rows[s["question_id"]]["reference_steps"]
        k = len(steps) // 2
        prefix = "".join(f"Step {i + 1}: {x}\n" for i, x in enumerate(steps[:k]))
        assert s["text"].startswith(prefix)  # the stored rationale is the whole turn, prefix included
        assert s["first_error_step"] is None or s["first_error_step"] >= k
        assert s["sample_index"] >= 2
    # Guidance helps: the guided rows are right more often than the unguided ones were.
    guided_ok = sum(t.endswith(f"is {rows[q]['gold_answer']}.") for q, t in zip(guided["question_id"], guided["text"]))
    plain_ok = sum(t.endswith(f"is {rows[q]['gold_answer']}.") for q, t in zip(plain["question_id"], plain["text"]))
    assert guided_ok / guided.height > plain_ok / plain.height


def test_hint_mode_puts_the_hint_in_the_prompt():
    from cotforge.tasks.generate.adaptive import guidance_for
    from cotforge.tasks.generate.sample import question_request

    config = GenerationConfig(backend="simulated", guidance={"enabled": True, "mode": "hint"})
    row = arithmetic_questions(1, difficulty=4).to_pylist()[0]
    hint, prefix, k = guidance_for(row, config)
    assert prefix == "" and k == 0 and row["reference_steps"][0] in hint
    request = question_request(row, config, 2, 1, hint, prefix, k)
    assert request.messages[1]["content"].endswith("Hint: " + hint) and request.assistant_prefix == ""
    assert guidance_for({**row, "reference_steps": []}, config) is None


def test_generation_accounting_from_rows_and_stats(tmp_path):
    config = GenerationConfig(backend="simulated", samples_per_question=2)
    store, q = _store_questions(tmp_path, arithmetic_questions(6))
    ref = sample_shard.fn(BuildContext(store, "rh", seed=5), q, CountingGenerator(), config)
    samples = pl.from_arrow(store.read(ref))
    verdicts = pl.DataFrame({"verdict": [True, True, False, None]})
    report = generation_accounting(store, [ref], samples, verdicts, stage_wall_s=2.0)
    assert report["samples"] == 12
    assert report["completion tokens"] == samples["completion_tokens"].sum() > 0
    assert report["completion tokens generated this run"] == report["completion tokens"]
    assert report["accepted samples"] == 2
    assert report["accepted samples per 1k completion tokens"] == pytest.approx(
        1000 * 2 / report["completion tokens"], rel=1e-3)
    assert report["gpus"] == 0 and report["accepted samples per GPU-hour"] is None
    assert report["completion tokens/s (backend)"] > 0


def test_generation_accounting_counts_reused_shards_apart_from_this_run(tmp_path):
    """A shard sampled by an earlier run (the build re-run over cached shards) is reused work: this run generated no
    token and no sample, so it reports no throughput; the reused shards, samples and tokens have their own lines."""
    config = GenerationConfig(backend="simulated", samples_per_question=2)
    store, q = _store_questions(tmp_path, arithmetic_questions(6))
    earlier = BuildContext(store, "rh", seed=5)
    ref = sample_shard.fn(earlier, q, CountingGenerator(), config)
    samples = pl.from_arrow(store.read(ref))
    verdicts = pl.DataFrame({"verdict": [True]})
    now = BuildContext(store, "rh", seed=5)  # a later run of the same build: same build id, another run
    assert now.build_id == earlier.build_id and now.run_id != earlier.run_id
    again = sample_shard.fn(now, q, CountingGenerator(), config)  # the finished shard is skipped
    assert again == ref
    report = generation_accounting(store, [ref], samples, verdicts, stage_wall_s=0.01, run_id=now.run_id)
    assert report["completion tokens"] == samples["completion_tokens"].sum() > 0
    assert report["completion tokens generated this run"] == 0
    assert report["completion tokens reused from earlier runs"] == report["completion tokens"]
    assert report["samples generated this run"] == 0 and report["samples reused from earlier runs"] == 12
    assert report["shards reused from earlier runs"] == 1
    assert report["completion tokens/s (backend)"] is None and report["completion tokens/s (stage)"] is None
    first = generation_accounting(store, [ref], samples, verdicts, stage_wall_s=0.01, run_id=earlier.run_id)
    assert first["samples generated this run"] == 12 and first["samples reused from earlier runs"] == 0
    assert first["completion tokens generated this run"] == first["completion tokens"]
    assert first["shards reused from earlier runs"] == 0
