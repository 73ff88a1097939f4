"""MinHash kernels: shingles, signatures, LSH bands, candidate pairs and estimated Jaccard (no Prefect, no I/O).

Signatures are datasketch's (scheme "affine32": h -> fmix32(h), then a_k * h + b_k mod 2^32 with datasketch's own
permutation parameters), computed for a whole batch at once with numpy instead of one shingle at a time, so they can
be inserted into any datasketch `MinHashLSH` (in memory or Redis) as `LeanMinHash`es. Shingles are byte k-grams or word
n-grams of the normalised text; each shingle is hashed either with a vectorised polynomial hash ("fast") or with
datasketch's default `sha1_hash32` ("sha1", bit-identical to `MinHash.update`, ~20x slower).

LSH banding: with b bands of r rows, two texts of Jaccard similarity s share at least one band with probability
1 - (1 - s^r)^b, an S-curve whose steepest point sits near (1/b)^(1/r). b and r come from datasketch's optimiser
(minimise the integrated false-positive plus false-negative probability around the threshold), unless the recipe
fixes them. Every candidate pair is then checked against the threshold with the estimated Jaccard (share of equal
signature entries), as datasketch users do with `MinHash.jaccard`, so a band collision alone never makes a duplicate.

"""

from __future__ import annotations

import functools

import numpy as np
from datasketch import MinHash
from datasketch.hashfunc import sha1_hash32

from cotforge.schemas.config_dedup import MinHashConfig
from cotforge.schemas.records import normalize_text

_MASK64 = (1 << 64) - 1
_P = 0x9E3779B97F4A7C15  # odd, so invertible mod 2^64
_Q = pow(_P, -1, 1 << 64)  # span hashes are sums of (byte + 1) * Q^t, re-based to the span start by P^start
_BAND_MULTIPLIERS = np.random.RandomState(20240611).randint(1, 1 << 62, 1024, dtype=np.uint64) * np.uint64(2) + 1
_SPAN_CHUNK = 16_384  # shingles per permutation chunk: 16k x 128 x 4 B = 8 MiB of temporaries
_DOC_BATCH = 1_024  # documents per shingling batch (bounds the per-byte temporaries)


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


def fast_hash32(data: bytes) -> int:
    """The "fast" shingle hash of one shingle, as a datasketch `hashfunc` (same values as the vectorised kernel)."""
    h, q = 0, 1
    for byte in data:
        h = (h + (byte + 1) * q) & _MASK64
        q = (q * _Q) & _MASK64
    return int(_fmix(np.array([h], dtype=np.uint64))[0] >> np.uint64(32))


def normalized_bytes(texts: list[str]) -> list[bytes]:
    """The normalised UTF-8 form of each text; shingles are taken from these bytes."""
    return [normalize_text(t or "").encode() for t in texts]


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


def span_hashes64(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of each byte span, position-independent, all spans at once (prefix sums mod 2^64)."""
    size = buf.size
    q_pow = np.full(size + 1, _Q, dtype=np.uint64)
    q_pow[0] = 1
    q_pow = np.cumprod(q_pow, dtype=np.uint64)  # Q^t; uint64 arithmetic wraps, which is the intended mod 2^64
    p_pow = np.full(size + 1, _P, dtype=np.uint64)
    p_pow[0] = 1
    p_pow = np.cumprod(p_pow, dtype=np.uint64)  # P^t = Q^-t
    prefix = np.zeros(size + 1, dtype=np.uint64)
    np.cumsum((buf.astype(np.uint64) + np.uint64(1)) * q_pow[:size], out=prefix[1:])
    return _fmix((prefix[ends] - prefix[starts]) * p_pow[starts])


@functools.lru_cache(maxsize=64)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = MinHash(num_perm=num_perm, seed=seed).permutations  # datasketch's own, so signatures are compatible
    return a.astype(np.uint32), b.astype(np.uint32)


def minhash_signatures(texts: list[str], config: MinHashConfig) -> np.ndarray:
    """(len(texts), num_perm) uint32 MinHash signatures, equal to datasketch `MinHash(num_perm, seed)` updated with
    every shingle (with `hashfunc=fast_hash32` when `config.hash == "fast"`)."""
    a, b = _permutations(config.num_perm, config.seed)
    out = np.full((len(texts), config.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    docs = normalized_bytes(texts)
    for batch_start in range(0, len(docs), _DOC_BATCH):
        batch = docs[batch_start:batch_start + _DOC_BATCH]
        buf, starts, ends, doc = shingle_spans(batch, config.shingle, config.shingle_size)
        if config.hash == "fast":
            hv = (span_hashes64(buf, starts, ends) >> np.uint64(32)).astype(np.uint32)
        else:
            raw = buf.tobytes()
            hv = np.fromiter((sha1_hash32(raw[s:e]) for s, e in zip(starts.tolist(), ends.tolist())),
                             dtype=np.uint32, count=starts.size)
        hv = _fmix(hv)
        target = out[batch_start:batch_start + len(batch)]
        for lo in range(0, hv.size, _SPAN_CHUNK):
            chunk_doc = doc[lo:lo + _SPAN_CHUNK]
            permuted = hv[lo:lo + _SPAN_CHUNK, None] * a[None, :] + b[None, :]
            seg = np.flatnonzero(np.r_[True, chunk_doc[1:] != chunk_doc[:-1]])
            mins = np.minimum.reduceat(permuted, seg, axis=0)
            docs_here = chunk_doc[seg]
            target[docs_here] = np.minimum(target[docs_here], mins)  # a document may straddle two chunks
    return out


@functools.lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising the integrated false-positive + false-negative probability (datasketch's optimiser,
    equal weights), the same choice `MinHashLSH(threshold, num_perm)` makes."""
    from datasketch.lsh import _optimal_param

    return tuple(_optimal_param(threshold, num_perm, 0.5, 0.5))


def bands_rows(config: MinHashConfig) -> tuple[int, int]:
    return (config.bands, config.rows) if config.bands else lsh_params(config.threshold, config.num_perm)


def _band_keys(signatures: np.ndarray, band: int, rows: int, group_keys: np.ndarray | None) -> np.ndarray:
    cols = signatures[:, band * rows:(band + 1) * rows].astype(np.uint64)
    key = np.full(signatures.shape[0], np.uint64(band + 1), dtype=np.uint64)
    for j in range(rows):
        key = key * np.uint64(0x100000001B3) + cols[:, j] * _BAND_MULTIPLIERS[j]
    if group_keys is not None:
        key = key ^ group_keys
    return _fmix(key)


def candidate_pairs(signatures: np.ndarray, bands: int, rows: int, groups: np.ndarray | None = None,
                    max_bucket: int = 256) -> np.ndarray:
    """(k, 2) int64 pairs (i < j) that share at least one LSH band (and the group, when groups are given)."""
    n = signatures.shape[0]
    group_keys = None
    if groups is not None:
        group_keys = _fmix(np.asarray(groups, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1))
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
        twos = run_start[run_len == 2]
        found.append(np.stack([order[twos], order[twos + 1]], axis=1))
        for start, length in zip(run_start[run_len > 2].tolist(), run_len[run_len > 2].tolist()):
            members = order[start:start + length]
            if length <= max_bucket:
                i, j = np.triu_indices(length, 1)
                found.append(np.stack([members[i], members[j]], axis=1))
            else:  # a huge bucket: link neighbours only, so the work stays linear (clusters still form)
                found.append(np.stack([members[:-1], members[1:]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.sort(np.concatenate(found).astype(np.int64), axis=1)
    codes = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([codes // n, codes % n], axis=1)


def estimated_jaccard(signatures: np.ndarray, pairs: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """Share of equal signature entries of each pair (rows of `other` for the second member when given)."""
    other = signatures if other is None else other
    out = np.empty(len(pairs), dtype=np.float64)
    for lo in range(0, len(pairs), 65_536):
        p = pairs[lo:lo + 65_536]
        out[lo:lo + len(p)] = (signatures[p[:, 0]] == other[p[:, 1]]).mean(axis=1)
    return out
