"""Deduplication: exact on normalised text, then MinHash LSH near-duplicates, clustered by union-find.

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

Rows are flagged, never removed: each row gets a cluster id (its cluster's kept member), a keep flag and a reason.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
from datasketch import MinHash
from datasketch.hashfunc import sha1_hash32
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_dedup import DedupConfig, MinHashConfig
from cotforge.schemas.records import DedupFlag, SampleDedupFlag, normalize_text, stable_id
from cotforge.tasks.core.shards import ShardRef, ShardStore, shard_key

_MASK64 = (1 << 64) - 1
_P = 0x9E3779B97F4A7C15  # odd, so invertible mod 2^64
_Q = pow(_P, -1, 1 << 64)  # span hashes are sums of (byte + 1) * Q^t, re-based to the span start by P^start
_BAND_MULTIPLIERS = np.random.RandomState(20240611).randint(1, 1 << 62, 1024, dtype=np.uint64) * np.uint64(2) + 1
_SPAN_CHUNK = 16_384  # shingles per permutation chunk: 16k x 128 x 4 B = 8 MiB of temporaries
_DOC_BATCH = 1_024  # documents per shingling batch (bounds the per-byte temporaries)


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    # MurmurHash3's 32-bit finalizer: datasketch's affine32 scheme pre-mixes every shingle hash with it.
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def fast_hash32(data: bytes) -> int:
    """The "fast" shingle hash of one shingle, as a datasketch `hashfunc` (same values as the vectorised kernel)."""
    h, q = 0, 1
    for byte in data:
        h = (h + (byte + 1) * q) & _MASK64
        q = (q * _Q) & _MASK64
    return int(_fmix64(np.array([h], dtype=np.uint64))[0] >> np.uint64(32))


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
    return _fmix64((prefix[ends] - prefix[starts]) * p_pow[starts])


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
        hv = _fmix32(hv)
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
    return _fmix64(key)


def candidate_pairs(signatures: np.ndarray, bands: int, rows: int, groups: np.ndarray | None = None,
                    max_bucket: int = 256) -> np.ndarray:
    """(k, 2) int64 pairs (i < j) that share at least one LSH band (and the group, when groups are given)."""
    n = signatures.shape[0]
    group_keys = None
    if groups is not None:
        group_keys = _fmix64(np.asarray(groups, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1))
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


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class PriorIndex:
    """Signatures of rows published by earlier versions (always kept; current rows that match them are dropped)."""

    ids: list[str]
    signatures: np.ndarray
    groups: list[str | None] = field(default_factory=list)


@dataclass
class Clustering:
    """Per-row decisions of one dedup run, the signatures (for the index) and what the report states."""

    cluster_id: list[str]
    keep: list[bool]
    drop_reason: list[str | None]
    similarity: list[float | None]
    signatures: np.ndarray
    stats: dict


def _group_codes(groups: list[str | None] | None, prior_groups: list[str | None]) -> np.ndarray | None:
    if groups is None:
        return None
    codes: dict[str | None, int] = {}
    return np.array([codes.setdefault(g, len(codes)) for g in list(groups) + list(prior_groups)], dtype=np.uint64)


def cluster_texts(ids: list[str], texts: list[str], config: MinHashConfig, *, groups: list[str | None] | None = None,
                  verified: list[bool | None] | None = None, contamination: list[list[str]] | None = None,
                  prior: PriorIndex | None = None) -> Clustering:
    """Exact then near-duplicate clusters over `texts`, one kept member per cluster chosen by `config.keep`.

    `groups` restricts comparisons to rows of the same group (scope "question"); `contamination` lists benchmarks a
    row hit (such rows are never kept); rows matching `prior` are dropped as "earlier_version".
    """
    n = len(ids)
    if config.scope == "global":
        groups = None
    prior = prior or PriorIndex([], np.zeros((0, config.num_perm), dtype=np.uint32))
    m = len(prior.ids)
    uf = UnionFind(n + m)
    similarity: list[float | None] = [None] * n
    norms = [normalize_text(t or "") for t in texts]
    representative: dict[tuple, int] = {}
    rep_of = np.empty(n, dtype=np.int64)
    for i in range(n):
        r = representative.setdefault((groups[i] if groups is not None else None, norms[i]), i)
        rep_of[i] = r
        if r != i:
            uf.union(r, i)
            similarity[i] = 1.0
    reps = np.unique(rep_of)
    rep_signatures = minhash_signatures([texts[i] for i in reps], config)
    signatures = rep_signatures[np.searchsorted(reps, rep_of)]
    bands, rows = bands_rows(config)
    # Nodes: representatives (0..len(reps)-1), then prior rows; pairs between two prior rows are ignored.
    pool = np.concatenate([rep_signatures, prior.signatures.astype(np.uint32)]) if m else rep_signatures
    node_groups = None
    if groups is not None:
        node_groups = _group_codes([groups[i] for i in reps], prior.groups or [None] * m)
    pairs = candidate_pairs(pool, bands, rows, node_groups, config.max_bucket)
    pairs = pairs[pairs[:, 0] < len(reps)]
    est = estimated_jaccard(pool, pairs)
    accepted = pairs[est >= config.threshold]
    accepted_est = est[est >= config.threshold]
    node_index = np.concatenate([reps, np.arange(n, n + m)])
    best = {}
    for (i, j), s in zip(accepted.tolist(), accepted_est.tolist()):
        a, b = int(node_index[i]), int(node_index[j])
        uf.union(a, b)
        for x in (a, b):
            if x < n and s > best.get(x, -1.0):
                best[x] = s
    for i, s in best.items():
        similarity[i] = s  # representatives only; exact duplicates keep 1.0
    members: dict[int, list[int]] = {}
    for x in range(n + m):
        members.setdefault(uf.find(x), []).append(x)
    contamination = contamination or [[] for _ in range(n)]
    lengths = [len(t) for t in norms]

    def rank(i: int) -> tuple:
        keys = []
        for rule in config.keep:
            if rule == "verified":
                keys.append(0 if verified is not None and verified[i] else 1)
            elif rule == "shortest":
                keys.append(lengths[i])
            elif rule == "longest":
                keys.append(-lengths[i])
            else:
                keys.append(i)
        return (*keys, i)

    cluster_id, keep, reason = [""] * n, [False] * n, [None] * n
    for component in members.values():
        current = [x for x in component if x < n]
        if not current:
            continue
        earlier = [x - n for x in component if x >= n]
        if earlier:
            head = prior.ids[min(earlier)]
            for i in current:
                cluster_id[i], reason[i] = head, "earlier_version"
        else:
            eligible = [i for i in current if not contamination[i]]
            kept = min(eligible or current, key=rank)
            for i in current:
                cluster_id[i] = ids[kept]
                if i == kept and eligible:
                    keep[i] = True
                elif i != kept:
                    reason[i] = "exact_duplicate" if norms[i] == norms[kept] and (
                        groups is None or groups[i] == groups[kept]) else "near_duplicate"
        for i in current:
            if contamination[i]:
                keep[i], reason[i] = False, f"contaminated:{contamination[i][0]}"
    stats = {
        "threshold": config.threshold, "num_perm": config.num_perm, "bands": bands, "rows": rows,
        "shingle": config.shingle, "shingle_size": config.shingle_size, "hash": config.hash, "seed": config.seed,
        "scope": config.scope, "keep_policy": list(config.keep), "rows_in": n, "earlier_rows": m,
        "candidate_pairs": int(len(pairs)), "similar_pairs": int(len(accepted)),
        "kept": int(sum(keep)),
        **{f"dropped_{r}": sum(1 for x in reason if x == r)
           for r in ("exact_duplicate", "near_duplicate", "earlier_version")},
        "dropped_contaminated": sum(1 for x in reason if x and x.startswith("contaminated:")),
    }
    return Clustering(cluster_id, keep, reason, similarity, signatures, stats)


def dedup_questions(questions: pa.Table, config: MinHashConfig, recipe_hash: str, build_id: str, *,
                    verified: dict[str, bool] | None = None, contamination: dict[str, list[str]] | None = None,
                    prior: PriorIndex | None = None) -> tuple[pa.Table, Clustering]:
    """One DedupFlag per question row; `verified` (question solved at least once) feeds the keep policy."""
    ids = questions.column("question_id").to_pylist()
    texts = questions.column("text").to_pylist()
    hits = [sorted((contamination or {}).get(q, [])) for q in ids]
    result = cluster_texts(ids, texts, config, verified=[(verified or {}).get(q) for q in ids],
                           contamination=hits, prior=prior)
    flags = [DedupFlag(question_id=q, cluster_id=result.cluster_id[i], keep=result.keep[i],
                       drop_reason=result.drop_reason[i], similarity=result.similarity[i], contamination=hits[i],
                       recipe_hash=recipe_hash, build_id=build_id) for i, q in enumerate(ids)]
    return to_table(flags, DedupFlag), result


def dedup_samples(samples: pa.Table, config: MinHashConfig, recipe_hash: str, build_id: str, *,
                  verified: dict[str, bool] | None = None, prior: PriorIndex | None = None,
                  ) -> tuple[pa.Table, Clustering]:
    """One SampleDedupFlag per rationale; rationales compare within their question when `scope` is "question"."""
    ids = samples.column("sample_id").to_pylist()
    question_ids = samples.column("question_id").to_pylist()
    texts = samples.column("text").to_pylist()
    result = cluster_texts(ids, texts, config, groups=question_ids, verified=[(verified or {}).get(s) for s in ids],
                           prior=prior)
    flags = [SampleDedupFlag(sample_id=s, question_id=question_ids[i], cluster_id=result.cluster_id[i],
                             keep=result.keep[i], drop_reason=result.drop_reason[i],
                             similarity=result.similarity[i], recipe_hash=recipe_hash, build_id=build_id)
             for i, s in enumerate(ids)]
    return to_table(flags, SampleDedupFlag), result


def _config_hash(config: DedupConfig, *extra: str) -> str:
    return stable_id(config.model_dump_json(exclude={"decontam"}), *extra)


@task(name="dedup", cache_policy=NO_CACHE)
def dedup_shard(store: ShardStore, questions: list[ShardRef], votes: list[ShardRef], decontam: list[ShardRef],
                config: DedupConfig, version: str, recipe_hash: str, build_id: str,
                metadata: dict[str, str]) -> ShardRef:
    """Deduplicate all question shards together (duplicates can sit in different shards) and against earlier
    versions; contaminated questions (from the decontam shard) are never kept."""
    from cotforge.tasks.dedup.index import earlier_index, index_fingerprint, shared_index_filter

    prior = earlier_index(store.url, version, config.earlier_versions, "questions", config.questions)
    key = shard_key("dedup", _config_hash(config, version, index_fingerprint(prior)),
                    *[r.key for r in questions + votes + decontam], stage_version="2")
    done = store.done("dedup", key)
    if done is not None:
        return done
    vote_table = pl.from_arrow(store.read_all(votes)) if votes else None
    verified = {} if vote_table is None else dict(zip(vote_table["question_id"].to_list(),
                                                      (vote_table["n_correct"] > 0).to_list()))
    contamination: dict[str, list[str]] = {}
    if decontam:
        for row in store.read_all(decontam).select(["question_id", "benchmark"]).to_pylist():
            names = contamination.setdefault(row["question_id"], [])
            if row["benchmark"] not in names:
                names.append(row["benchmark"])
    table, result = dedup_questions(store.read_all(questions), config.questions, recipe_hash, build_id,
                                    verified=verified, contamination=contamination, prior=prior)
    if config.redis is not None:
        table = shared_index_filter(table, result, config, "questions")
    store.write("dedup_index", key, signatures_table(table.column("question_id").to_pylist(), None,
                                                     table.column("keep").to_pylist(), result.signatures),
                {"cotforge.minhash": json.dumps(result.stats)})
    return store.write("dedup", key, table, metadata | {"cotforge.minhash": json.dumps(result.stats)})


@task(name="dedup_samples", cache_policy=NO_CACHE)
def sample_dedup_shard(store: ShardStore, samples: list[ShardRef], verdicts: list[ShardRef], config: DedupConfig,
                       version: str, recipe_hash: str, build_id: str, metadata: dict[str, str]) -> ShardRef:
    """Deduplicate the sampled rationales (all shards together), preferring verified ones."""
    from cotforge.tasks.dedup.index import earlier_index, index_fingerprint

    prior = earlier_index(store.url, version, config.earlier_versions, "samples", config.samples)
    key = shard_key("sample_dedup", _config_hash(config, version, index_fingerprint(prior)),
                    *[r.key for r in samples + verdicts])
    done = store.done("sample_dedup", key)
    if done is not None:
        return done
    verdict_table = store.read_all(verdicts) if verdicts else None
    verified = {} if verdict_table is None else {
        s: v is True for s, v in zip(verdict_table.column("sample_id").to_pylist(),
                                     verdict_table.column("verdict").to_pylist())}
    table, result = dedup_samples(store.read_all(samples), config.samples, recipe_hash, build_id,
                                  verified=verified, prior=prior)
    store.write("sample_dedup_index", key, signatures_table(
        table.column("sample_id").to_pylist(), table.column("question_id").to_pylist(),
        table.column("keep").to_pylist(), result.signatures), {"cotforge.minhash": json.dumps(result.stats)})
    return store.write("sample_dedup", key, table, metadata | {"cotforge.minhash": json.dumps(result.stats)})


def signatures_table(ids: list[str], groups: list[str] | None, keep: list[bool], signatures: np.ndarray) -> pa.Table:
    """Ids, groups, keep flags and signatures (fixed-size uint32 lists) as one Arrow table."""
    num_perm = signatures.shape[1]
    flat = pa.array(np.ascontiguousarray(signatures, dtype=np.uint32).reshape(-1), type=pa.uint32())
    return pa.table({
        "id": pa.array(ids, pa.string()),
        "group": pa.array(groups if groups is not None else [None] * len(ids), pa.string()),
        "keep": pa.array(keep, pa.bool_()),
        "signature": pa.FixedSizeListArray.from_arrays(flat, num_perm),
    })


def publish_dedup(store: ShardStore, refs: dict[str, list[ShardRef]], config: DedupConfig, version: str) -> dict:
    """Write this version's MinHash indexes under `OUT/index/<version>/` and summarise dedup and decontamination:
    {"counts": funnel lines for the card, "report": the report's dedup section}."""
    from cotforge.tasks.dedup.decontam import hit_counts
    from cotforge.tasks.dedup.index import write_index

    report: dict = {"index": {}}
    counts: dict[str, int] = {}
    for stage, kind, mh in (("dedup", "questions", config.questions), ("sample_dedup", "samples", config.samples)):
        for ref in refs.get(stage, []):
            index_ref = store.done(f"{stage}_index", ref.key)
            table = store.read(ref)
            meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
            report[kind] = json.loads(meta.get("cotforge.minhash", "{}"))
            if index_ref is not None:
                report["index"][kind] = write_index(store.url, version, kind, store.read(index_ref), mh)
            reasons = pl.from_arrow(table)["drop_reason"].drop_nulls().to_list()
            label = "questions" if kind == "questions" else "rationales"
            for reason in ("exact_duplicate", "near_duplicate", "earlier_version"):
                counts[f"{label} dropped: {reason.replace('_', ' ')}"] = reasons.count(reason)
    if refs.get("decontam"):
        per_bench = hit_counts(store.read_all(refs["decontam"]))
        report["contamination"] = {e.name: per_bench.get(e.name, 0) for e in config.decontam.evals}
        report["decontam"] = {"ngram": config.decontam.ngram, "minhash_threshold": config.decontam.minhash_threshold,
                              "evals": [e.name for e in config.decontam.evals]}
        counts.update({f"questions contaminated: {name}": n for name, n in report["contamination"].items()})
    return {"counts": counts, "report": report}
