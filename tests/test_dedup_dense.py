"""Dedup of dense template clusters: templated questions (one family, numbers and names varied) form clusters where
most rows share an LSH band with many others. Linking each bucket through its representatives must give exactly the
clusters of checking every LSH candidate pair by exact Jaccard, in time comparable to a sparse corpus of the same
size (the all-pairs check grows with the square of a bucket)."""

from __future__ import annotations

import time

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cotforge.schemas.config_dedup import MinHashConfig
from cotforge.tasks.dedup.cluster import cluster_texts, sketch_texts
from cotforge.tasks.dedup.confirm import exact_jaccard, shingle_sets
from cotforge.tasks.dedup.lsh import bands_rows, candidate_pairs
from cotforge.tasks.questions.families import get_family
from tests.bench.bench_dedup import planted_corpus

CONFIG = MinHashConfig(threshold=0.8, keep=["earliest"])


def templated_corpus(n: int) -> list[str]:
    """`n` arithmetic-family questions (two difficulties, as data/recipes/simulated.yaml): dense clusters."""
    family = get_family("arithmetic")
    return [item.text for item in family.generate(n * 3 // 5, 2, 11) + family.generate(n - n * 3 // 5, 4, 12)]


def exact_clusters(texts: list[str], config: MinHashConfig) -> np.ndarray:
    """The reference: every LSH candidate pair (no bucket cap) checked by exact Jaccard, then connected components
    (exact duplicates included: their Jaccard is 1)."""
    sketch = sketch_texts(texts, config)
    pairs = candidate_pairs(sketch.signatures, *bands_rows(config), max_bucket=len(texts))
    offsets, values = shingle_sets(sketch.norms, config)
    similar = pairs[exact_jaccard(offsets, values, pairs) >= config.threshold]
    graph = coo_matrix((np.ones(len(similar)), (similar[:, 0], similar[:, 1])), shape=(len(texts),) * 2)
    return connected_components(graph, directed=False)[1]


def _same_partition(first: np.ndarray, second: np.ndarray) -> bool:
    pairs = set(zip(first.tolist(), second.tolist()))
    return len(pairs) == len(set(first.tolist())) == len(set(second.tolist()))


def _timed_clusters(texts: list[str]):
    cluster_texts(texts[:50], texts[:50], CONFIG)  # compiled kernels loaded before timing
    start = time.perf_counter()
    result = cluster_texts([str(i) for i in range(len(texts))], texts, CONFIG)
    return result, time.perf_counter() - start


def _labels(result) -> np.ndarray:
    return np.unique(np.array(result.cluster_id), return_inverse=True)[1]


def test_dense_template_clusters_equal_the_exact_check_in_sparse_time():
    dense = templated_corpus(10_000)
    sparse, _ = planted_corpus(10_000, seed=3)
    dense_result, dense_s = _timed_clusters(dense)
    sparse_result, sparse_s = _timed_clusters(sparse)
    reference = exact_clusters(dense, CONFIG)
    # the corpus is dense: thousands of rows are near-duplicates, in clusters of many rows
    assert dense_result.stats["dropped_near_duplicate"] > 3_000
    assert np.bincount(reference).max() > 20
    assert _same_partition(_labels(dense_result), reference)
    assert _same_partition(_labels(sparse_result), exact_clusters(sparse, CONFIG))
    print(f"dense {dense_s:.2f}s ({dense_result.stats['candidate_pairs']} compared, "
          f"{dense_result.stats['checked_exact']} exact), sparse {sparse_s:.2f}s")
    # a dense corpus costs a small factor of a sparse one, not the square of its buckets
    assert dense_s <= 4 * sparse_s + 1.0
