"""MinHash indexes that outlive a build: the per-version index a published dataset stores (the shared Redis index is
in `shared_index.py`).

Each published version writes `OUT/index/<version>/{questions,samples}.parquet`: the rows' ids, groups, signatures
and (index format 2) normalised texts, with the MinHash parameters in the Parquet metadata. Since index format 3 the
rows the version dropped (near-duplicates, contaminated) are there too, marked `kept` false: a question dropped through
a bridging question (C near B near A, C not near A) is matched by a later version through its own signature, never
published as new. The next build reads every earlier version's index, kept and dropped rows alike (from its own
folder, from folders listed in the recipe, and from Hub repos via `snapshot_download`) and flags rows that match one
as "earlier_version". The texts let a match near the threshold be
confirmed by exact Jaccard; an index of format 1 (signatures only, written before 2026-11-30) is still read, its
matches near the threshold decided by the signature estimate (counted in the report). The LSH layout is not part of
an index (candidates are re-banded at read time), so format 1 signatures compare as they are. Indexes built with
other MinHash parameters cannot be compared and are skipped (and reported), never silently mixed.

Also here: the per-shard sketch tables that the dedup shard tasks hand to the merge.
"""

from __future__ import annotations

import hashlib
import json

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cotforge.schemas.config_dedup import MinHashConfig
from cotforge.tasks.core.shards import write_batches_atomic, write_parquet_atomic
from cotforge.tasks.dedup.cluster import PriorIndex, Sketch, signatures_table
from cotforge.tasks.dedup.lsh import bands_rows, estimated_jaccard

_COMPARABLE = ("num_perm", "seed", "shingle", "shingle_size", "hash")
SCHEME = "affine32"  # datasketch permutation scheme of our signatures
INDEX_FORMAT = 3  # 1: id, group, signature; 2: and the normalised text; 3: and the dropped rows, `kept` false


def index_params(config: MinHashConfig) -> dict:
    """The parameters that must match for two signatures to be comparable (plus what the index was built with)."""
    bands, rows = bands_rows(config)
    return {**{k: getattr(config, k) for k in _COMPARABLE}, "scheme": SCHEME, "threshold": config.threshold,
            "bands": bands, "rows": rows}


INDEX_BATCH_ROWS = 8192


def write_index(out: str, version: str, kind: str, table: pa.Table | pq.ParquetFile, config: MinHashConfig) -> str:
    """Write a signatures table, kept and dropped rows (`kept`), as this version's index of `kind`; returns the
    relative path. A `ParquetFile` (the dedup stage's index shard) is copied batch by batch: an index holds every
    row's signature and text, which the publishing build need not hold at once."""
    fs, root = fsspec.core.url_to_fs(out)
    relative = f"index/{version}/{kind}.parquet"
    schema = table.schema if isinstance(table, pa.Table) else table.schema_arrow
    names = ["kept" if c == "keep" else c for c in schema.names]
    params = {**index_params(config), "index_format": INDEX_FORMAT if "text" in names else 1}
    metadata = {"cotforge.minhash_params": json.dumps(params, sort_keys=True), "cotforge.dataset_version": version,
                "cotforge.index_kind": kind}
    if isinstance(table, pa.Table):
        write_parquet_atomic(fs, f"{root}/{relative}", table.rename_columns(names), metadata)
    else:
        renamed = pa.schema([field.with_name(name) for field, name in zip(schema, names)])
        write_batches_atomic(fs, f"{root}/{relative}", renamed, table.iter_batches(INDEX_BATCH_ROWS), metadata)
    return relative


def _hub_folder(source: str) -> str:
    """Download only the index files of a Hub dataset repo ("hf://datasets/<repo>[@revision]")."""
    from huggingface_hub import snapshot_download

    repo = source.removeprefix("hf://datasets/").removeprefix("hf://")
    repo, _, revision = repo.partition("@")
    return snapshot_download(repo_id=repo, repo_type="dataset", revision=revision or None,
                             allow_patterns=["index/*/*.parquet"])


def read_indexes(folder: str, kind: str, exclude_version: str | None = None) -> list[tuple[str, pa.Table, dict]]:
    """(version, table, params) of every version's index of `kind` under a dataset folder."""
    fs, root = fsspec.core.url_to_fs(folder)
    found = []
    for path in sorted(fs.glob(f"{root}/index/*/{kind}.parquet")):
        version = path.rsplit("/", 2)[-2]
        if version == exclude_version:
            continue
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        found.append((version, table, json.loads(meta.get("cotforge.minhash_params", "{}"))))
    return found


def earlier_index(out: str, version: str, sources: list[str], kind: str, config: MinHashConfig,
                  skipped: list[str] | None = None) -> PriorIndex | None:
    """Every earlier version's signatures (and texts, format 2) of `kind` whose parameters match `config`, as one
    PriorIndex: the rows it published and (format 3) those it dropped, which a later version must not publish
    either."""
    wanted = {k: v for k, v in index_params(config).items() if k in _COMPARABLE or k == "scheme"}
    ids, groups, texts, blocks = [], [], [], []
    folders = [(out, version)] + [(_hub_folder(s) if s.startswith("hf://") else s, None) for s in sources]
    for folder, exclude in folders:
        for found_version, table, params in read_indexes(folder, kind, exclude):
            if any(params.get(k) != v for k, v in wanted.items()):
                if skipped is not None:
                    skipped.append(f"{folder} version {found_version}: MinHash parameters differ ({params})")
                continue
            ids += table.column("id").to_pylist()
            groups += table.column("group").to_pylist()
            texts += table.column("text").to_pylist() if "text" in table.column_names else [None] * table.num_rows
            flat = table.column("signature").combine_chunks().flatten().to_numpy()
            blocks.append(flat.reshape(-1, config.num_perm).astype(np.uint32))
    if not ids:
        return None
    return PriorIndex(ids, np.concatenate(blocks), groups, texts)


def index_fingerprint(prior: PriorIndex | None) -> str:
    """A short hash of an earlier index, so a cached dedup shard is reused only against the same earlier rows."""
    if prior is None:
        return "none"
    digest = hashlib.sha256("\x1f".join(prior.ids).encode())
    digest.update(np.ascontiguousarray(prior.signatures).tobytes())
    digest.update("\x1f".join(t if t is not None else "\x00" for t in prior.texts).encode())
    return digest.hexdigest()[:16]


def sketch_table(ids: list[str], sketch: Sketch) -> pa.Table:
    """One shard's sketches (what the dedup shard tasks write for the merge)."""
    flat = pa.array(np.ascontiguousarray(sketch.signatures, dtype=np.uint32).reshape(-1), type=pa.uint32())
    return pa.table({"id": pa.array(ids, pa.string()), "key": pa.array(sketch.keys, pa.uint64()),
                     "length": pa.array(sketch.lengths, pa.int64()),
                     "signature": pa.FixedSizeListArray.from_arrays(flat, sketch.signatures.shape[1])})


def sketch_from_table(table: pa.Table, num_perm: int) -> Sketch:
    flat = table.column("signature").combine_chunks().flatten().to_numpy()
    return Sketch(table.column("key").to_numpy(), table.column("length").to_numpy(),
                  flat.reshape(-1, num_perm).astype(np.uint32))


__all__ = ["earlier_index", "estimated_jaccard", "index_fingerprint", "read_indexes", "signatures_table",
           "sketch_from_table", "sketch_table", "write_index"]
