"""Clustering: exact duplicates on normalised text, then MinHash near-duplicates (LSH buckets linked through their
representatives by one union-find pass per band, each link confirmed by exact Jaccard: `link_buckets`) joined into
connected components, one kept member per cluster. Rows are flagged, never removed: each gets a cluster id (its
cluster's kept member), a keep flag and a reason.

The work splits in two: `sketch_texts` (per shard, any worker: the normalised-text key, length and signature of each
row) and `cluster_sketches` (one merge over every shard's sketches and the earlier versions' indexes). `cluster_texts`
is the two in one call; a build's shard tasks plus merge give the same result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cotforge.schemas.arrow import columns_table
from cotforge.schemas.config_dedup import MinHashConfig
from cotforge.schemas.records import DedupFlag, SampleDedupFlag
from cotforge.tasks.dedup.confirm import decisive_band
from cotforge.tasks.dedup.lsh import bands_rows, link_buckets
from cotforge.tasks.dedup.minhash import minhash_signatures, normalize_fast

_MIN_PER_WORKER = 2_000  # below this many texts per process, forking costs more than it saves
_TEXT_BLOCK = 8_192  # texts normalised at a time for the index


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
    """Rows published by earlier versions (always kept; current rows that match them are dropped): signatures, and
    the normalised texts that confirm a match exactly (None for rows of an index written before texts were kept)."""

    ids: list[str]
    signatures: np.ndarray
    groups: list[str | None] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)


@dataclass
class Sketch:
    """Per row: a 64-bit key of the normalised text (exact duplicates: two of ten million distinct texts share one
    with probability ~3e-6), its length in characters and its MinHash signature. Computed shard by shard
    (`sketch_texts`) and concatenated (`concat_sketches`) for the merge."""

    keys: np.ndarray  # (n,) uint64
    lengths: np.ndarray  # (n,) int64
    signatures: np.ndarray  # (n, num_perm) uint32
    norms: list[str] | None = None  # the normalised texts, kept in-process only (never written)


@dataclass
class Clustering:
    """Per-row decisions of one dedup run, the signatures (for the index) and what the report states."""

    cluster_id: list[str]
    keep: list[bool]
    drop_reason: list[str | None]
    similarity: list[float | None]
    signatures: np.ndarray
    stats: dict


def sketch_texts(texts: list[str], config: MinHashConfig, workers: int = 1) -> Sketch:
    """The sketch of each text; a text repeated (after normalisation) is signed once. `workers` > 1 splits the texts
    over that many forked processes (for one big in-process call; a build's shard tasks are its parallelism)."""
    if workers > 1 and len(texts) >= 2 * _MIN_PER_WORKER:
        import multiprocessing

        step = -(-len(texts) // workers)
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.starmap(sketch_texts, [(texts[i:i + step], config) for i in range(0, len(texts), step)])
        return concat_sketches(parts, config.num_perm)
    norms = [normalize_fast(t or "") for t in texts]
    keys = np.frombuffer(b"".join(hashlib.blake2b(t.encode(), digest_size=8).digest() for t in norms), dtype="<u8")
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) == len(norms):  # no repeated text: sign in place, no copy
        signatures = minhash_signatures(norms, config, normalized=True)
    else:
        signatures = minhash_signatures([norms[i] for i in first], config, normalized=True)[inverse.reshape(-1)]
    return Sketch(keys, np.fromiter(map(len, norms), dtype=np.int64, count=len(norms)), signatures, norms)


def concat_sketches(sketches: list[Sketch], num_perm: int) -> Sketch:
    if not sketches:
        return Sketch(np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros((0, num_perm), np.uint32))
    return Sketch(np.concatenate([s.keys for s in sketches]), np.concatenate([s.lengths for s in sketches]),
                  np.concatenate([s.signatures for s in sketches]))


def _codes(values: list) -> np.ndarray:
    codes: dict = {}
    return np.array([codes.setdefault(v, len(codes)) for v in values], dtype=np.int64)


def _texts_of(texts: list[str] | pa.ChunkedArray, sketch: Sketch):
    """Rows -> texts: the sketch's normalised ones when it kept them, else taken from `texts` (an Arrow column stays
    one: only the rows asked for become Python strings)."""
    if sketch.norms is not None and len(sketch.norms) == len(texts):
        return lambda rows: [sketch.norms[i] for i in rows]
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return lambda rows: texts.take(pa.array(rows, pa.int64())).to_pylist()
    return lambda rows: [texts[i] for i in rows]


def cluster_texts(ids: list[str], texts: list[str], config: MinHashConfig, *, groups: list[str | None] | None = None,
                  verified: list[bool | None] | None = None, contamination: list[list[str]] | None = None,
                  prior: PriorIndex | None = None, workers: int = 1) -> Clustering:
    """Exact then near-duplicate clusters over `texts`, one kept member per cluster chosen by `config.keep`.

    `groups` restricts comparisons to rows of the same group (scope "question"); `contamination` lists benchmarks a
    row hit (such rows are never kept); rows matching `prior` are dropped as "earlier_version"; `workers`: processes
    that sketch the texts."""
    sketch = sketch_texts(texts, config, workers)
    return cluster_sketches(ids, sketch, _texts_of(texts, sketch), config,
                            groups=groups, verified=verified, contamination=contamination, prior=prior)


def cluster_sketches(ids: list[str], sketch: Sketch, texts_of, config: MinHashConfig, *,
                     groups: list[str | None] | None = None, verified: list[bool | None] | None = None,
                     contamination: list[list[str]] | None = None, prior: PriorIndex | None = None) -> Clustering:
    """`cluster_texts` on precomputed sketches; `texts_of(row indices)` returns those rows' texts (only the rows of
    candidate pairs the estimate cannot decide are asked for; normalising them again is cheap and idempotent)."""
    n = len(ids)
    if config.scope == "global":
        groups = None
    prior = prior or PriorIndex([], np.zeros((0, config.num_perm), dtype=np.uint32))
    m = len(prior.ids)
    group_code = _codes(list(groups) + list(prior.groups or [None] * m)) if groups is not None else None
    # exact duplicates: the first row of each (group, normalised text) is its representative
    keys = sketch.keys.astype(np.uint64)
    codes = group_code[:n] if group_code is not None else np.zeros(n, np.int64)
    order = np.lexsort((np.arange(n), keys, codes))
    run_start = np.r_[True, (keys[order][1:] != keys[order][:-1]) | (codes[order][1:] != codes[order][:-1])] \
        if n else np.zeros(0, bool)
    rep_of = np.empty(n, dtype=np.int64)
    rep_of[order] = order[np.flatnonzero(run_start)[np.cumsum(run_start) - 1]] if n else order
    reps = np.flatnonzero(rep_of == np.arange(n))
    bands, rows = bands_rows(config)
    # Nodes: representatives (0..len(reps)-1), then prior rows; pairs between two prior rows are ignored.
    pool = np.concatenate([sketch.signatures[reps], prior.signatures.astype(np.uint32)]) if m \
        else sketch.signatures[reps]
    node_groups = None if group_code is None else np.concatenate([group_code[reps], group_code[n:]]).astype(np.uint64)
    prior_texts = prior.texts or [None] * m

    def node_texts(nodes: np.ndarray) -> list[str | None]:
        current = nodes < len(reps)
        found = texts_of(reps[nodes[current]].tolist())
        out, it = [], iter(found)
        for node, is_current in zip(nodes.tolist(), current.tolist()):
            out.append(normalize_fast(next(it) or "") if is_current else prior_texts[node - len(reps)])
        return out

    accepted, accepted_sim, linked = link_buckets(pool, bands, rows, node_groups, len(reps), node_texts, config)
    node_index = np.concatenate([reps, np.arange(n, n + m)])
    edges = np.concatenate([np.stack([rep_of, np.arange(n)], axis=1), node_index[accepted]]).astype(np.int64)
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n + m, n + m))
    _, label = connected_components(graph, directed=False)
    similarity = np.full(n, np.nan)
    similarity[rep_of != np.arange(n)] = 1.0
    if len(accepted):  # a representative's similarity: its best confirmed pair
        ends = node_index[accepted].reshape(-1)
        sims = np.repeat(accepted_sim, 2)
        mine = ends < n
        np.fmax.at(similarity, ends[mine], sims[mine])
    return _decide(ids, sketch, config, label, rep_of, groups, verified, contamination, prior, similarity, {
        "threshold": config.threshold, "num_perm": config.num_perm, "bands": bands, "rows": rows,
        "shingle": config.shingle, "shingle_size": config.shingle_size, "hash": config.hash, "seed": config.seed,
        "scope": config.scope, "keep_policy": list(config.keep), "rows_in": n, "earlier_rows": m,
        "candidate_pairs": linked["compared"], "similar_pairs": len(accepted), "confirmed_pairs": len(accepted),
        "checked_exact": linked["exact"], "decided_by_estimate_without_text": linked["estimated"],
        "unchecked_already_clustered": linked["skipped"], "unchecked_compared_in_earlier_band": linked["repeated"],
        "decisive_band": list(decisive_band(config.threshold, config.num_perm))})


def _decide(ids, sketch, config, label, rep_of, groups, verified, contamination, prior, similarity,
            stats) -> Clustering:
    """Keep one member per component (rank by `config.keep`, contaminated rows never kept); name the others' reason."""
    n, m = len(ids), len(prior.ids)
    contaminated = np.array([bool(c) for c in contamination], dtype=bool) if contamination else np.zeros(n, bool)
    has_prior = np.zeros(label.max() + 1 if label.size else 0, dtype=bool)
    first_prior = np.full(has_prior.size, -1, dtype=np.int64)
    if m:
        prior_labels = label[n:]
        has_prior[prior_labels] = True
        first_prior[prior_labels[::-1]] = np.arange(m)[::-1]  # the lowest prior index of each component wins
    index = np.arange(n)
    keys = [index]
    for rule in reversed(config.keep):
        if rule == "verified":
            keys.append(np.array([0 if verified is not None and verified[i] else 1 for i in range(n)]))
        elif rule == "shortest":
            keys.append(sketch.lengths)
        elif rule == "longest":
            keys.append(-sketch.lengths)
        else:
            keys.append(index)
    current = label[:n]
    order = np.lexsort(keys + [contaminated, current])
    head = np.flatnonzero(np.r_[True, current[order][1:] != current[order][:-1]]) if n else np.zeros(0, np.int64)
    kept_of = np.full(has_prior.size, -1, dtype=np.int64)
    kept_of[current[order[head]]] = order[head]
    kept = kept_of[current]
    keep = (kept == index) & ~contaminated & ~has_prior[current]
    same_text = rep_of == rep_of[kept]  # same normalised text (and group)
    earlier = has_prior[current]
    cluster_id = np.array(ids, dtype=object)[kept] if n else np.zeros(0, object)
    if m:
        cluster_id[earlier] = np.array(prior.ids, dtype=object)[first_prior[current[earlier]]]
    reason = np.full(n, None, dtype=object)
    reason[(kept != index) & same_text] = "exact_duplicate"
    reason[(kept != index) & ~same_text] = "near_duplicate"
    reason[earlier] = "earlier_version"
    for i in np.flatnonzero(contaminated).tolist():
        reason[i] = f"contaminated:{contamination[i][0]}"
    counts = {f"dropped_{r}": int((reason == r).sum())
              for r in ("exact_duplicate", "near_duplicate", "earlier_version")}
    stats = {**stats, "kept": int(keep.sum()), **counts, "dropped_contaminated": int(contaminated.sum())}
    cluster_id, reason, keep_list = cluster_id.tolist(), reason.tolist(), keep.tolist()
    sim = [None if np.isnan(s) else float(s) for s in similarity.tolist()]
    return Clustering(cluster_id, keep_list, reason, sim, sketch.signatures, stats)


def dedup_questions(questions: pa.Table, config: MinHashConfig, recipe_hash: str, build_id: str, *,
                    verified: dict[str, bool] | None = None, contamination: dict[str, list[str]] | None = None,
                    prior: PriorIndex | None = None, sketch: Sketch | None = None) -> tuple[pa.Table, Clustering]:
    """One DedupFlag per question row; `verified` (question solved at least once) feeds the keep policy; `sketch`:
    the rows' sketches when shard tasks computed them."""
    ids = questions.column("question_id").to_pylist()
    texts = questions.column("text")  # (Arrow: only the texts the exact check asks for become Python strings)
    hits = [sorted((contamination or {}).get(q, [])) for q in ids]
    sketch = sketch or sketch_texts(texts.to_pylist(), config)
    result = cluster_sketches(ids, sketch, _texts_of(texts, sketch), config,
                              verified=[(verified or {}).get(q) for q in ids], contamination=hits, prior=prior)
    return columns_table({"question_id": ids, "cluster_id": result.cluster_id, "keep": result.keep,
                          "drop_reason": result.drop_reason, "similarity": result.similarity, "contamination": hits,
                          "recipe_hash": [recipe_hash] * len(ids), "build_id": [build_id] * len(ids)},
                         DedupFlag), result


def dedup_samples(samples: pa.Table, config: MinHashConfig, recipe_hash: str, build_id: str, *,
                  verified: dict[str, bool] | None = None, prior: PriorIndex | None = None,
                  sketch: Sketch | None = None) -> tuple[pa.Table, Clustering]:
    """One SampleDedupFlag per rationale; rationales compare within their question when `scope` is "question"."""
    ids = samples.column("sample_id").to_pylist()
    question_ids = samples.column("question_id").to_pylist()
    texts = samples.column("text")
    sketch = sketch or sketch_texts(texts.to_pylist(), config)
    result = cluster_sketches(ids, sketch, _texts_of(texts, sketch), config, groups=question_ids,
                              verified=[(verified or {}).get(s) for s in ids], prior=prior)
    return columns_table({"sample_id": ids, "question_id": question_ids, "cluster_id": result.cluster_id,
                          "keep": result.keep, "drop_reason": result.drop_reason, "similarity": result.similarity,
                          "recipe_hash": [recipe_hash] * len(ids), "build_id": [build_id] * len(ids)},
                         SampleDedupFlag), result


def signatures_table(ids: list[str], groups: list[str] | None, keep: list[bool], signatures: np.ndarray,
                     texts: list[str] | pa.ChunkedArray | None = None) -> pa.Table:
    """Ids, groups, keep flags and signatures (fixed-size uint32 lists) as one Arrow table; with `texts`, their
    normalised form too (what confirms a later build's match against these rows exactly), normalised a block at a
    time (never every text as a Python string at once)."""
    num_perm = signatures.shape[1]
    flat = pa.array(np.ascontiguousarray(signatures, dtype=np.uint32).reshape(-1), type=pa.uint32())
    columns = {
        "id": pa.array(ids, pa.string()),
        "group": pa.array(groups if groups is not None else [None] * len(ids), pa.string()),
        "keep": pa.array(keep, pa.bool_()),
        "signature": pa.FixedSizeListArray.from_arrays(flat, num_perm),
    }
    if texts is not None:
        texts = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
        columns["text"] = pa.chunked_array(
            [pa.array([normalize_fast(t or "") for t in texts.slice(start, _TEXT_BLOCK).to_pylist()], pa.string())
             for start in range(0, len(texts), _TEXT_BLOCK)], pa.string())
    return pa.table(columns)
