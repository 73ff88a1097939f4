"""Published views as Parquet under `OUT/<view>/` (written, and read back schema-checked), and text/JSON writers."""

from __future__ import annotations

import json
from dataclasses import dataclass

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from cotforge.schemas.views import VIEWS, check_and_migrate
from cotforge.tasks.core.shards import write_parquet_atomic

ROWS_PER_FILE = 100_000


@dataclass(frozen=True)
class PublishedView:
    name: str
    schema_version: str
    rows: int
    files: tuple[str, ...]  # paths relative to the output folder


def write_view(out: str, view: str, table: pa.Table, metadata: dict[str, str]) -> PublishedView:
    """Write one view as `OUT/<view>/train-0000N.parquet`, replacing files of an earlier publish of it."""
    fs, root = fsspec.core.url_to_fs(out)
    folder = f"{root}/{view}"
    if fs.exists(folder):
        for old in fs.glob(f"{folder}/*.parquet"):
            fs.rm(old)
    files = []
    for index, start in enumerate(range(0, max(table.num_rows, 1), ROWS_PER_FILE)):
        relative = f"{view}/train-{index:05d}.parquet"
        write_parquet_atomic(fs, f"{root}/{relative}", table.slice(start, ROWS_PER_FILE), metadata)
        files.append(relative)
    return PublishedView(view, VIEWS[view].version, table.num_rows, tuple(files))


def write_text(out: str, relative: str, text: str | bytes) -> None:
    fs, root = fsspec.core.url_to_fs(out)
    fs.makedirs(f"{root}/{relative}".rsplit("/", 1)[0], exist_ok=True)
    with fs.open(f"{root}/{relative}", "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def read_view(source: str, view: str) -> pl.DataFrame:
    """A published view from a local output folder as a Polars frame, schema-checked and migrated."""
    fs, root = fsspec.core.url_to_fs(source)
    files = sorted(fs.glob(f"{root}/{view}/*.parquet"))
    if not files:
        available = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root) if fs.isdir(p) and not p.endswith("_work"))
        raise FileNotFoundError(f"{source} has no view {view!r}; it has {available}")
    frames = []
    for path in files:
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        name, version = meta.get("cotforge.schema_name"), meta.get("cotforge.schema_version")
        if name != view or version is None:
            raise ValueError(f"{path}: not a cotforge {view!r} file (schema name {name!r}, version {version!r})")
        frames.append(check_and_migrate(pl.from_arrow(table), view, version))
    return pl.concat(frames) if len(frames) > 1 else frames[0]


def dumps_json(payload: dict) -> str:
    return json.dumps(payload, indent=2, sort_keys=True, default=str)
