"""Dedup decisions near the threshold follow exact Jaccard (not the MinHash estimate), across versions too (against
an index written by the code before exact checks: data/fixtures/dedup_index_v1), and a build's shard tasks plus merge
decide exactly as one pass over all rows."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cotforge.schemas.config_dedup import DedupConfig, MinHashConfig
from cotforge.schemas.records import normalize_text
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardStore
from cotforge.tasks.dedup.cluster import PriorIndex, cluster_sketches, cluster_texts, concat_sketches, sketch_texts
from cotforge.tasks.dedup.confirm import decisive_band, exact_jaccard, shingle_sets
from cotforge.tasks.dedup.index import earlier_index
from cotforge.tasks.dedup.minhash import minhash_signatures
from cotforge.tasks.dedup.stage import dedup_shard, sample_dedup_shard, sketch_shard
from tests.bench.bench_dedup import planted_corpus, shingle_set

ROOT = Path(__file__).resolve().parents[1]
V1_INDEX = ROOT / "data/fixtures/dedup_index_v1"
CONFIG = MinHashConfig(threshold=0.8, keep=["earliest"])


def _jaccard(a: str, b: str) -> float:
    sa, sb = shingle_set(a, CONFIG), shingle_set(b, CONFIG)
    return len(sa & sb) / len(sa | sb)


def _estimate(a: str, b: str) -> float:
    sig = minhash_signatures([a, b], CONFIG)
    return float((sig[0] == sig[1]).mean())


def _misjudged_pair(above: bool, seed: int = 0) -> tuple[str, str, float, float]:
    """Two texts whose exact Jaccard is just above (or just below) 0.8 while the MinHash estimate says the opposite:
    found by editing random questions (deterministic search)."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(500)]
    for _ in range(20_000):
        words = [rng.choice(vocab) for _ in range(rng.randint(30, 45))]
        edited = list(words)
        for _ in range(rng.randint(1, 3)):
            edited[rng.randrange(len(edited))] = rng.choice(vocab)
        a, b = " ".join(words), " ".join(edited)
        exact = _jaccard(a, b)
        if (0.8 <= exact < 0.83) if above else (0.77 < exact < 0.8):
            estimate = _estimate(a, b)
            if (estimate < 0.8) if above else (estimate >= 0.8):
                return a, b, exact, estimate
    raise AssertionError("no misjudged pair found")


@pytest.mark.parametrize("above", [True, False])
def test_dedup_pairs_near_the_threshold_follow_exact_jaccard(above):
    a, b, exact, estimate = _misjudged_pair(above)
    result = cluster_texts(["a", "b"], [a, b], CONFIG)
    assert result.stats["candidate_pairs"] == 1 and result.stats["checked_exact"] == 1
    if above:  # estimate < 0.8 would have kept both; exact >= 0.8 makes b a duplicate
        assert result.keep == [True, False] and result.drop_reason[1] == "near_duplicate"
        assert result.stats["confirmed_pairs"] == 1 and result.similarity[1] == pytest.approx(exact, abs=1e-3)
    else:  # estimate >= 0.8 would have dropped b; exact < 0.8 keeps both
        assert result.keep == [True, True] and result.stats["confirmed_pairs"] == 0
    assert (estimate >= 0.8) != (exact >= 0.8)


def test_dedup_exact_jaccard_kernel_equals_python_sets():
    texts, base = planted_corpus(300, seed=5)
    offsets, values = shingle_sets([normalize_text(t) for t in texts], CONFIG)
    rng = np.random.default_rng(0)
    related = [(i, j) for i in range(300) for j in range(300) if base[i] == base[j]]  # near-duplicates, i == j too
    pairs = np.concatenate([np.stack([rng.integers(0, 300, 300), rng.integers(0, 300, 300)], axis=1),
                            np.array(related)])
    assert len(related) > 150
    ours = exact_jaccard(offsets, values, pairs)
    truth = [_jaccard(texts[i], texts[j]) for i, j in pairs.tolist()]
    assert np.allclose(ours, truth, atol=1e-3)  # 32-bit shingle hashes: a collision would show as a tiny excess


def test_dedup_decisive_band_bounds_the_estimate_error():
    lo, hi = decisive_band(0.8, 128)
    assert 0.55 < lo < 0.7 and 0.9 < hi < 1.0

    def tail(count_range, p):  # P(X in range) for X ~ Binomial(128, p)
        return sum(math.comb(128, k) * p ** k * (1 - p) ** (128 - k) for k in count_range)
    assert tail(range(round(lo * 128)), 0.8) <= 1e-6 < tail(range(round(lo * 128) + 1), 0.8)
    assert tail(range(round(hi * 128), 129), 0.8) <= 1e-6 < tail(range(round(hi * 128) - 1, 129), 0.8)


def test_dedup_precision_and_recall_hold_near_the_threshold():
    """On the benchmark's planted corpus (many pairs within a few percent of 0.8), every decision is exact: rows
    dropped vs rows exact Jaccard says should be (all but the earliest of each group of rows linked by J >= 0.8)."""
    from tests.bench.bench_dedup import exact_truth

    texts, base = planted_corpus(3_000, seed=11)
    result = cluster_texts([str(i) for i in range(len(texts))], texts, CONFIG)
    sample = list(range(len(texts)))
    should_drop = exact_truth(texts, base, sample, CONFIG)
    dropped = {i for i, keep in enumerate(result.keep) if not keep}
    assert len(should_drop) > 500
    assert len(dropped & should_drop) / len(dropped) >= 0.99
    assert len(dropped & should_drop) / len(should_drop) >= 0.98


def _v1_fixture(tmp_path: Path) -> tuple[Path, dict]:
    folder = tmp_path / "v1"
    shutil.copytree(V1_INDEX, folder)
    return folder, json.loads((V1_INDEX / "source.json").read_text())


def test_dedup_cross_version_against_an_index_written_by_the_previous_code(tmp_path):
    folder, source = _v1_fixture(tmp_path)
    table = pq.read_table(folder / "index/0.1.0/questions.parquet")
    assert "text" not in table.column_names  # format 1: signatures only
    stored = table.column("signature").combine_chunks().flatten().to_numpy().reshape(-1, 128)
    assert np.array_equal(stored, minhash_signatures(source["texts"], CONFIG))  # the new kernel signs the same

    prior = earlier_index(str(tmp_path / "next"), "0.2.0", [str(folder)], "questions", CONFIG)
    assert prior.ids == source["ids"] and prior.texts == [None] * len(source["ids"])
    old = source["texts"]
    new = [old[0], old[1].upper() + "  ", old[2].replace("24 cookies", "24 cookie"),
           "A bus carries 40 passengers and 12 get off at the first stop. How many passengers remain on the bus?"]
    result = cluster_texts(["n0", "n1", "n2", "n3"], new, CONFIG, prior=prior)
    assert result.drop_reason == ["earlier_version"] * 3 + [None]
    assert result.cluster_id[:3] == ["v1q0", "v1q1", "v1q2"] and result.keep == [False, False, False, True]


def test_dedup_cross_version_exact_once_the_index_has_texts(tmp_path):
    """A pair just below the threshold against an earlier version: with a format-1 index only the estimate decides
    (and is counted as such in the report); with the texts a format-2 index stores, exact Jaccard decides."""
    a, b, _, _ = _misjudged_pair(above=False, seed=1)
    blind = PriorIndex(["old"], minhash_signatures([a], CONFIG), [None], [None])
    result = cluster_texts(["new"], [b], CONFIG, prior=blind)
    assert result.stats["decided_by_estimate_without_text"] == 1 and result.drop_reason == ["earlier_version"]
    with_text = PriorIndex(["old"], minhash_signatures([a], CONFIG), [None], [a.lower()])
    result = cluster_texts(["new"], [b], CONFIG, prior=with_text)
    assert result.stats["checked_exact"] == 1 and result.keep == [True]


def _write_shards(store: ShardStore, stage: str, table: pa.Table, size: int) -> list:
    return [store.write(stage, f"{stage}-{i}", table.slice(i, size)) for i in range(0, table.num_rows, size)]


def test_dedup_shard_tasks_plus_merge_equal_the_single_pass(tmp_path):
    texts, _ = planted_corpus(700, seed=2)
    ids = [f"q{i}" for i in range(len(texts))]
    # kernel level: shards sketched apart, concatenated, merged
    parts = [sketch_texts(texts[i:i + 97], CONFIG) for i in range(0, len(texts), 97)]
    merged = cluster_sketches(ids, concat_sketches(parts, 128), lambda rows: [texts[i] for i in rows], CONFIG)
    single = cluster_texts(ids, texts, CONFIG)
    assert (merged.keep, merged.cluster_id, merged.drop_reason) == (single.keep, single.cluster_id,
                                                                   single.drop_reason)
    assert single.stats["dropped_near_duplicate"] > 50 and single.stats["dropped_exact_duplicate"] > 10

    # stage level: sketch_shard per shard (what the flow maps on its task runner), then the merge task
    config = DedupConfig(questions=CONFIG)
    questions = pa.table({"question_id": ids, "text": texts})
    samples = pa.table({"sample_id": [f"s{i}" for i in range(len(texts))], "question_id": [f"q{i % 50}" for i in
                                                                                           range(len(texts))],
                        "text": texts})
    outcomes = []
    for sharded in (False, True):
        ctx = BuildContext(ShardStore(str(tmp_path / f"out-{sharded}")), "recipe")
        q_refs = _write_shards(ctx.store, "questions", questions, 120)
        s_refs = _write_shards(ctx.store, "samples", samples, 150)
        q_sketch = [sketch_shard.fn(ctx, r, config.questions) for r in q_refs] if sharded else None
        s_sketch = [sketch_shard.fn(ctx, r, config.samples, "sample_id") for r in s_refs] if sharded else None
        q = ctx.store.read(dedup_shard.fn(ctx, q_refs, [], [], config, q_sketch))
        s = ctx.store.read(sample_dedup_shard.fn(ctx, s_refs, [], config, s_sketch))
        outcomes.append([t.select(["keep", "cluster_id", "drop_reason", "similarity"]).to_pylist() for t in (q, s)])
    assert outcomes[0] == outcomes[1]
    assert sum(not r["keep"] for r in outcomes[0][0]) == single.stats["rows_in"] - single.stats["kept"]
