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

The functions here are plain Python loops (no numpy vector calls), written for numba; they are never run uncompiled.
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


def _intersection_sizes_loops(offsets, values, first, second, out):
    """out[p] = |set(first[p]) & set(second[p])| for rows of a CSR of sorted, distinct values (a merge walk)."""
    for p in range(first.size):
        i, i_end = offsets[first[p]], offsets[first[p] + 1]
        j, j_end = offsets[second[p]], offsets[second[p] + 1]
        shared = 0
        while i < i_end and j < j_end:
            x, y = values[i], values[j]
            shared += x == y
            i += x <= y
            j += y <= x
        out[p] = shared


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
    return SimpleNamespace(min_permuted=jit(_min_permuted_loops), intersection_sizes=jit(_intersection_sizes_loops))
