"""LSH banding and bucket linking (no Prefect, no I/O): which signatures share a band, and the union-find pass that links
each bucket's members through its representatives.

With b bands of r rows, two texts of Jaccard similarity s share at least one band with probability
1 - (1 - s^r)^b, an S-curve whose steepest point sits near (1/b)^(1/r). Here the LSH only proposes candidates, so it
is tuned for recall (`recall_params`: at most 1% of pairs at the threshold itself missed), unless the recipe fixes b
and r; a link is then decided by exact Jaccard of the shingle sets (or an estimate far enough from the threshold to
decide), so a band collision alone never makes a duplicate. `link_buckets` compares a bucket's member only with the
representatives of the bucket's other clusters, never every pair of a bucket: the work grows with rows, however dense
a template cluster is.
"""

from __future__ import annotations

import functools

import numpy as np

from cotforge.schemas.config_dedup import MinHashConfig
from cotforge.tasks.dedup import kernels
from cotforge.tasks.dedup.confirm import decisive_band, shingle_sets
from cotforge.tasks.dedup.minhash import _BAND_MULTIPLIERS, _fmix, sorted_unique


def _s_curve(s, bands: int, rows: int):
    """Probability that two texts of Jaccard similarity s share at least one of `bands` bands of `rows` rows."""
    return 1.0 - (1.0 - s ** float(rows)) ** float(bands)


def _miss_curve(s, bands: int, rows: int):
    return 1.0 - _s_curve(s, bands, rows)


@functools.lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising the false-positive area (integral of the S-curve over [0, threshold]) plus the
    false-negative area (integral of its complement over [threshold, 1]), equal weights: the choice datasketch's
    `MinHashLSH(threshold, num_perm)` makes, computed here (datasketch keeps it private). It balances both errors, so
    at the threshold itself it misses many pairs; the dedup kernels use `recall_params` instead."""
    from scipy.integrate import quad

    best, choice = float("inf"), (0, 0)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = quad(_s_curve, 0.0, threshold, args=(bands, rows))[0]
            fn = quad(_miss_curve, threshold, 1.0, args=(bands, rows))[0]
            if fp + fn < best:
                best, choice = fp + fn, (bands, rows)
    return choice


@functools.lru_cache(maxsize=64)
def recall_params(threshold: float, num_perm: int, miss: float) -> tuple[int, int]:
    """(bands, rows) of the LSH that only proposes candidates: the most rows per band (the fewest dissimilar
    candidates) such that a pair of similarity exactly `threshold` shares no band with probability at most `miss`,
    (1 - t^r)^b <= miss with b = num_perm // r (a pair above the threshold is missed even less often). Every candidate
    is then confirmed (`confirm.confirm_pairs`), so a loose band costs checks, never precision."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1.0 - _s_curve(threshold, bands, rows) <= miss:
            return bands, rows
    return num_perm, 1


def bands_rows(config: MinHashConfig) -> tuple[int, int]:
    """The LSH layout of a config: the recipe's bands and rows when set, else `recall_params`."""
    if config.bands:
        return config.bands, config.rows
    return recall_params(config.threshold, config.num_perm, config.candidate_miss)


def _band_keys(signatures: np.ndarray, band: int, rows: int, group_keys: np.ndarray | None) -> np.ndarray:
    cols = signatures[:, band * rows:(band + 1) * rows].astype(np.uint64)
    key = np.full(signatures.shape[0], np.uint64(band + 1), dtype=np.uint64)
    for j in range(rows):
        key = key * np.uint64(0x100000001B3) + cols[:, j] * _BAND_MULTIPLIERS[j]
    if group_keys is not None:
        key = key ^ group_keys
    return _fmix(key)


def group_band_keys(groups: np.ndarray | None) -> np.ndarray | None:
    """Per-row keys mixed into every band key, so only rows of the same group share a bucket."""
    if groups is None:
        return None
    return _fmix(np.asarray(groups, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1))


def band_keys(signatures: np.ndarray, bands: int, rows: int, group_keys: np.ndarray | None = None) -> np.ndarray:
    """(n, bands) uint64: the bucket key of each row in each band (with its group mixed in)."""
    keys = np.empty((signatures.shape[0], bands), dtype=np.uint64)
    for band in range(bands):
        keys[:, band] = _band_keys(signatures, band, rows, group_keys)
    return keys


def band_buckets(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(members, offsets) of one band's keys: the rows of each bucket holding two rows or more are
    members[offsets[k]:offsets[k + 1]], in ascending row order. Linear in rows (one sort), whatever the buckets'
    sizes."""
    n = keys.shape[0]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    run_start = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if n else np.zeros(0, np.int64)
    run_len = np.diff(np.r_[run_start, n])
    shared = run_len >= 2
    starts, lengths = run_start[shared], run_len[shared]
    members = order[np.repeat(starts, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths,
                                                                                        lengths))]
    return members.astype(np.int64), np.r_[0, np.cumsum(lengths)].astype(np.int64)


def candidate_pairs(signatures: np.ndarray, bands: int, rows: int, groups: np.ndarray | None = None,
                    max_bucket: int = 256) -> np.ndarray:
    """(k, 2) int64 pairs (i < j) that share at least one LSH band (and the group, when groups are given)."""
    n = signatures.shape[0]
    group_keys = group_band_keys(groups)
    found = []
    for band in range(bands):
        keys = _band_keys(signatures, band, rows, group_keys)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        same = sorted_keys[1:] == sorted_keys[:-1]
        if not same.any():
            continue
        run_start = np.flatnonzero(np.r_[True, ~same])
        run_len = np.diff(np.r_[run_start, n])
        small = (run_len >= 2) & (run_len <= max_bucket)
        # every pair of each small bucket, all buckets at once: a member pairs with each later member of its bucket
        starts, lengths = run_start[small], run_len[small]
        member = np.repeat(starts, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths,
                                                                                    lengths))
        later = np.repeat(starts + lengths, lengths) - member - 1
        first = np.repeat(member, later)
        second = first + 1 + (np.arange(later.sum()) - np.repeat(np.cumsum(later) - later, later))
        found.append(np.stack([order[first], order[second]], axis=1))
        for start, length in zip(run_start[run_len > max_bucket].tolist(), run_len[run_len > max_bucket].tolist()):
            members = order[start:start + length]  # a huge bucket: link neighbours only, so the work stays linear
            found.append(np.stack([members[:-1], members[1:]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.sort(np.concatenate(found).astype(np.int64), axis=1)
    codes = sorted_unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([codes // n, codes % n], axis=1)


def estimated_jaccard(signatures: np.ndarray, pairs: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """Share of equal signature entries of each pair (rows of `other` for the second member when given)."""
    other = signatures if other is None else other
    out = np.empty(len(pairs), dtype=np.float64)
    for lo in range(0, len(pairs), 65_536):
        p = pairs[lo:lo + 65_536]
        out[lo:lo + len(p)] = (signatures[p[:, 0]] == other[p[:, 1]]).mean(axis=1)
    return out


def link_buckets(pool: np.ndarray, bands: int, rows: int, node_groups: np.ndarray | None, n_current: int,
                 node_texts, config: MinHashConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """(edges, their similarities, counts): pairs of nodes (rows of `pool`) confirmed similar, enough to connect
    every cluster the LSH finds, through one union-find pass per band over that band's buckets (`kernels.link_band`):
    each member is compared with the representatives of its bucket's clusters, never with every member, and not at
    all once joined to one of them. So the work grows with rows x bands x clusters per bucket (at most
    `config.max_bucket`), not with the square of a bucket, however dense its template cluster. A pair links only when
    exact Jaccard (or an estimate outside `confirm.decisive_band`) says so. Nodes >= n_current are earlier versions'
    rows, never linked to each other; `node_texts(nodes)` gives normalised texts (None: not stored)."""
    n = pool.shape[0]
    group_keys = group_band_keys(node_groups)
    keys = band_keys(pool, bands, rows, group_keys)
    buckets = [band_buckets(keys[:, band]) for band in range(bands)]
    nodes = sorted_unique(np.concatenate([members for members, _ in buckets])) if buckets \
        else np.zeros(0, np.int64)
    # shingle sets of the nodes a bucket holds, only those: the exact checks read them
    texts = node_texts(nodes) if nodes.size else []
    known = np.array([t is not None for t in texts], dtype=bool)
    shingle_row = np.full(n, -1, dtype=np.int64)
    shingle_row[nodes[known]] = np.arange(int(known.sum()))
    offsets, values = shingle_sets([t for t in texts if t is not None], config) if known.any() \
        else (np.zeros(1, np.int64), np.zeros(0, np.uint32))
    del texts
    lo, hi = decisive_band(config.threshold, config.num_perm)
    parent = np.arange(n, dtype=np.int64)
    edges = np.zeros((max(n - 1, 0), 2), dtype=np.int64)  # each edge joins two clusters: n - 1 at most
    sims = np.zeros(max(n - 1, 0), dtype=np.float64)
    counters = np.zeros(6, dtype=np.int64)  # edges, compared, exact, estimated, same cluster, compared before
    reps = np.zeros(config.max_bucket, dtype=np.int64)
    was_rep = np.zeros((n, bands), dtype=bool)  # node was a representative of its bucket in that band
    fast = kernels.compiled()
    link = fast.link_band if fast is not None else kernels.link_band_python()
    signatures = np.ascontiguousarray(pool, dtype=np.uint32)
    for band, (members, bucket_offsets) in enumerate(buckets):
        link(band, members, bucket_offsets, keys, was_rep, parent, signatures, shingle_row, offsets, values,
             n_current, lo, hi, config.threshold, config.max_bucket, reps, edges, sims, counters)
    found = int(counters[0])
    return edges[:found], sims[:found], {"compared": int(counters[1]), "exact": int(counters[2]),
                                         "estimated": int(counters[3]), "skipped": int(counters[4]),
                                         "repeated": int(counters[5])}
