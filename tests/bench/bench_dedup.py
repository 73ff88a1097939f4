"""Benchmark: our dedup vs rensa 0.5.0 (Rust MinHash + LSH) and a plain datasketch loop, on one seeded corpus with
planted near-duplicates, timed interleaved in one run (ours, rensa, ours, rensa, ...; best round of each), so the
ratio holds on a machine other work shares.

All three do the same work: the same normalised text, the same character 5-gram shingles, exact duplicates first,
then LSH candidates checked against the threshold, keeping the earliest row of each cluster. Ours confirms each
candidate by exact Jaccard (or an estimate far enough from the threshold); rensa and datasketch check the MinHash
estimate (`jaccard`), as their users do. Precision and recall of the rows each flags are measured against exact
Jaccard on a random sample of rows: a sampled row should be dropped when exact Jaccard >= threshold links it, through
rows of its planted family, to an earlier row (planted texts share no shingles worth counting across families:
random words from 3,000, and a unique number). Peak memory: peak RSS added by our dedup (one process) in a fresh
process at N documents, scaled linearly to a million (an upper bound: part of it is fixed). With numba installed,
"ours, numpy kernel" is our dedup with the compiled kernels switched off (`kernels.USE_COMPILED = False`, one process),
so the compiled kernels' gain is measured in the same run; the two must flag the same rows.

    python -m tests.bench.bench_dedup [--docs 20000 200000] [--baseline-docs 3000] [--workers 2]

The last line (scripts read it) is `dedup: docs=N speed_vs_rensa=X precision=P recall=R` for the largest size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

from datasketch import MinHash, MinHashLSH

from cotforge.schemas.config_dedup import MinHashConfig
from cotforge.schemas.records import normalize_text
from cotforge.tasks.dedup import kernels
from cotforge.tasks.dedup.cluster import UnionFind, cluster_texts

CONFIG = MinHashConfig(threshold=0.8, num_perm=128, shingle="chars", shingle_size=5, keep=["earliest"])
RENSA_BANDS = 16  # rensa wants bands dividing num_perm: 16 x 8 (32 x 4 would check twice the candidates)


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


def library_loop(texts: list[str], config: MinHashConfig, lsh, sketch) -> list[bool]:
    """The plain way to dedup with a MinHash library: exact dedup by normalised text, then per document a sketch of
    its character shingles (`sketch(shingles)`), an LSH query, the estimate of each candidate checked against the
    threshold, an insert; the earliest member of each cluster kept."""
    n = len(texts)
    uf = UnionFind(n)
    first: dict[str, int] = {}
    sketches = {}
    size = config.shingle_size
    for i, text in enumerate(texts):
        norm = normalize_text(text)
        j = first.setdefault(norm, i)
        if j != i:
            uf.union(j, i)
            continue
        data = norm.encode()
        m = sketch([data[k:k + size] for k in range(max(len(data) - size + 1, 1))])
        for c in lsh.query(m):
            if m.jaccard(sketches[c]) >= config.threshold:
                uf.union(c, i)
        lsh.insert(i, m)
        sketches[i] = m
    return [uf.find(i) == i for i in range(n)]


def datasketch_loop(texts: list[str], config: MinHashConfig) -> list[bool]:
    """datasketch in its ordinary, fastest use: its default shingle hash (sha1) and a batched update."""
    def sketch(shingles):
        m = MinHash(num_perm=config.num_perm, seed=config.seed)
        m.update_batch(shingles)
        return m
    return library_loop(texts, config, MinHashLSH(threshold=config.threshold, num_perm=config.num_perm), sketch)


def exact_truth(texts: list[str], base: list[int], sample: list[int], config: MinHashConfig,
                universe: int | None = None) -> set[int]:
    """The sampled rows (among the first `universe`) that exact Jaccard says should be dropped, keeping the earliest
    row of each group linked by J >= threshold within its planted family."""
    universe = len(texts) if universe is None else universe
    families: dict[int, list[int]] = {}
    for i in range(universe):
        families.setdefault(base[i], []).append(i)
    drop = set()
    for family in {base[i] for i in sample if i < universe}:
        members = families[family]
        sets = [shingle_set(texts[i], config) for i in members]
        uf = UnionFind(len(members))
        for a, b in exact_jaccard_pairs(sets, config.threshold):
            uf.union(a, b)
        drop.update(members[k] for k in range(len(members)) if uf.find(k) != k)
    return drop & set(sample)


def rensa_loop(texts: list[str], config: MinHashConfig) -> list[bool]:
    """rensa driven like the datasketch loop: an RMinHash of the same shingles per document."""
    from rensa import RMinHash, RMinHashLSH

    def sketch(shingles):
        m = RMinHash(config.num_perm, config.seed)
        m.update(shingles)
        return m
    return library_loop(texts, config, RMinHashLSH(config.threshold, config.num_perm, RENSA_BANDS), sketch)


def _ours(texts: list[str], workers: int, compiled: bool = True) -> list[bool]:
    """Our dedup; `compiled=False` runs it on the numpy kernels (switched back afterwards)."""
    kernels.USE_COMPILED = compiled
    try:
        return cluster_texts([str(i) for i in range(len(texts))], texts, CONFIG, workers=workers).keep
    finally:
        kernels.USE_COMPILED = True


def _scores(keep: list[bool], sample: list[int], truth: set[int]) -> tuple[float, float]:
    dropped = {i for i in sample if not keep[i]}
    hit = len(dropped & truth)
    return hit / max(len(dropped), 1), hit / max(len(truth), 1)


def _rss_child(docs: int, seed: int, workers: int) -> dict:
    """Run in a fresh process: peak RSS the dedup adds on top of the corpus. The peak is this process's own VmHWM,
    reset after the corpus is built (ru_maxrss would not do: Linux carries the parent's RSS at fork across exec, so it
    reported the whole benchmark's RSS)."""
    texts, _ = planted_corpus(docs, seed)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := the RSS now
    with open("/proc/self/statm") as f:
        before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    _ours(texts, workers)
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    return {"docs": docs, "added": peak - before}


def peak_rss(docs: int, seed: int, workers: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "tests.bench.bench_dedup", "--rss-child", str(docs), "--seed",
                          str(seed), "--workers", str(workers)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(docs: int, baseline_docs: int, seed: int = 0, rounds: int = 2, workers: int = 2, sample_size: int = 5_000,
        rensa: bool = True) -> dict:
    texts, base = planted_corpus(docs, seed)
    sample = sorted(random.Random(seed + 1).sample(range(docs), min(sample_size, docs)))
    truth = exact_truth(texts, base, sample, CONFIG)
    best = {"ours_1": float("inf"), f"ours_{workers}": float("inf"), "rensa": float("inf")}
    if kernels.compiled() is not None:  # else "ours" already is the numpy path
        best["numpy_1"] = float("inf")
    keeps = {}
    for _ in range(rounds):  # interleaved: every contender sees the same machine load
        for name, fastest in list(best.items()):
            if name == "rensa" and not rensa:
                continue
            start = time.perf_counter()
            if name == "rensa":
                keeps[name] = rensa_loop(texts, CONFIG)
            else:
                keeps[name] = _ours(texts, int(name.split("_")[1]), compiled=not name.startswith("numpy"))
            best[name] = min(fastest, time.perf_counter() - start)
    prefix = texts[:baseline_docs]  # the plain loop is slow: timed on a prefix, scored on the sample rows in it
    start = time.perf_counter()
    plain = datasketch_loop(prefix, CONFIG)
    plain_s = time.perf_counter() - start
    prefix_sample = [i for i in sample if i < baseline_docs]
    result = {"docs": docs, "sample": len(sample), "should_drop_in_sample": len(truth), "rounds": rounds,
              "workers": workers, "load_avg": os.getloadavg()[0]}
    for name, seconds in best.items():
        if name in keeps:
            result[f"{name}_docs_per_s"] = docs / seconds
            result[f"{name}_precision"], result[f"{name}_recall"] = _scores(keeps[name], sample, truth)
    result["datasketch_docs_per_s"] = baseline_docs / plain_s
    result["datasketch_precision"], result["datasketch_recall"] = _scores(
        plain + [True] * (docs - baseline_docs), prefix_sample,
        exact_truth(texts, base, prefix_sample, CONFIG, universe=baseline_docs))
    ours = result["ours"] = "ours_1"  # the default (one process) is the figure compared; more processes are shown
    if rensa:
        result["speed_vs_rensa"] = result[f"{ours}_docs_per_s"] / result["rensa_docs_per_s"]
    if "numpy_1" in keeps:
        result["speed_vs_numpy_kernel"] = result[f"{ours}_docs_per_s"] / result["numpy_1_docs_per_s"]
        result["kernels_agree"] = keeps["numpy_1"] == keeps[ours]  # every row flagged alike
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--baseline-docs", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=5_000)
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory processes")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        print(json.dumps(_rss_child(args.rss_child, args.seed, args.workers)))
        return []
    try:
        import rensa  # noqa: F401
        has_rensa = True
    except ImportError:
        has_rensa = False
        print("rensa is not installed (pip install rensa==0.5.0; the test extra pins it): no rensa column")
    results = []
    print(f"threshold {CONFIG.threshold}, num_perm {CONFIG.num_perm}, char {CONFIG.shingle_size}-grams; rensa "
          f"{RENSA_BANDS} bands; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'docs':>8} {'contender':<22} {'docs/s':>9} {'precision':>9} {'recall':>7}")
    for docs in args.docs:
        r = run(docs, min(args.baseline_docs, docs), args.seed, args.rounds, args.workers, args.sample, has_rensa)
        if not args.no_rss:
            full = peak_rss(docs, args.seed, 1)  # the default: one process
            r["peak_mib_measured"] = full["added"] / 2**20
            r["peak_mib_per_million"] = r["peak_mib_measured"] * 1_000_000 / docs  # linear from 0: an upper bound
        rows = [("ours (1 process)", "ours_1"), (f"ours ({args.workers} processes)", f"ours_{args.workers}"),
                ("ours, numpy kernel", "numpy_1"), ("rensa 0.5.0 loop", "rensa"),
                (f"datasketch (first {min(args.baseline_docs, docs)})", "datasketch")]
        for label, key in rows:
            if f"{key}_docs_per_s" in r:
                print(f"{docs:>8} {label:<22} {r[f'{key}_docs_per_s']:>9.0f} {r[f'{key}_precision']:>9.3f} "
                      f"{r[f'{key}_recall']:>7.3f}")
        if "speed_vs_numpy_kernel" in r:
            print(f"{docs:>8} compiled kernels {r['speed_vs_numpy_kernel']:.2f}x the numpy kernels (one process); "
                  f"same rows flagged: {r['kernels_agree']}")
        else:
            print(f"{docs:>8} numba is not installed (pip install cotforge[fast]): ours ran the numpy kernels")
        print(f"{docs:>8} sample {r['sample']} rows, {r['should_drop_in_sample']} should be dropped; best of "
              f"{r['rounds']} interleaved rounds; load average {r['load_avg']:.1f} at the end")
        if "peak_mib_per_million" in r:
            print(f"{docs:>8} peak memory: {r['peak_mib_per_million']:.0f} MiB per million docs (peak RSS the dedup "
                  f"added in a fresh process, one process: {r['peak_mib_measured']:.0f} MiB at {docs} docs, scaled "
                  "linearly; `--rss-child 1000000` measures a million directly)")
        results.append(r)
    last = results[-1]
    ours = last["ours"]
    speed = f"{last['speed_vs_rensa']:.1f}" if "speed_vs_rensa" in last else "nan"
    print(f"dedup: docs={last['docs']} speed_vs_rensa={speed} precision={last[f'{ours}_precision']:.2f} "
          f"recall={last[f'{ours}_recall']:.2f}")
    return results


if __name__ == "__main__":
    main()
