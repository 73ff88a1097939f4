"""MinHash kernels: shingles, signatures, LSH bands, candidate pairs and estimated Jaccard (no Prefect, no I/O).

Signatures are datasketch's (scheme "affine32": h -> fmix32(h), then a_k * h + b_k mod 2^32 with datasketch's own
permutation parameters), computed for a whole batch at once instead of one shingle at a time, so they can be
inserted into any datasketch `MinHashLSH` (in memory or Redis) as `LeanMinHash`es. The permutation minimum runs as a
numba-compiled pass when numba is installed (`kernels.compiled` decides), else in numpy blocks: bit-identical.
Shingles are byte k-grams or word n-grams of the normalised text; each shingle is hashed either with a vectorised
polynomial hash ("fast") or with datasketch's default `sha1_hash32` ("sha1", bit-identical to `MinHash.update`, ~20x
slower).

LSH banding: with b bands of r rows, two texts of Jaccard similarity s share at least one band with probability
1 - (1 - s^r)^b, an S-curve whose steepest point sits near (1/b)^(1/r). Here the LSH only proposes candidates, so it
is tuned for recall (`recall_params`: at most 1% of pairs at the threshold itself missed), unless the recipe fixes b
and r; every candidate is then decided by `confirm.confirm_pairs` (exact Jaccard of the shingle sets, or an
estimate far enough from the threshold to decide), so a band collision alone never makes a duplicate.
"""

from __future__ import annotations

import functools

import numpy as np
from datasketch import MinHash
from datasketch.hashfunc import sha1_hash32

from cotforge.schemas.config_dedup import MinHashConfig
from cotforge.schemas.records import normalize_text
from cotforge.tasks.dedup import kernels

_MASK64 = (1 << 64) - 1
_P = 0x9E3779B97F4A7C15  # odd, so invertible mod 2^64
_Q = pow(_P, -1, 1 << 64)  # span hashes are sums of (byte + 1) * Q^t, re-based to the span start by P^start
_BAND_MULTIPLIERS = np.random.RandomState(20240611).randint(1, 1 << 62, 1024, dtype=np.uint64) * np.uint64(2) + 1
_DOC_BATCH = 2_048  # documents per shingling batch (bounds the per-byte temporaries: ~40 B per text byte)
_POWERS_CACHED = 1 << 22  # hash powers kept between batches (2 x 32 MiB at most)
_BLOCK_DOCS = 2_048  # documents per permutation block: ~300 shingles x 2048 x 4 B = 2.4 MiB, in cache


# MurmurHash3's finalizers, (shift, multiplier, shift, multiplier, shift) per word size: fmix64 mixes the span hashes
# and band keys; fmix32 is the pre-mix datasketch's affine32 scheme applies to every shingle hash.
_FMIX = {np.uint64: (33, 0xFF51AFD7ED558CCD, 33, 0xC4CEB9FE1A85EC53, 33),
         np.uint32: (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16)}


def _fmix(h: np.ndarray) -> np.ndarray:
    word = h.dtype.type
    s1, m1, s2, m2, s3 = (word(v) for v in _FMIX[word])
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted (a sort, where `np.unique` may take a much slower hash table for 64-bit keys)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if values.size else values


def fast_hash32(data: bytes) -> int:
    """The "fast" shingle hash of one shingle, as a datasketch `hashfunc` (same values as the vectorised kernel)."""
    h, q = 0, 1
    for byte in data:
        h = (h + (byte + 1) * q) & _MASK64
        q = (q * _Q) & _MASK64
    return int(_fmix(np.array([h], dtype=np.uint64))[0] >> np.uint64(32))


def normalized_bytes(texts: list[str]) -> list[bytes]:
    """The normalised UTF-8 form of each text; shingles are taken from these bytes."""
    return [normalize_fast(t or "").encode() for t in texts]


def shingle_spans(docs: list[bytes], kind: str, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, span starts, span ends, span's document) for every shingle of every document.

    A document shorter than one shingle is one shingle (the whole text), so every document has at least one span.
    Word n-grams are byte spans too: the normalised text has single spaces between words.
    """
    n = len(docs)
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=n)
    offsets = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    buf = np.frombuffer(b"".join(docs), dtype=np.uint8)
    if kind == "chars":
        counts = np.maximum(lengths - size + 1, 1)
        doc = np.repeat(np.arange(n), counts)
        local = np.arange(doc.size) - np.repeat(np.cumsum(counts) - counts, counts)
        starts = offsets[doc] + local
        ends = np.minimum(starts + size, offsets[doc] + lengths[doc])
        return buf, starts, ends, doc
    spaces = np.flatnonzero(buf == 32)
    nonempty = lengths > 0
    word_starts = np.sort(np.concatenate([offsets[nonempty], spaces + 1]))
    word_ends = np.sort(np.concatenate([spaces, (offsets + lengths)[nonempty]]))
    word_doc = np.searchsorted(offsets, word_starts, side="right") - 1
    # an empty document shares its offset with the next one; searchsorted(side="right") picks the non-empty one
    words = np.bincount(word_doc, minlength=n)
    first_word = np.cumsum(words) - words
    big = words > size
    counts = np.where(big, words - size + 1, 1)
    doc = np.repeat(np.arange(n), counts)
    local = np.arange(doc.size) - np.repeat(np.cumsum(counts) - counts, counts)
    last = max(word_starts.size - 1, 0)
    first_index = np.minimum(first_word[doc] + local, last)
    last_index = np.minimum(first_index + size - 1, last)
    if word_starts.size:
        starts = np.where(big[doc], word_starts[first_index], offsets[doc])
        ends = np.where(big[doc], word_ends[last_index], offsets[doc] + lengths[doc])
    else:
        starts, ends = offsets[doc], offsets[doc] + lengths[doc]
    return buf, starts, ends, doc


_POWERS: list[tuple[np.ndarray, np.ndarray]] = [(np.ones(1, np.uint64), np.ones(1, np.uint64))]  # (Q^t, P^t)


def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Q^t and P^t for t <= size; cached up to `_POWERS_CACHED` (one batch's bytes), computed afresh beyond. The
    cache is one tuple, replaced whole, so threads always read a matching pair."""
    cached = _POWERS[0]
    if cached[0].size > size:
        return cached
    grown = []
    for base in (_Q, _P):
        powers = np.full(max(size + 1, min(2 * cached[0].size, _POWERS_CACHED)), base, dtype=np.uint64)
        powers[0] = 1
        grown.append(np.cumprod(powers, dtype=np.uint64))  # uint64 wraps: the intended mod 2^64
    if grown[0].size <= _POWERS_CACHED:
        _POWERS[0] = (grown[0], grown[1])
    return grown[0], grown[1]


def span_hashes64(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of each byte span, position-independent, all spans at once (prefix sums mod 2^64)."""
    size = buf.size
    q_pow, p_pow = _powers(size)
    prefix = np.zeros(size + 1, dtype=np.uint64)
    np.cumsum((buf.astype(np.uint64) + np.uint64(1)) * q_pow[:size], out=prefix[1:])
    return _fmix((prefix[ends] - prefix[starts]) * p_pow[starts])


@functools.lru_cache(maxsize=64)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = MinHash(num_perm=num_perm, seed=seed).permutations  # datasketch's own, so signatures are compatible
    return a.astype(np.uint32), b.astype(np.uint32)


def normalize_fast(text: str) -> str:
    """`normalize_text`, with a fast path for ASCII (NFKC is the identity there and casefold is lower; `str.split`
    splits on exactly the characters `\\s` matches)."""
    return " ".join(text.lower().split()) if text.isascii() else normalize_text(text)


def shingle_hashes(docs: list[bytes], config: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 hash, document) of every shingle of normalised documents: the values a datasketch MinHash is updated
    with (before datasketch's fmix32 pre-mix), with `fast_hash32` or `sha1_hash32`."""
    buf, starts, ends, doc = shingle_spans(docs, config.shingle, config.shingle_size)
    if config.hash == "fast":
        return (span_hashes64(buf, starts, ends) >> np.uint64(32)).astype(np.uint32), doc
    raw = buf.tobytes()
    return np.fromiter((sha1_hash32(raw[s:e]) for s, e in zip(starts.tolist(), ends.tolist())), dtype=np.uint32,
                       count=starts.size), doc


def _min_permuted(hv: np.ndarray, doc: np.ndarray, n: int, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out[d, k] = min over the shingles h of document d of (a_k * h + b_k) mod 2^32 (`doc` sorted). The compiled
    kernel when numba is installed (`kernels.compiled`), else numpy: documents of similar shingle counts are laid out
    as one (shingles, documents) block, short ones padded with their own first shingle (which leaves the minimum
    unchanged); then one multiply, add and column minimum per permutation over the whole block: three cache-resident
    numpy passes instead of a Python loop per document."""
    counts = np.bincount(doc, minlength=n)
    if (fast := kernels.compiled()) is not None:
        fast.min_permuted(hv, np.r_[0, np.cumsum(counts)], a, b, out)
        return
    first = np.cumsum(counts) - counts
    by_count = np.argsort(counts, kind="stable")
    for lo in range(0, n, _BLOCK_DOCS):
        block = by_count[lo:lo + _BLOCK_DOCS]
        longest = int(counts[block].max())
        rows = np.minimum(np.arange(longest)[:, None], counts[block][None, :] - 1)
        shingles = hv[first[block][None, :] + rows]  # (longest, len(block)), C-contiguous
        scratch = np.empty_like(shingles)
        mins = np.empty((a.size, len(block)), dtype=np.uint32)
        for k, (a_k, b_k) in enumerate(zip(a.tolist(), b.tolist())):
            np.multiply(shingles, np.uint32(a_k), out=scratch)
            np.add(scratch, np.uint32(b_k), out=scratch)
            np.minimum.reduce(scratch, axis=0, out=mins[k])
        out[block] = mins.T


def minhash_signatures(texts: list[str], config: MinHashConfig, normalized: bool = False) -> np.ndarray:
    """(len(texts), num_perm) uint32 MinHash signatures, equal to datasketch `MinHash(num_perm, seed)` updated with
    every shingle (with `hashfunc=fast_hash32` when `config.hash == "fast"`). `normalized`: texts already are."""
    a, b = _permutations(config.num_perm, config.seed)
    out = np.empty((len(texts), config.num_perm), dtype=np.uint32)
    for lo in range(0, len(texts), _DOC_BATCH):
        batch = texts[lo:lo + _DOC_BATCH]
        docs = [t.encode() for t in batch] if normalized else normalized_bytes(batch)
        hv, doc = shingle_hashes(docs, config)
        _min_permuted(_fmix(hv), doc, len(docs), a, b, out[lo:lo + len(docs)])
    return out


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
