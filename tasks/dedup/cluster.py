"""Clustering: exact duplicates on normalised text, then MinHash near-duplicates joined by union-find, one kept
member per cluster. Rows are flagged, never removed: each gets a cluster id (its cluster's kept member), a keep flag
and a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_dedup import MinHashConfig
from cotforge.schemas.records import DedupFlag, SampleDedupFlag, normalize_text
from cotforge.tasks.dedup.minhash import bands_rows, candidate_pairs, estimated_jaccard, minhash_signatures


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
