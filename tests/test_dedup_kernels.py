"""Compiled dedup kernels (numba): bit-identical to the numpy paths, to independent uint64 arithmetic and to datasketch
on random and adversarial input (empty, one-shingle, very long and uneven documents); the numpy paths run when numba
is missing; forked workers and processes compiling into one empty cache at once all give the same signatures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash

from cotforge.schemas.config_dedup import MinHashConfig
from cotforge.tasks.dedup import kernels
from cotforge.tasks.dedup.cluster import cluster_texts
from cotforge.tasks.dedup.confirm import exact_jaccard
from cotforge.tasks.dedup.minhash import _min_permuted, _permutations, fast_hash32, minhash_signatures
from tests.bench.bench_dedup import planted_corpus, shingle_set
from tests.conftest import missing_component

ROOT = Path(__file__).resolve().parents[1]
MAX32 = 0xFFFFFFFF


@pytest.fixture
def fast():
    compiled = kernels.compiled()
    if compiled is None:
        missing_component("numba is not installed (the `fast` and `test` extras pin it)")
    return compiled


def _both_paths(monkeypatch, compute):
    """compute() on the compiled kernels, then with them switched off (the numpy paths)."""
    compiled = compute()
    monkeypatch.setattr(kernels, "USE_COMPILED", False)
    assert kernels.compiled() is None
    numpy_path = compute()
    monkeypatch.setattr(kernels, "USE_COMPILED", True)
    return compiled, numpy_path


def _reference_min(hv: np.ndarray, counts: list[int], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The permutation minimum in plain uint64 arithmetic (no wrap-around: a * h + b < 2^64), masked to 32 bits."""
    out = np.full((len(counts), a.size), MAX32, dtype=np.uint64)
    start = 0
    for d, count in enumerate(counts):
        h = hv[start:start + count].astype(np.uint64)[:, None]
        if count:
            out[d] = ((a.astype(np.uint64)[None, :] * h + b.astype(np.uint64)[None, :]) & np.uint64(MAX32)).min(axis=0)
        start += count
    return out.astype(np.uint32)


def test_min_permuted_kernel_equals_uint64_arithmetic(fast, monkeypatch):
    rng = np.random.default_rng(5)
    # every tail length of the 4-shingle unrolled loop, one very long document, extreme hash values
    counts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 250, 20_000, 1, 31]
    hv = rng.integers(0, 1 << 32, sum(counts), dtype=np.uint64).astype(np.uint32)
    hv[:4] = [0, MAX32, 1 << 31, 1]
    a = rng.integers(1, 1 << 32, 37, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 1 << 32, 37, dtype=np.uint64).astype(np.uint32)
    a[:2], b[:2] = MAX32, MAX32  # the products and sums that wrap furthest
    expected = _reference_min(hv, counts, a, b)
    offsets = np.r_[0, np.cumsum(counts)]
    out = np.empty((len(counts), a.size), dtype=np.uint32)
    fast.min_permuted(hv, offsets, a, b, out)
    assert np.array_equal(out, expected)
    doc = np.repeat(np.arange(len(counts)), counts)

    def through_minhash():
        result = np.empty_like(out)
        _min_permuted(hv, doc, len(counts), a, b, result)
        return result
    compiled, numpy_path = _both_paths(monkeypatch, through_minhash)
    assert np.array_equal(compiled, expected) and np.array_equal(numpy_path, expected)


def test_min_permuted_kernel_gives_the_empty_minhash_for_a_document_without_shingles(fast):
    a, b = _permutations(16, 1)
    hv = np.array([7, 8], dtype=np.uint32)
    out = np.zeros((3, 16), dtype=np.uint32)
    fast.min_permuted(hv, np.array([0, 0, 2, 2]), a, b, out)  # documents 0 and 2 have no shingles
    assert (out[[0, 2]] == MAX32).all()
    assert np.array_equal(out[[0, 2]], np.vstack([MinHash(num_perm=16, seed=1).hashvalues] * 2))
    assert np.array_equal(out[1], _reference_min(hv, [2], a, b)[0])


ADVERSARIAL = ["", "   ", "a", "ab", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh", "abcdefghi",  # 1..5 shingles
               "aaaaaaaaaaaaaaaaaaaaaaaaa",  # every shingle the same
               "Ünïcode   Café  ½ ﬁ text, with  SPACES\t\n and\u00a0nbsp",
               " ".join(f"word{i % 997}" for i in range(6_000))]  # ~50,000 shingles


@pytest.mark.parametrize("num_perm,seed", [(128, 1), (37, 9)])
def test_signatures_equal_on_both_paths_and_datasketch(fast, monkeypatch, num_perm, seed):
    config = MinHashConfig(num_perm=num_perm, seed=seed, shingle="chars", shingle_size=5)
    texts = ADVERSARIAL + planted_corpus(600, seed)[0]
    compiled, numpy_path = _both_paths(monkeypatch, lambda: minhash_signatures(texts, config))
    assert compiled.dtype == np.uint32 and np.array_equal(compiled, numpy_path)
    for text, row in zip(texts[:len(ADVERSARIAL) + 20], compiled):
        m = MinHash(num_perm=num_perm, seed=seed, hashfunc=fast_hash32)
        m.update_batch(sorted(shingle_set(text, config)))
        assert np.array_equal(row, m.hashvalues), text[:40]


def test_signatures_equal_across_batches_with_uneven_lengths(fast, monkeypatch):
    from cotforge.tasks.dedup import minhash

    rng = np.random.default_rng(11)
    texts = [" ".join(f"w{rng.integers(50)}" for _ in range(rng.integers(0, 400 if i % 50 else 4_000)))
             for i in range(700)]
    config = MinHashConfig(num_perm=64, shingle="words", shingle_size=2)
    monkeypatch.setattr(minhash, "_DOC_BATCH", 97)  # batches whose documents differ in length by 1000x
    compiled, numpy_path = _both_paths(monkeypatch, lambda: minhash_signatures(texts, config))
    assert np.array_equal(compiled, numpy_path)


def test_numpy_paths_run_without_numba(monkeypatch):
    texts = ADVERSARIAL[:12] + planted_corpus(200, 3)[0]
    config = MinHashConfig()
    with_numba = minhash_signatures(texts, config)
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now raises ImportError
    kernels._jitted.cache_clear()
    try:
        assert kernels.compiled() is None
        assert np.array_equal(minhash_signatures(texts, config), with_numba)
    finally:
        kernels._jitted.cache_clear()  # the next caller imports the real numba again


def test_kernels_compile_without_a_writable_cache(fast, monkeypatch):
    import numba
    from numba.core.caching import NullCache

    real_njit = numba.njit

    def njit(*args, **options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")  # what numba raises then
        return real_njit(*args, **options)
    monkeypatch.setattr(numba, "njit", njit)
    kernels._jitted.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="NUMBA_CACHE_DIR"):
            uncached = kernels.compiled()
        assert isinstance(uncached.min_permuted._cache, NullCache)  # compiled, just not cached
        out = np.empty((1, 4), dtype=np.uint32)
        a, b = _permutations(4, 1)
        uncached.min_permuted(np.array([3, 9], dtype=np.uint32), np.array([0, 2]), a, b, out)
        assert np.array_equal(out, _reference_min(np.array([3, 9], dtype=np.uint32), [2], a, b))
    finally:
        kernels._jitted.cache_clear()


def test_threads_sign_as_one_thread(fast):
    from concurrent.futures import ThreadPoolExecutor

    texts = planted_corpus(2_000, 6)[0]
    config = MinHashConfig()
    serial = minhash_signatures(texts, config)
    with ThreadPoolExecutor(4) as pool:  # nogil kernels, called from several threads at once
        parts = list(pool.map(lambda lo: minhash_signatures(texts[lo:lo + 250], config), range(0, 2_000, 250)))
    assert np.array_equal(np.concatenate(parts), serial)


def test_exact_jaccard_both_paths_equal_python_sets(fast, monkeypatch):
    rng = np.random.default_rng(2)
    sets = [set(), set(), {5}, {5}, {1, 2, 3}, {4, 5, 6}, set(range(0, 1000, 3)), set(range(0, 1000, 2)),
            {0, MAX32}, {MAX32}]
    sets += [set(rng.integers(0, 300, rng.integers(0, 200)).tolist()) for _ in range(60)]
    values = np.concatenate([np.array(sorted(s), dtype=np.uint32) for s in sets])
    offsets = np.r_[0, np.cumsum([len(s) for s in sets])]
    pairs = np.array([(i, j) for i in range(len(sets)) for j in range(len(sets)) if i <= j], dtype=np.int64)
    compiled, numpy_path = _both_paths(monkeypatch, lambda: exact_jaccard(offsets, values, pairs, chunk=333))
    expected = [len(sets[i] & sets[j]) / len(sets[i] | sets[j]) if sets[i] | sets[j] else 1.0 for i, j in pairs]
    assert np.array_equal(compiled, numpy_path) and np.array_equal(compiled, np.array(expected))


def test_forked_workers_sign_as_one_process(fast):
    texts = planted_corpus(4_200, 8)[0]
    config = MinHashConfig(threshold=0.8, keep=["earliest"])
    one = cluster_texts([str(i) for i in range(len(texts))], texts, config)
    two = cluster_texts([str(i) for i in range(len(texts))], texts, config, workers=2)
    assert np.array_equal(one.signatures, two.signatures) and one.keep == two.keep


_CHILD = """
import json, time
import numpy as np
from cotforge.schemas.config_dedup import MinHashConfig
from cotforge.tasks.dedup import kernels
from cotforge.tasks.dedup.confirm import exact_jaccard, shingle_sets
from cotforge.tasks.dedup.minhash import minhash_signatures
from tests.bench.bench_dedup import planted_corpus
texts = planted_corpus(300, 4)[0]
start = time.perf_counter()
sig = minhash_signatures(texts, MinHashConfig())
offsets, values = shingle_sets(texts, MinHashConfig())
jac = exact_jaccard(offsets, values, np.array([[0, 1], [2, 2]]))
fast = kernels.compiled()
print(json.dumps({"seconds": time.perf_counter() - start, "sig": sig.tolist(), "jaccard": jac.tolist(),
                  "misses": sum(sum(k.stats.cache_misses.values()) for k in vars(fast).values()),
                  "hits": sum(sum(k.stats.cache_hits.values()) for k in vars(fast).values())}))
"""


@pytest.mark.slow
def test_processes_compiling_at_once_share_one_cache(fast, tmp_path):
    """Two processes with an empty numba cache compile at once (both write it); a third then loads the kernels from
    the cache without compiling. All three sign alike, and as this process does."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}

    def start():
        return subprocess.Popen([sys.executable, "-c", _CHILD], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def result(process):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
        return json.loads(out.strip().splitlines()[-1])
    cold = [result(p) for p in [start(), start()]]
    warm = result(start())
    expected = minhash_signatures(planted_corpus(300, 4)[0], MinHashConfig()).tolist()
    assert all(r["sig"] == expected and r["jaccard"] == cold[0]["jaccard"] for r in cold + [warm])
    assert sum(r["misses"] for r in cold) >= 1  # compiled: the cache was empty (the later one may find it filled)
    assert warm["misses"] == 0 and warm["hits"] >= 2  # both kernels came from the cache
    assert {p.suffix for p in tmp_path.rglob("*")} >= {".nbi", ".nbc"}
    print(f"first call: cold {[round(r['seconds'], 2) for r in cold]} s (two at once), cached {warm['seconds']:.2f} s")


def test_link_band_runs_as_python_without_numba(fast, monkeypatch):
    """Without the compiled kernels, the union-find pass over the bands runs as plain Python: the same clusters,
    counts and similarities (on planted near-duplicates and templated questions, whose buckets hold many clusters)."""
    from tests.test_dedup_dense import templated_corpus

    texts = planted_corpus(400, 9)[0] + templated_corpus(400)
    config = MinHashConfig(keep=["earliest"])
    compiled, python = _both_paths(monkeypatch, lambda: cluster_texts([str(i) for i in range(len(texts))], texts,
                                                                      config))
    assert compiled.stats["checked_exact"] > 100 and compiled.stats["dropped_near_duplicate"] > 50
    assert (compiled.cluster_id, compiled.keep, compiled.stats) == (python.cluster_id, python.keep, python.stats)
    assert compiled.similarity == python.similarity
