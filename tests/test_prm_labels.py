"""Step labels by Monte-Carlo rollouts: they find the simulated solver's known first error, in one batched call."""

import polars as pl
import pytest

from cotforge.schemas.config_generation import GenerationConfig, LlamaCppConfig, SamplingConfig
from cotforge.schemas.config_verify import VerifyConfig
from cotforge.schemas.config_views import PrmViewConfig
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.join import RecordRefs
from cotforge.tasks.core.shards import ShardRef, ShardStore
from cotforge.tasks.generate.base import Completion
from cotforge.tasks.generate.simulated import SimulatedGenerator
from cotforge.tasks.label.segment import segment_lines
from cotforge.tasks.label.steps import label_steps, label_steps_shard
from cotforge.tasks.views.builders import build_prm
from tests.views_support import simulated_joined, simulated_records


class CountingGenerator:
    """The simulated solver, recording every generate call (to check the batching) and failing on request."""

    def __init__(self, fail_every: int = 0):
        self.inner = SimulatedGenerator(0.15, 0.05)
        self.backend, self.model, self.revision = "simulated", self.inner.model, "1"
        self.calls: list[list] = []
        self.fail_every = fail_every

    def generate(self, requests):
        self.calls.append(list(requests))
        out = self.inner.generate(requests)
        if self.fail_every:
            out = [Completion(c.request_id, c.index, "", "error", 0, 0, error="boom")
                   if c.request_id.endswith(":0") else c for c in out]
        return out

    def close(self):
        pass


@pytest.fixture(scope="module")
def joined():
    return simulated_joined(n=60, difficulty=3, samples=4, seed=21)


def first_error_accuracy(frame, generation, rollouts: int) -> tuple[float, float, int]:
    """(share of samples whose MC first-error index equals the known one, share of step labels that agree, rows)."""
    config = PrmViewConfig(rollouts=rollouts, max_samples_per_question=4)
    labels = pl.from_arrow(label_steps(frame, SimulatedGenerator(0.15, 0.05), config, generation, 21, "r", "b"))
    prm = pl.from_arrow(build_prm(frame, labels))
    exact = prm["first_error_step"].eq_missing(prm["reference_first_error_step"]).mean()
    truth = [[ref is None or i < ref for i in range(len(ls))]
             for ls, ref in zip(prm["labels"], prm["reference_first_error_step"])]
    steps = sum(len(t) for t in truth)
    agree = sum(a == b for t, ls in zip(truth, prm["labels"]) for a, b in zip(t, ls)) / steps
    return exact, agree, prm.height


def test_mc_rollout_labels_find_the_first_error(joined):
    """Stated accuracy (60 questions x 4 samples, 3-step problems, step error rate 0.15, m = 4 rollouts):
    the first-error index matches the simulated solver's known one for 98.3% of the 240 samples and 99.6% of step
    labels agree (m = 1: 66.7%). The misses are the hard label's known bias: a rollout from a wrong prefix can
    land on the gold answer when a later random error cancels the first one, so the error is found late."""
    frame, generation = joined
    exact, agree, rows = first_error_accuracy(frame, generation, rollouts=4)
    print(f"mc_rollout m=4: first-error accuracy {exact:.3f}, step-label agreement {agree:.3f} over {rows} samples")
    assert rows >= 200
    assert exact >= 0.95 and agree >= 0.98
    # Fewer rollouts make more false "wrong" labels on correct prefixes: accuracy drops with m = 1.
    exact_m1, _, _ = first_error_accuracy(frame, generation, rollouts=1)
    print(f"mc_rollout m=1: first-error accuracy {exact_m1:.3f}")
    assert exact_m1 < exact


def test_one_batched_call_with_prefixes_of_the_rationale(joined):
    frame, generation = joined
    generator = CountingGenerator()
    config = PrmViewConfig(rollouts=3, max_samples_per_question=2)
    labels = pl.from_arrow(label_steps(frame, generator, config, generation, 21, "r", "b"))
    assert len(generator.calls) == 1  # every prefix of the shard in one generate call
    requests = generator.calls[0]
    texts = dict(zip(frame["sample_id"], frame["text"]))
    labelled = labels.filter(pl.col("status") == "labelled")
    assert len(requests) == sum(len(s) - 1 for s in labelled["steps"])  # prefixes 0..K-2; the last step is the sample
    for request in requests:
        sample_id, step = request.request_id.rsplit(":", 1)
        raw = segment_lines(texts[sample_id])[1]
        assert request.assistant_prefix == "\n".join(raw[:int(step) + 1]) + "\n"
        assert request.n == 3 and request.context["prefix_steps"] == int(step) + 1
        assert request.messages[0]["content"] == generation.system_prompt
    for row in labelled.iter_rows(named=True):
        assert len(row["labels"]) == len(row["steps"]) == len(row["step_scores"])
        assert all(s in (0.0, 1 / 3, 2 / 3, 1.0) or abs(s * 3 - round(s * 3)) < 1e-9 for s in row["step_scores"])
        first = next((i for i, s in enumerate(row["step_scores"]) if s == 0), None)  # first-error semantics
        assert row["first_error_step"] == first and row["labels"] == [first is None or i < first
                                                                      for i in range(len(row["labels"]))]
        assert ("non_monotone" in row["uncertain_reasons"]) == (first is not None
                                                                and any(s > 0 for s in row["step_scores"][first:-1]))
        verdict = frame.filter(pl.col("sample_id") == row["sample_id"])["verdict"][0]
        assert row["step_scores"][-1] == (1.0 if verdict else 0.0)
    assert labels.group_by("question_id").len()["len"].max() <= 2


def test_skips_are_recorded_with_their_reason(joined):
    frame, generation = joined
    short = pl.from_arrow(label_steps(frame, CountingGenerator(), PrmViewConfig(max_steps=2), generation, 21, "r", "b"))
    assert set(short["skip_reason"]) == {"too_many_steps"} and set(short["status"]) == {"skipped"}
    failing = CountingGenerator(fail_every=1)  # every rollout of the first prefix fails
    rows = pl.from_arrow(label_steps(frame, failing, PrmViewConfig(), generation, 21, "r", "b"))
    # A sample without a stated answer (the solver leaves the final line out now and then) has no verdict: the
    # math verifier never accepts a last-number guess. Every other sample's rollouts failed.
    unjudged = set(frame.filter(pl.col("verdict").is_null())["sample_id"])
    assert set(rows.filter(pl.col("skip_reason") == "no_verdict")["sample_id"]) == unjudged & set(rows["sample_id"])
    failed = rows.filter(pl.col("skip_reason") != "no_verdict")
    assert set(failed["skip_reason"]) == {"rollouts_failed"} and failed["rollout_errors"].min() == 4
    no_gold = frame.with_columns(gold_answer=pl.lit(None, pl.String), pseudo_label=pl.lit(None, pl.String))
    rows = pl.from_arrow(label_steps(no_gold, CountingGenerator(), PrmViewConfig(), generation, 21, "r", "b"))
    assert set(rows.filter(~pl.col("sample_id").is_in(list(unjudged)))["skip_reason"]) == {"no_gold_answer"}


def test_label_steps_shard_writes_once_and_resumes(tmp_path):
    records = simulated_records(n=8, difficulty=2, samples=3, seed=4)
    store = ShardStore(str(tmp_path))
    refs = {name: store.write(name, f"k-{name}", records[name].to_arrow())
            for name in ("questions", "samples", "verdicts", "votes", "dedup")}
    generator = CountingGenerator()
    records_refs = RecordRefs(*([refs[name]] for name in ("questions", "samples", "verdicts", "votes", "dedup")))
    args = (BuildContext(store, "r", seed=4), records_refs, generator, PrmViewConfig(rollouts=2), records["generation"],
            VerifyConfig())
    ref = label_steps_shard.fn(*args)
    assert isinstance(ref, ShardRef) and ref.rows == 16 and len(generator.calls) == 1
    again = label_steps_shard.fn(*args)
    assert again == ref and len(generator.calls) == 1  # done: not rolled out again
    other = label_steps_shard.fn(*args[:3], PrmViewConfig(rollouts=3), *args[4:])
    assert other.key != ref.key and len(generator.calls) == 2


@pytest.mark.slow
def test_mc_rollouts_on_llamacpp():
    """The same labelling with SmolLM2 on llama.cpp continuing real prefixes (few, short rollouts)."""
    from cotforge.tasks.generate.llamacpp import LlamaCppGenerator

    frame, _ = simulated_joined(n=2, difficulty=2, samples=2, seed=3)
    generation = GenerationConfig(backend="llamacpp", llamacpp=LlamaCppConfig(n_ctx=1024),
                                  sampling=SamplingConfig(temperature=0.9, max_tokens=24))
    generator = LlamaCppGenerator(n_ctx=1024)
    try:
        config = PrmViewConfig(rollouts=2, max_samples_per_question=1, rollout_max_tokens=24)
        labels = pl.from_arrow(label_steps(frame, generator, config, generation, 3, "r", "b"))
    finally:
        generator.close()
    labelled = labels.filter(pl.col("status") == "labelled")
    assert labelled.height == 2, labels.select("status", "skip_reason")
    for row in labelled.iter_rows(named=True):
        assert row["rollout_model"].startswith("llamacpp/") and row["rollouts_per_step"] == 2
        assert row["rollout_requests"] == len(row["steps"]) - 1 and row["rollout_errors"] == 0
        assert all(s in (0.0, 0.5, 1.0) for s in row["step_scores"])
        first = next((i for i, s in enumerate(row["step_scores"]) if s == 0), None)
        assert row["labels"] == [first is None or i < first for i in range(len(row["labels"]))]


class CrashingGenerator(CountingGenerator):
    """Dies (like a killed worker) on its `crash_on`-th generate call."""

    def __init__(self, crash_on: int):
        super().__init__()
        self.crash_on = crash_on

    def generate(self, requests):
        if len(self.calls) + 1 == self.crash_on:
            raise RuntimeError("worker killed mid-labelling")
        return super().generate(requests)


def test_prm_resume_mid_labelling_gives_the_same_labels(tmp_path):
    """Binary search labels two shards in rounds; a build killed in the second shard's second round resumes: the
    first shard is read back (no rollout again), the second is labelled from the start with the same seeds, and
    every row equals an uninterrupted run's."""
    shards = [simulated_records(n=6, difficulty=d, samples=3, seed=9 + d) for d in (4, 5)]
    config = PrmViewConfig(label_method="binary_search", rollouts=3, max_samples_per_question=3)

    def run(root, generator):
        store, refs, calls = ShardStore(str(root)), [], []
        for i, records in enumerate(shards):
            written = {name: store.write(name, f"k{i}-{name}", records[name].to_arrow())
                       for name in ("questions", "samples", "verdicts", "votes", "dedup")}
            record_refs = RecordRefs(*([written[name]] for name in ("questions", "samples", "verdicts", "votes",
                                                                     "dedup")))
            refs.append(label_steps_shard.fn(BuildContext(store, "r", seed=4), record_refs, generator, config,
                                             records["generation"], VerifyConfig()))
            calls.append(len(generator.calls))
        return store, refs, calls

    clean = CountingGenerator()
    store, refs, calls = run(tmp_path / "clean", clean)
    expected = pl.from_arrow(store.read_all(refs))
    assert expected.filter(pl.col("status") == "labelled").height >= 20
    assert calls[0] >= 2 and calls[1] - calls[0] >= 2  # rounds: one generate call per halving
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "resumed", CrashingGenerator(crash_on=calls[0] + 2))
    again = CountingGenerator()
    store, refs, _ = run(tmp_path / "resumed", again)
    assert len(again.calls) == calls[1] - calls[0]  # the finished shard is not rolled out again
    assert pl.from_arrow(store.read_all(refs)).equals(expected)
