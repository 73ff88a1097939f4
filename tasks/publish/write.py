"""Published views as Parquet under `OUT/<view>/` (written, and read back schema-checked), and text/JSON writers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from cotforge.schemas.views import VIEWS, check_and_migrate
from cotforge.tasks.core.shards import write_parquet_atomic
from cotforge.tasks.views.formats import convert_table

ROWS_PER_FILE = 100_000


@dataclass(frozen=True)
class PublishedView:
    name: str
    schema_version: str
    rows: int
    files: tuple[str, ...]  # paths relative to the output folder
    new_rows: int = 0  # rows this version added (`added_in` = this version)
    carried_rows: int = 0  # rows carried unchanged from the previous version
    rows_sha256: str = ""  # `rows_digest` of the view's rows: same rows, same digest
    format: str = ""  # the TRL format of its rows (schemas/views.py FORMATS)


def write_view(out: str, view: str, table: pa.Table, metadata: dict[str, str], carried_rows: int = 0) -> PublishedView:
    """Write one view as `<out>/<view>/train-0000N.parquet` (a version folder), replacing files of an earlier publish
    of it; the first `carried_rows` rows are the previous version's."""
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
    return PublishedView(view, VIEWS[view].version, table.num_rows, tuple(files), table.num_rows - carried_rows,
                         carried_rows, rows_digest(table),
                         metadata.get("cotforge.format", VIEWS[view].default_format))


def write_text(out: str, relative: str, text: str | bytes) -> None:
    fs, root = fsspec.core.url_to_fs(out)
    fs.makedirs(f"{root}/{relative}".rsplit("/", 1)[0], exist_ok=True)
    with fs.open(f"{root}/{relative}", "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def read_view(source: str, view: str, format_: str | None = None) -> pl.DataFrame:
    """A published view from a local output folder as a Polars frame, schema-checked and migrated; in `format_`
    when given (rows converted where they can be), else in the format its files were written in."""
    return read_view_format(source, view, format_)[0]


def read_view_format(source: str, view: str, format_: str | None = None) -> tuple[pl.DataFrame, str]:
    """`read_view` and the TRL format of the frame it returns."""
    fs, root = fsspec.core.url_to_fs(source)
    files = sorted(fs.glob(f"{root}/{view}/*.parquet"))
    if not files:
        available = sorted(name for name in (p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root) if fs.isdir(p))
                           if name in VIEWS)  # not index/ nor report/
        raise FileNotFoundError(f"{source} has no view {view!r}; it has {available}")
    frames = []
    for path in files:
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        name, version = meta.get("cotforge.schema_name"), meta.get("cotforge.schema_version")
        if name != view or version is None:
            raise ValueError(f"{path}: not a cotforge {view!r} file (schema name {name!r}, version {version!r})")
        found_format = meta.get("cotforge.format")  # none before formats existed: the view's default
        frame = check_and_migrate(pl.from_arrow(table), view, version, meta.get("cotforge.version"),
                                  format_=found_format)
        if meta.get("cotforge.dataset_version"):  # a file from before `added_in`: its rows are that version's own
            frame = frame.with_columns(pl.col("added_in").fill_null(meta["cotforge.dataset_version"]))
        found_format = found_format or VIEWS[view].default_format
        format_ = format_ or found_format
        if found_format != format_:
            frame = pl.from_arrow(convert_table(frame.to_arrow(), VIEWS[view], found_format, format_))
        frames.append(frame)
    return (pl.concat(frames) if len(frames) > 1 else frames[0]), format_


def rows_digest(table: pa.Table) -> str:
    """SHA-256 of the rows as canonical JSON lines, in order: equal for equal rows whatever the Parquet bytes (row
    groups, pages, writer version) are, so "the same content" compares what a reader gets."""
    digest = hashlib.sha256()
    for batch in table.to_batches(max_chunksize=4096):
        for row in batch.to_pylist():
            digest.update(json.dumps(row, sort_keys=True, default=str).encode())
            digest.update(b"\n")
    return digest.hexdigest()


def file_sha256(fs, path: str) -> tuple[str, int]:
    """(SHA-256, size in bytes) of a file, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with fs.open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def dumps_json(payload: dict) -> str:
    return json.dumps(payload, indent=2, sort_keys=True, default=str)
