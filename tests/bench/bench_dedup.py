"""Benchmark: our batched MinHash dedup vs a plain datasketch loop on one seeded corpus with planted near-duplicates.

Prints documents per second of both and their ratio, the share of rows on which the two agree to keep or drop, and
the peak memory per million documents of ours (tracemalloc peak at N and N/2 documents, fitted as a + b * N and
evaluated at N = 1,000,000; tracemalloc sees numpy's buffers).

    python -m tests.bench.bench_dedup [--docs 4000] [--baseline-docs 4000]
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc

from datasketch import MinHash, MinHashLSH

from cotforge.schemas.config_dedup import MinHashConfig
from cotforge.schemas.records import normalize_text
from cotforge.tasks.dedup.cluster import UnionFind, cluster_texts
from cotforge.tasks.dedup.minhash import fast_hash32

CONFIG = MinHashConfig(threshold=0.8, num_perm=128, shingle="chars", shingle_size=5, keep=["earliest"])


def planted_corpus(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """n word-salad questions; about 30% are planted copies of an earlier one (exact after normalisation, or with
    1-6 word edits, so some sit near the threshold). Returns the texts and each text's base index."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
             for _ in range(3000)]
    texts, base = [], []
    for i in range(n):
        if i > 10 and rng.random() < 0.3:
            j = rng.randrange(i)
            words = texts[j].split(" ")
            kind = rng.random()
            if kind < 0.2:
                text = " ".join(words).upper() + "  "
            else:
                for _ in range(rng.randint(1, 6)):
                    k = rng.randrange(len(words))
                    if rng.random() < 0.5:
                        words[k] = rng.choice(vocab)
                    else:
                        words.insert(k, rng.choice(vocab))
                text = " ".join(words)
            texts.append(text)
            base.append(base[j])
        else:
            texts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(25, 45))) + f" {i}?")
            base.append(i)
    return texts, base


def shingle_set(text: str, config: MinHashConfig) -> set[bytes]:
    data = normalize_text(text).encode()
    size = config.shingle_size
    return {data[i:i + size] for i in range(max(len(data) - size + 1, 1))}


def exact_jaccard_pairs(sets: list[set[bytes]], threshold: float) -> set[tuple[int, int]]:
    """Every pair (i < j) whose exact Jaccard similarity is at least `threshold` (brute force)."""
    pairs = set()
    for i, a in enumerate(sets):
        for j in range(i + 1, len(sets)):
            b = sets[j]
            if min(len(a), len(b)) < threshold * max(len(a), len(b)):
                continue  # Jaccard <= min/max size ratio
            inter = len(a & b)
            if inter / (len(a) + len(b) - inter) >= threshold:
                pairs.add((i, j))
    return pairs


def datasketch_loop(texts: list[str], config: MinHashConfig) -> list[bool]:
    """The plain way: exact dedup by normalised text, then per document a MinHash updated shingle by shingle, an LSH
    query, a Jaccard check of each candidate and an insert; keep the earliest member of each cluster."""
    n = len(texts)
    uf = UnionFind(n)
    first: dict[str, int] = {}
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    sketches: dict[int, MinHash] = {}
    for i, text in enumerate(texts):
        norm = normalize_text(text)
        j = first.setdefault(norm, i)
        if j != i:
            uf.union(j, i)
            continue
        # same parameters as ours, shingle hash included (datasketch's default sha1 would make the estimates differ)
        m = MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=fast_hash32 if config.hash == "fast" else None)
        data = norm.encode()
        for k in range(max(len(data) - config.shingle_size + 1, 1)):
            m.update(data[k:k + config.shingle_size])
        for c in lsh.query(m):
            if m.jaccard(sketches[c]) >= config.threshold:
                uf.union(c, i)
        lsh.insert(i, m)
        sketches[i] = m
    return [uf.find(i) == i for i in range(n)]


def _peak_bytes(texts: list[str]) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    cluster_texts([str(i) for i in range(len(texts))], texts, CONFIG)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def run(docs: int, baseline_docs: int, seed: int = 0) -> dict:
    texts, _ = planted_corpus(docs, seed)
    ids = [str(i) for i in range(docs)]
    start = time.perf_counter()
    ours = cluster_texts(ids, texts, CONFIG)
    ours_s = time.perf_counter() - start
    subset = texts[:baseline_docs]  # the plain loop is slow: time it on a prefix, compare keeps on that prefix
    start = time.perf_counter()
    theirs = datasketch_loop(subset, CONFIG)
    theirs_s = time.perf_counter() - start
    ours_prefix = cluster_texts(ids[:baseline_docs], subset, CONFIG).keep
    agreement = sum(a == b for a, b in zip(ours_prefix, theirs)) / len(subset)
    half = _peak_bytes(texts[:docs // 2])
    full = _peak_bytes(texts)
    per_doc = max(full - half, 0) / (docs - docs // 2)
    per_million = (full - per_doc * docs) + per_doc * 1_000_000
    return {"docs": docs, "baseline_docs": baseline_docs, "ours_docs_per_s": docs / ours_s,
            "datasketch_docs_per_s": baseline_docs / theirs_s,
            "speedup": (docs / ours_s) / (baseline_docs / theirs_s), "agreement": agreement,
            "peak_mib_per_million": per_million / 2**20, "bands": ours.stats["bands"], "rows": ours.stats["rows"],
            "dropped": docs - sum(ours.keep)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--baseline-docs", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    r = run(args.docs, min(args.baseline_docs, args.docs), args.seed)
    print(f"corpus: {r['docs']} docs (seed {args.seed}), {r['dropped']} flagged as duplicates; "
          f"threshold {CONFIG.threshold}, num_perm {CONFIG.num_perm}, bands {r['bands']} x rows {r['rows']}")
    print(f"ours: {r['ours_docs_per_s']:.0f} docs/s")
    print(f"datasketch loop: {r['datasketch_docs_per_s']:.0f} docs/s (on the first {r['baseline_docs']} docs)")
    print(f"speedup: {r['speedup']:.1f}x")
    print(f"agreement on keep: {r['agreement']:.4f}")
    print(f"peak memory: {r['peak_mib_per_million']:.0f} MiB per million docs "
          f"(tracemalloc peak at {r['docs'] // 2} and {r['docs']} docs, linear fit)")
    return r


if __name__ == "__main__":
    main()
