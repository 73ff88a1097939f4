"""The joined stage records of a build, one bucket of question ids at a time and in order, so publishing holds one
bucket's rows rather than every row of the build (issue 26: a build's peak memory).

Two passes. The stage shards are read in groups of consecutive shards (a question shard and its samples, verdicts,
votes and step labels line up), each group is joined (`join_records`) and its rows are spilled to the bucket of their
question id: buckets are ranges of question ids of about BUCKET_SAMPLES samples each. Then each bucket is read back
and sorted as `join_records` sorts. Question ids are unique in a build and every join key is a question or one of its
samples, so the buckets, concatenated, are `join_records` of all the records, row for row and in the same order.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import polars as pl
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from cotforge.tasks.core.join import RecordRefs, join_records, read_records
from cotforge.tasks.core.shards import ShardRef, ShardStore

BUCKET_SAMPLES = 20_000  # samples per bucket (and per group of shards read at once)


@dataclass
class Bucket:
    """The joined records of a range of question ids (sorted by question id, then sample index) and their step
    labels (None when the step-label stage did not run)."""

    joined: pl.DataFrame
    step_labels: pl.DataFrame | None


def bucket_bounds(samples: int, per_bucket: int = BUCKET_SAMPLES) -> pl.Series:
    """The first question id of every bucket but the first: the 64-bit range of question ids (16 hex digits, a hash
    of the text: `question_id_for`) cut in equal parts, one per `per_bucket` samples, so a bucket holds about that
    many without any id being read. Any other id still lands in exactly one bucket, in order."""
    buckets = max(1, -(-samples // per_bucket))
    return pl.Series([f"{(part << 64) // buckets:016x}" for part in range(1, buckets)], dtype=pl.String)


def shard_groups(samples: list[ShardRef], per_group: int = BUCKET_SAMPLES) -> list[range]:
    """Consecutive shard positions holding about `per_group` samples each."""
    groups, start, rows = [], 0, 0
    for position, ref in enumerate(samples):
        rows += ref.rows
        if rows >= per_group:
            groups.append(range(start, position + 1))
            start, rows = position + 1, 0
    if start < len(samples) or not groups:
        groups.append(range(start, len(samples)))
    return groups


class _Spill:
    """One Parquet file per bucket (and kind of rows), appended to group after group."""

    def __init__(self, folder: str):
        self.folder = folder
        self.writers: dict[tuple[str, int], pq.ParquetWriter] = {}

    def write(self, kind: str, frame: pl.DataFrame, bucket: pl.Series) -> None:
        for (index,), part in frame.with_columns(_bucket=bucket).partition_by("_bucket", as_dict=True).items():
            table = part.drop("_bucket").to_arrow()
            writer = self.writers.get((kind, index))
            if writer is None:
                writer = self.writers[(kind, index)] = pq.ParquetWriter(self.path(kind, index), table.schema,
                                                                        compression="lz4")
            writer.write_table(table)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()

    def path(self, kind: str, index: int) -> str:
        return f"{self.folder}/{kind}-{index:06d}.parquet"

    def read(self, kind: str, index: int) -> pl.DataFrame | None:
        return pl.read_parquet(self.path(kind, index)) if (kind, index) in self.writers else None


@contextmanager
def _spill_folder(store: ShardStore) -> Iterator[str]:
    """A scratch folder beside the build's shards when they are on local disk (sized for the build), else in the
    system's temporary folder; removed afterwards (and a killed build's leftovers, before: one build per output)."""
    if isinstance(store.fs, LocalFileSystem):
        folder = f"{store.root}/_work/publish-spill"
        shutil.rmtree(folder, ignore_errors=True)
        store.fs.makedirs(folder, exist_ok=True)
    else:
        folder = tempfile.mkdtemp(prefix="cotforge-publish-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def joined_buckets(store: ShardStore, refs: dict[str, list[ShardRef]], per_bucket: int | None = None,
                   on_group: Callable[[dict[str, pl.DataFrame | None]], None] | None = None) -> Iterator[Bucket]:
    """`join_records` of the build's stage records (and its step labels), bucket by bucket of question ids in order,
    about `per_bucket` samples each (default BUCKET_SAMPLES). Yields at least one bucket (with no rows when the build
    has none). `on_group(records)` sees each group's records (`read_records`, and "step_labels") as they are read:
    every shard is read once, for the buckets and whatever else the caller counts."""
    per_bucket = per_bucket or BUCKET_SAMPLES
    bounds = bucket_bounds(sum(r.rows for r in refs["samples"]), per_bucket)
    labels = refs.get("step_labels")
    empty: Bucket | None = None
    with _spill_folder(store) as folder:
        spill = _Spill(folder)
        try:
            for group in shard_groups(refs["samples"], per_bucket):
                pick = lambda kind: [refs[kind][i] for i in group]  # noqa: E731
                records = read_records(store, RecordRefs(pick("questions"), pick("samples"), pick("verdicts"),
                                                         pick("votes"), refs["dedup"], refs.get("sample_dedup") or []))
                step_labels = pl.from_arrow(store.read_all(pick("step_labels"))) if labels else None
                if on_group is not None:
                    on_group({**records, "step_labels": step_labels})
                joined = join_records(**records)
                del records
                if empty is None:
                    empty = Bucket(joined.head(0), step_labels.head(0) if step_labels is not None else None)
                spill.write("joined", joined, bounds.search_sorted(joined["question_id"], side="right"))
                if step_labels is not None:
                    spill.write("labels", step_labels,
                                bounds.search_sorted(step_labels["question_id"], side="right"))
                del joined, step_labels
        finally:
            spill.close()
        found = False
        for index in range(len(bounds) + 1):
            joined = spill.read("joined", index)
            if joined is None:
                continue
            found = True
            step_labels = spill.read("labels", index) if labels else None
            if labels and step_labels is None:
                step_labels = empty.step_labels  # none of its samples was picked: no labels, not labels made up
            yield Bucket(joined.sort("question_id", "sample_index"), step_labels)
        if not found:
            yield empty
