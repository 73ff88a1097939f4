"""Compiled dedup kernels (numba), optional: which path runs is decided by `compiled()` alone.

- numba installed (the `fast` extra; the `test` extra includes it) and `USE_COMPILED`: the loops below, compiled with
  `numba.njit(cache=True, nogil=True)` on their first call, run: `minhash._min_permuted` (the MinHash permutation
  minimum, one fused pass) and `confirm.exact_jaccard` (sorted-set intersection sizes).
- numba missing (or failing to import), or `USE_COMPILED = False` (tests force the fallback this way): the numpy paths
  in `minhash` and `confirm` run. Both paths give bit-identical results (tests compare them, and datasketch).

Compile cost, once per machine: with an empty numba cache the first calls take 3-4.5 s (measured on 2 shared cores:
0.2 s importing numba, 2.5-4 s compiling `min_permuted`, 0.15-0.25 s `intersection_sizes`); later processes load the
machine code from numba's cache (`__pycache__` beside this file, or numba's per-user cache where that is read-only;
`NUMBA_CACHE_DIR` overrides both) in ~0.2 s; with neither writable, a warning, and every process compiles. Processes
that compile at once each write the cache atomically (tested), and forked workers inherit what their parent compiled.
`nogil`: threads calling a kernel run it in parallel.

The functions here are plain Python loops (no numpy vector calls), written for numba. `min_permuted` and
`intersection_sizes` are never run uncompiled; `link_band` (the clustering's union-find pass over one LSH band) has no
numpy form, so without numba `cluster` runs its loops as plain Python: the same links, slower.
"""

from __future__ import annotations

import functools
import warnings
from types import SimpleNamespace

import numpy as np

USE_COMPILED = True  # False forces the numpy paths (tests compare the two)


def _min_permuted_loops(hv, offsets, a, b, out):
    """out[d, k] = min over hv[offsets[d]:offsets[d + 1]] of (a[k] * h + b[k]) mod 2^32 (all uint32); an empty
    range gives 2^32 - 1 (datasketch's empty MinHash).

    Permutations innermost, so the loop over k vectorises (SIMD multiply, add, min on uint32 lanes) while the row of
    minima stays in L1; four shingles per pass over the row, so each load and store of a minimum serves four."""
    num_perm = out.shape[1]
    mins = np.empty(num_perm, dtype=np.uint32)
    for d in range(out.shape[0]):
        mins[:] = 0xFFFFFFFF
        i, end = offsets[d], offsets[d + 1]
        while i + 3 < end:
            h0, h1, h2, h3 = hv[i], hv[i + 1], hv[i + 2], hv[i + 3]
            for k in range(num_perm):
                a_k, b_k = a[k], b[k]
                # numba widens uint32 products to 64 bits: np.uint32() truncates, which is the wrap mod 2^32
                low = min(np.uint32(a_k * h0 + b_k), np.uint32(a_k * h1 + b_k))
                high = min(np.uint32(a_k * h2 + b_k), np.uint32(a_k * h3 + b_k))
                mins[k] = min(mins[k], min(low, high))
            i += 4
        while i < end:
            h = hv[i]
            for k in range(num_perm):
                mins[k] = min(mins[k], np.uint32(a[k] * h + b[k]))
            i += 1
        out[d, :] = mins


def _shared(offsets, values, a, b):
    """|set(a) & set(b)| for rows a, b of a CSR of sorted, distinct values (a merge walk)."""
    i, i_end = offsets[a], offsets[a + 1]
    j, j_end = offsets[b], offsets[b + 1]
    shared = 0
    while i < i_end and j < j_end:
        x, y = values[i], values[j]
        shared += x == y
        i += x <= y
        j += y <= x
    return shared


def _intersection_sizes_loops(offsets, values, first, second, out):
    """out[p] = |set(first[p]) & set(second[p])| for rows of a CSR of sorted, distinct values."""
    for p in range(first.size):
        out[p] = _shared(offsets, values, first[p], second[p])


def _root(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


def _link_band_loops(band, members, bucket_offsets, keys, was_rep, parent, signatures, shingle_row, shingle_offsets,
                     shingle_values, n_current, lo, hi, threshold, max_reps, reps, edges, edge_sims, counters):
    """One union-find pass over one LSH band's buckets (`members[bucket_offsets[b]:bucket_offsets[b + 1]]`, nodes in
    ascending order). Each bucket keeps representatives (at most `max_reps`); a member is compared with each
    representative of another cluster than its own (those of its own are passed over: counters[4]), so one member
    can join several clusters. The signature estimate decides below `lo` (not similar) or at `hi` and above
    (similar); exact Jaccard of the shingle sets decides in between (counters[2]), or, where a set is missing
    (shingle_row -1), the estimate against `threshold` (counters[3]). A similar pair joins its two clusters and is
    appended to `edges`/`edge_sims` (counters[0] of them). A member that joined nothing here becomes a
    representative, even one already in a representative's cluster: similarity is not transitive, so a later member
    may match it and no earlier member of its cluster. Nodes >= n_current (rows of earlier versions) are never
    compared with each other, and a pair is compared once: not again in a later band when it shared the bucket of an
    earlier one (`keys`, (nodes, bands)) whose representative its first node was (`was_rep`, set here), counters[5].
    counters[1]: pairs compared. Work per member is bounded by `max_reps`, never by the bucket's size."""
    num_perm = signatures.shape[1]
    for b in range(bucket_offsets.size - 1):
        start, end = bucket_offsets[b], bucket_offsets[b + 1]
        n_reps = 0
        for m in range(start, end):
            x = members[m]
            linked = False
            for k in range(n_reps):
                r = reps[k]
                if x >= n_current and r >= n_current:
                    continue
                root_r, root_x = _root(parent, r), _root(parent, x)
                if root_r == root_x:  # already joined: nothing to check
                    counters[4] += 1
                    continue
                seen = False
                for earlier in range(band):
                    if was_rep[r, earlier] and keys[r, earlier] == keys[x, earlier]:
                        seen = True  # compared in that band, and not similar (else joined now)
                        break
                if seen:
                    counters[5] += 1
                    continue
                equal = 0
                for j in range(num_perm):
                    equal += signatures[x, j] == signatures[r, j]
                similarity = equal / num_perm
                counters[1] += 1
                if similarity < lo:
                    continue
                if similarity < hi:
                    row_x, row_r = shingle_row[x], shingle_row[r]
                    if row_x < 0 or row_r < 0:
                        counters[3] += 1
                        if similarity < threshold:
                            continue
                    else:
                        size = (shingle_offsets[row_x + 1] - shingle_offsets[row_x]
                                + shingle_offsets[row_r + 1] - shingle_offsets[row_r])
                        shared = _shared(shingle_offsets, shingle_values, row_x, row_r)
                        union = size - shared
                        similarity = shared / union if union > 0 else 1.0
                        counters[2] += 1
                        if similarity < threshold:
                            continue
                parent[max(root_r, root_x)] = min(root_r, root_x)
                edges[counters[0], 0] = r
                edges[counters[0], 1] = x
                edge_sims[counters[0]] = similarity
                counters[0] += 1
                linked = True
            if not linked and n_reps < max_reps:
                reps[n_reps] = x
                was_rep[x, band] = True
                n_reps += 1


def link_band_python():
    """`link_band` as plain Python (no numba): same links, for installs without the `fast` extra."""
    return _link_band_loops


def compiled() -> SimpleNamespace | None:
    """The compiled kernels (`min_permuted`, `intersection_sizes`) when numba imports and `USE_COMPILED`, else None
    (the callers then run their numpy paths)."""
    return _jitted() if USE_COMPILED else None


@functools.cache
def _jitted() -> SimpleNamespace | None:
    try:
        import numba
    except ImportError:  # numba not installed, or a build that does not match this numpy
        return None
    try:
        return _compile_with(numba.njit(cache=True, nogil=True))
    except RuntimeError as error:  # numba found no writable cache folder: compile in every process instead
        warnings.warn(f"dedup kernels: numba cannot cache ({error}); set NUMBA_CACHE_DIR to a writable folder, or "
                      "each process compiles them again (~3 s)", RuntimeWarning, stacklevel=3)
        return _compile_with(numba.njit(nogil=True))


def _compile_with(jit) -> SimpleNamespace:
    helpers = {"_root": jit(_root), "_shared": jit(_shared)}  # the compiled loops call the compiled helpers

    def compiled_with_helpers(loops):
        return jit(type(loops)(loops.__code__, loops.__globals__ | helpers, loops.__name__))

    return SimpleNamespace(min_permuted=jit(_min_permuted_loops),
                           intersection_sizes=compiled_with_helpers(_intersection_sizes_loops),
                           link_band=compiled_with_helpers(_link_band_loops))
