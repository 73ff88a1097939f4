"""MinHash kernels: shingles and signatures (no Prefect, no I/O; LSH banding is in tasks/dedup/lsh.py).

Signatures are datasketch's (scheme "affine32": h -> fmix32(h), then a_k * h + b_k mod 2^32 with datasketch's own
permutation parameters), computed for a whole batch at once instead of one shingle at a time, so they can be
inserted into any datasketch `MinHashLSH` (in memory or Redis) as `LeanMinHash`es. The permutation minimum runs as a
numba-compiled pass when numba is installed (`kernels.compiled` decides), else in numpy blocks: bit-identical.
Shingles are byte k-grams or word n-grams of the normalised text; each shingle is hashed either with a vectorised
polynomial hash ("fast") or with datasketch's default `sha1_hash32` ("sha1", bit-identical to `MinHash.update`, ~20x
slower).

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
