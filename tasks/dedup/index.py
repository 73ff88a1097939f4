"""MinHash indexes that outlive a build: the per-version index a published dataset stores, and a shared Redis index.

Each published version writes `OUT/index/<version>/{questions,samples}.parquet`: the kept rows' ids, groups and
signatures, with the MinHash parameters in the Parquet metadata. The next build reads every earlier version's index
(from its own folder, from folders listed in the recipe, and from Hub repos via `snapshot_download`) and flags rows
that match one as "earlier_version". Indexes built with other parameters cannot be compared and are skipped (and
reported), never silently mixed.
"""

from __future__ import annotations

import hashlib
import json
import pickle

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cotforge.schemas.config_dedup import DedupConfig, MinHashConfig, RedisIndexConfig
from cotforge.schemas.records import stable_id
from cotforge.tasks.core.shards import write_parquet_atomic
from cotforge.tasks.dedup.cluster import Clustering, PriorIndex, signatures_table
from cotforge.tasks.dedup.minhash import bands_rows, estimated_jaccard

_COMPARABLE = ("num_perm", "seed", "shingle", "shingle_size", "hash")
SCHEME = "affine32"  # datasketch permutation scheme of our signatures


def index_params(config: MinHashConfig) -> dict:
    """The parameters that must match for two signatures to be comparable (plus what the index was built with)."""
    bands, rows = bands_rows(config)
    return {**{k: getattr(config, k) for k in _COMPARABLE}, "scheme": SCHEME, "threshold": config.threshold,
            "bands": bands, "rows": rows}


def write_index(out: str, version: str, kind: str, table: pa.Table, config: MinHashConfig) -> str:
    """Write the kept rows of a signatures table as this version's index of `kind`; returns the relative path."""
    fs, root = fsspec.core.url_to_fs(out)
    relative = f"index/{version}/{kind}.parquet"
    kept = table.filter(table.column("keep"))
    write_parquet_atomic(fs, f"{root}/{relative}", kept.drop(["keep"]),
                         {"cotforge.minhash_params": json.dumps(index_params(config), sort_keys=True),
                          "cotforge.dataset_version": version, "cotforge.index_kind": kind})
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
    """Every earlier version's kept signatures of `kind` whose parameters match `config`, as one PriorIndex."""
    wanted = {k: v for k, v in index_params(config).items() if k in _COMPARABLE or k == "scheme"}
    ids, groups, blocks = [], [], []
    folders = [(out, version)] + [(_hub_folder(s) if s.startswith("hf://") else s, None) for s in sources]
    for folder, exclude in folders:
        for found_version, table, params in read_indexes(folder, kind, exclude):
            if any(params.get(k) != v for k, v in wanted.items()):
                if skipped is not None:
                    skipped.append(f"{folder} version {found_version}: MinHash parameters differ ({params})")
                continue
            ids += table.column("id").to_pylist()
            groups += table.column("group").to_pylist()
            flat = table.column("signature").combine_chunks().flatten().to_numpy()
            blocks.append(flat.reshape(-1, config.num_perm).astype(np.uint32))
    if not ids:
        return None
    return PriorIndex(ids, np.concatenate(blocks), groups)


def index_fingerprint(prior: PriorIndex | None) -> str:
    """A short hash of an earlier index, so a cached dedup shard is reused only against the same earlier rows."""
    if prior is None:
        return "none"
    digest = hashlib.sha256("\x1f".join(prior.ids).encode())
    digest.update(np.ascontiguousarray(prior.signatures).tobytes())
    return digest.hexdigest()[:16]


# --- shared index in Redis (datasketch storage backend) ---------------------------------------------------------


def shared_lsh(redis: RedisIndexConfig, config: MinHashConfig, kind: str):
    """A datasketch `MinHashLSH` whose buckets live in Redis, shared by every worker that names the same basename."""
    from datasketch import MinHashLSH

    basename = f"{redis.basename}:{kind}:{stable_id(json.dumps(index_params(config), sort_keys=True), length=8)}"
    return MinHashLSH(num_perm=config.num_perm, params=bands_rows(config), storage_config={
        "type": "redis", "basename": basename.encode(),
        "redis": {"host": redis.host, "port": redis.port, "db": redis.db}})


def _lean(signature: np.ndarray, seed: int):
    from datasketch import LeanMinHash

    return LeanMinHash(seed=seed, hashvalues=signature, scheme=SCHEME)


def insert_shared(lsh, ids: list[str], signatures: np.ndarray, seed: int) -> None:
    """Insert rows into the shared index; the key carries the signature so other workers can verify candidates."""
    with lsh.insertion_session(buffer_size=5000) as session:
        for row_id, signature in zip(ids, signatures):
            session.insert(pickle.dumps((row_id, signature.astype(np.uint32).tobytes())), _lean(signature, seed),
                           check_duplication=False)


def query_shared(lsh, signatures: np.ndarray, seed: int, threshold: float) -> list[tuple[str, float] | None]:
    """For each signature, the most similar row already in the shared index at or above `threshold`, or None."""
    out: list[tuple[str, float] | None] = []
    for signature in signatures:
        best = None
        for key in lsh.query(_lean(signature, seed)):
            row_id, raw = pickle.loads(key)
            other = np.frombuffer(raw, dtype=np.uint32)
            similarity = float((other == signature).mean())
            if similarity >= threshold and (best is None or similarity > best[1]):
                best = (row_id, similarity)
        out.append(best)
    return out


def shared_index_filter(table: pa.Table, result: Clustering, config: DedupConfig, kind: str) -> pa.Table:
    """Check this build's kept rows against the shared Redis index (rows other workers or builds inserted), flag
    matches "earlier_version", and insert the rows that stay kept."""
    lsh = shared_lsh(config.redis, config.questions, kind)
    mh = config.questions
    keep = table.column("keep").to_pylist()
    ids = table.column("question_id").to_pylist()
    kept = [i for i, k in enumerate(keep) if k]
    matches = query_shared(lsh, result.signatures[kept], mh.seed, mh.threshold)
    cluster, reason, similarity = (table.column(c).to_pylist() for c in ("cluster_id", "drop_reason", "similarity"))
    fresh = []
    for i, match in zip(kept, matches):
        if match is not None and match[0] != ids[i]:
            keep[i], reason[i], cluster[i], similarity[i] = False, "earlier_version", match[0], match[1]
        elif match is None:
            fresh.append(i)
    insert_shared(lsh, [ids[i] for i in fresh], result.signatures[fresh], mh.seed)
    for name, values in (("keep", keep), ("drop_reason", reason), ("cluster_id", cluster),
                         ("similarity", similarity)):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(name), pa.array(values, table.schema.field(name).type))
    return table


__all__ = ["earlier_index", "estimated_jaccard", "index_fingerprint", "insert_shared", "query_shared",
           "read_indexes", "shared_lsh", "signatures_table", "write_index"]
