"""Published views as Parquet under `OUT/<view>/` (written, and read back schema-checked), and text/JSON writers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from cotforge.schemas.views import VIEWS, check_and_migrate
from cotforge.tasks.core.shards import AtomicParquetWriter
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
    writer = ViewWriter(out, view, metadata)
    writer.write(table.slice(0, carried_rows), carried=True)
    writer.write(table.slice(carried_rows))
    return writer.close()


class ViewWriter:
    """One view written part by part into `<out>/<view>/train-0000N.parquet`, files of ROWS_PER_FILE rows (the same
    files, digest and counts as writing the concatenated parts at once): a view never needs to be in memory whole."""

    def __init__(self, out: str, view: str, metadata: dict[str, str]):
        self.fs, self.root = fsspec.core.url_to_fs(out)
        self.view, self.metadata = view, metadata
        if self.fs.exists(f"{self.root}/{view}"):  # files of an earlier publish of it
            for old in self.fs.glob(f"{self.root}/{view}/*.parquet"):
                self.fs.rm(old)
        self.files: list[str] = []
        self.rows = self.carried_rows = 0
        self.schema: pa.Schema | None = None
        self._digest = hashlib.sha256()
        self._file: AtomicParquetWriter | None = None

    def write(self, table: pa.Table, carried: bool = False) -> None:
        """Append rows (`carried`: the previous version's, which come first)."""
        self.schema = self.schema or table.schema
        _update_digest(self._digest, table)
        self.rows += table.num_rows
        self.carried_rows += table.num_rows if carried else 0
        while table.num_rows:
            if self._file is None:
                self._file = self._open()
            part = table.slice(0, ROWS_PER_FILE - self._file.rows)
            self._file.write(part)
            table = table.slice(part.num_rows)
            if self._file.rows == ROWS_PER_FILE:
                self._file.close()
                self._file = None

    def _open(self) -> AtomicParquetWriter:
        relative = f"{self.view}/train-{len(self.files):05d}.parquet"
        self.files.append(relative)
        return AtomicParquetWriter(self.fs, f"{self.root}/{relative}", self.schema, self.metadata)

    def close(self) -> PublishedView:
        """Close the last file (a view without rows: one empty file with its schema) and say what was written."""
        if self._file is None and not self.files:
            if self.schema is None:
                raise ValueError(f"view {self.view!r}: no table was written, so its schema is unknown")
            self._file = self._open()
        if self._file is not None:
            self._file.close()
            self._file = None
        return PublishedView(self.view, VIEWS[self.view].version, self.rows, tuple(self.files),
                             self.rows - self.carried_rows, self.carried_rows, self._digest.hexdigest(),
                             self.metadata.get("cotforge.format", VIEWS[self.view].default_format))


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
    frames = list(read_view_files(source, view, format_))
    format_ = frames[0][1]
    frames = [frame for frame, _ in frames]
    return (pl.concat(frames) if len(frames) > 1 else frames[0]), format_


def read_view_files(source: str, view: str, format_: str | None = None) -> Iterator[tuple[pl.DataFrame, str]]:
    """A published view file by file (one in memory at a time), each as `read_view` reads it, with its TRL format:
    `format_`, or when None the first file's (a later file in another format is converted to it)."""
    fs, root = fsspec.core.url_to_fs(source)
    files = sorted(fs.glob(f"{root}/{view}/*.parquet"))
    if not files:
        available = sorted(name for name in (p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root) if fs.isdir(p))
                           if name in VIEWS)  # not index/ nor report/
        raise FileNotFoundError(f"{source} has no view {view!r}; it has {available}")
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
        yield frame, format_


def rows_digest(table: pa.Table) -> str:
    """SHA-256 of the rows as canonical JSON lines, in order: equal for equal rows whatever the Parquet bytes (row
    groups, pages, writer version) are, so "the same content" compares what a reader gets."""
    digest = hashlib.sha256()
    _update_digest(digest, table)
    return digest.hexdigest()


def _update_digest(digest, table: pa.Table) -> None:
    """`rows_digest`'s lines of `table`, added to `digest` (a table digested in parts digests as the whole)."""
    for batch in table.to_batches(max_chunksize=4096):
        for row in batch.to_pylist():
            digest.update(json.dumps(row, sort_keys=True, default=str).encode())
            digest.update(b"\n")


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
