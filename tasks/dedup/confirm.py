"""Confirming LSH candidates: exact Jaccard of shingle sets, and when a MinHash estimate alone may decide.

A candidate pair (two texts sharing an LSH band) is a duplicate only if the Jaccard similarity of its shingle sets
reaches the threshold. The MinHash estimate (share of equal signature entries) is Binomial(num_perm, J) / num_perm,
so it decides by itself only far from the threshold: `decisive_band` gives (lo, hi) such that a pair of J >= t shows
an estimate below lo, or a pair of J < t one of at least hi, with probability at most `delta` (exact binomial
tails; at t = 0.8 with 128 permutations and delta = 1e-6 that is about [0.62, 0.95)). Pairs in between are
decided by exact Jaccard on the shingle sets, recomputed from the texts. Shingles are compared by their 32-bit
hashes (the values the signatures are built from): two distinct shingles of a pair collide with probability about
|A ∪ B|^2 / 2^33, negligible for texts of a few thousand shingles.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from cotforge.schemas.config_dedup import MinHashConfig
from cotforge.tasks.dedup import kernels
from cotforge.tasks.dedup.minhash import shingle_hashes

DELTA = 1e-6  # per-pair chance that an estimate outside the decisive band decides wrongly


@functools.lru_cache(maxsize=64)
def decisive_band(threshold: float, num_perm: int, delta: float = DELTA) -> tuple[float, float]:
    """(lo, hi): an estimate below lo means J < threshold, one at or above hi means J >= threshold, each wrong with
    probability <= delta (the worst case of either side is J at the threshold itself)."""
    log_pmf = [math.lgamma(num_perm + 1) - math.lgamma(k + 1) - math.lgamma(num_perm - k + 1)
               + k * math.log(threshold) + (num_perm - k) * math.log1p(-threshold) for k in range(num_perm + 1)]
    pmf = [math.exp(p) for p in log_pmf]
    lo, below = 0, 0.0  # the largest count c with P(X < c | J = t) <= delta
    while lo < num_perm and below + pmf[lo] <= delta:
        below += pmf[lo]
        lo += 1
    hi, above = num_perm + 1, 0.0  # the smallest count c with P(X >= c | J = t) <= delta
    while hi > 0 and above + pmf[hi - 1] <= delta:
        above += pmf[hi - 1]
        hi -= 1
    return lo / num_perm, hi / num_perm


def shingle_sets(texts: list[str], config: MinHashConfig, block_docs: int = 2_048) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values): the sorted distinct shingle hashes of normalised text d are
    values[offsets[d]:offsets[d + 1]]."""
    if len(texts) > block_docs:  # batch by batch, so the shingling temporaries stay small
        parts = [shingle_sets(texts[lo:lo + block_docs], config, block_docs) for lo in range(0, len(texts), block_docs)]
        sizes = np.concatenate([np.diff(offsets) for offsets, _ in parts])
        return np.r_[0, np.cumsum(sizes)], np.concatenate([values for _, values in parts])
    hv, doc = shingle_hashes([t.encode() for t in texts], config)
    n = len(texts)
    counts = np.bincount(doc, minlength=n)
    first = np.cumsum(counts) - counts
    distinct_counts = np.zeros(n, dtype=np.int64)
    blocks = []
    by_count = np.argsort(counts, kind="stable")
    for lo in range(0, n, block_docs):
        # texts of similar length as rows padded with their own last shingle, sorted row by row (no global sort)
        block = by_count[lo:lo + block_docs]
        width = int(counts[block].max())
        table = np.sort(hv[first[block][:, None] + np.minimum(np.arange(width)[None, :], counts[block][:, None] - 1)],
                        axis=1)
        distinct = np.ones(table.shape, dtype=bool)
        distinct[:, 1:] = table[:, 1:] != table[:, :-1]
        distinct_counts[block] = distinct.sum(axis=1)
        blocks.append((block, table[distinct]))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(distinct_counts, out=offsets[1:])
    values = np.empty(offsets[-1], dtype=np.uint32)
    for block, block_values in blocks:
        values[_ranges(offsets, block)[0]] = block_values
    return offsets, values


def _ranges(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of every value of `rows` (concatenated) and, for each, its index in `rows`."""
    lengths = offsets[rows + 1] - offsets[rows]
    owner = np.repeat(np.arange(rows.size), lengths)
    return offsets[rows][owner] + (np.arange(owner.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)), owner


def exact_jaccard(offsets: np.ndarray, values: np.ndarray, pairs: np.ndarray, chunk: int = 4_096) -> np.ndarray:
    """Jaccard similarity of the shingle sets of each pair (rows of the `shingle_sets` CSR)."""
    out = np.empty(len(pairs), dtype=np.float64)
    for lo in range(0, len(pairs), chunk):
        p = pairs[lo:lo + chunk]
        size_a, size_b = offsets[p[:, 0] + 1] - offsets[p[:, 0]], offsets[p[:, 1] + 1] - offsets[p[:, 1]]
        inter = _intersection_sizes(offsets, values, p)
        union = size_a + size_b - inter
        out[lo:lo + len(p)] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return out


def _intersection_sizes(offsets: np.ndarray, values: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Shared values of each pair's two rows: a compiled merge walk when numba is installed (`kernels.compiled`),
    else one numpy sort of both sides' (pair, value) keys."""
    if (fast := kernels.compiled()) is not None:
        inter = np.empty(len(p), dtype=np.int64)
        fast.intersection_sizes(offsets, values, np.ascontiguousarray(p[:, 0]), np.ascontiguousarray(p[:, 1]), inter)
        return inter
    keys = []
    for side in (0, 1):
        positions, owner = _ranges(offsets, p[:, side])
        keys.append((owner.astype(np.uint64) << np.uint64(32)) | values[positions].astype(np.uint64))
    # each side is sorted (by pair, then value) and duplicate-free: equal neighbours of the merge are shared
    merged = np.sort(np.concatenate(keys), kind="stable")
    shared = merged[1:][merged[1:] == merged[:-1]]
    return np.bincount((shared >> np.uint64(32)).astype(np.int64), minlength=len(p))


def _check(pairs: np.ndarray, estimate: np.ndarray, unsure: np.ndarray, texts_of, config: MinHashConfig,
           similar: np.ndarray, similarity: np.ndarray) -> tuple[int, int]:
    """Decide pairs[unsure] in place: exact Jaccard where both texts are known, else the estimate. Returns (exact,
    estimated) counts."""
    if not unsure.size:
        return 0, 0
    nodes, inverse = np.unique(pairs[unsure], return_inverse=True)
    texts = texts_of(nodes)
    known = np.array([t is not None for t in texts], dtype=bool)
    local = inverse.reshape(-1, 2)
    checkable = known[local].all(axis=1)
    offsets, values = shingle_sets([t if t is not None else "" for t in texts], config)
    exact = exact_jaccard(offsets, values, local[checkable])
    similarity[unsure[checkable]] = exact
    similar[unsure[checkable]] = exact >= config.threshold
    blind = unsure[~checkable]
    similar[blind] = estimate[blind] >= config.threshold
    return int(checkable.sum()), int(blind.size)


def confirm_pairs(pairs: np.ndarray, estimate: np.ndarray, texts_of, config: MinHashConfig) -> dict:
    """Decide each candidate pair: {"similar": bool mask, "similarity": exact J where computed, else the estimate,
    "exact": pairs checked exactly, "estimated": pairs decided by an estimate inside the band (a text missing)}.

    `texts_of(nodes)` returns the normalised text of each node, or None when none is stored (an index written before
    texts were kept): such pairs fall back to `estimate >= threshold`."""
    lo, hi = decisive_band(config.threshold, config.num_perm)
    similar, similarity = estimate >= hi, estimate.astype(np.float64).copy()
    unsure = np.flatnonzero((estimate >= lo) & (estimate < hi))
    exact, estimated = _check(pairs, estimate, unsure, texts_of, config, similar, similarity)
    return {"similar": similar, "similarity": similarity, "exact": exact, "estimated": estimated}
