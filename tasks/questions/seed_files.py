"""Seed sources as rows: local JSONL / Parquet / CSV files and Hub datasets (files of one config and split).

Hub datasets: 🤗 datasets resolves which files make a config and split (as `load_dataset` does), and
`hf_hub_download` fetches them, so `HF_ENDPOINT`, `HF_TOKEN` and the local cache work as those libraries define them
(Polars' `hf://` reader would ignore `HF_ENDPOINT`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from cotforge.schemas.config_questions import HubDatasetConfig, SeedSourceConfig

SEED_FILE_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".csv": "csv"}
MAX_ROW_CHARS = 500  # a rejected row is kept as JSON up to this length


@dataclass
class SeedRows:
    """Rows as read, plus the rows that could not even be read (bad JSON lines)."""

    rows: list[tuple[int, dict]]
    unreadable: list[tuple[int, str, str]] = field(default_factory=list)  # (row, reason, raw text)
    dataset: str = ""  # path, or repo@commit, for lineage
    revision: str | None = None  # a Hub dataset: repo@commit, the commit its revision resolved to when read


def read_seed_file(path: str | Path, format: str = "auto") -> SeedRows:
    """Rows of one local file; a JSONL line that is not a JSON object is recorded as unreadable, not raised."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"seed file {path} does not exist")
    kind = format if format != "auto" else SEED_FILE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"seed file {path}: cannot tell the format from the extension {path.suffix!r}; "
                         f"set `format` to one of jsonl, parquet, csv")
    if kind == "parquet":
        return SeedRows(list(enumerate(pq.read_table(path).to_pylist())), dataset=str(path))
    if kind == "csv":
        return _read_csv(path)
    rows, unreadable = [], []
    with path.open("rb") as f:
        for index, raw in enumerate(f):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                unreadable.append((index, not_utf8(error), raw.decode("utf-8", "replace")[:MAX_ROW_CHARS]))
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                unreadable.append((index, f"invalid_json: {error.msg}", line[:MAX_ROW_CHARS]))
                continue
            if not isinstance(row, dict):
                unreadable.append((index, f"not_a_json_object: {type(row).__name__}", line[:MAX_ROW_CHARS]))
                continue
            rows.append((index, row))
    return SeedRows(rows, unreadable, dataset=str(path))


def not_utf8(error: UnicodeDecodeError) -> str:
    """The reason of a row whose bytes are not UTF-8 (read as-is, its text would hold replacement characters)."""
    return f"not_utf8: byte 0x{error.object[error.start]:02x} at offset {error.start}"


def _read_csv(path: Path) -> SeedRows:
    """Rows of a CSV file; a row that is not UTF-8, or has more or fewer cells than the header, is unreadable."""
    text = path.read_bytes().decode("utf-8", "surrogateescape")  # bad bytes become lone surrogates, found per row
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    rows, unreadable = [], []
    if header is None:
        return SeedRows(rows, dataset=str(path))
    for index, cells in enumerate(reader):
        if not cells:
            continue
        raw = ",".join(cells)
        if any(_SURROGATE.search(cell) for cell in [*cells, *header]):
            bad = raw.encode("utf-8", "surrogateescape")
            try:
                bad.decode("utf-8")
                reason = "not_utf8: the header is not UTF-8"
            except UnicodeDecodeError as error:
                reason = not_utf8(error)
            unreadable.append((index, reason, bad.decode("utf-8", "replace")[:MAX_ROW_CHARS]))
        elif len(cells) != len(header):
            unreadable.append((index, f"malformed_csv_row: {len(cells)} cells, the header has {len(header)}",
                               raw[:MAX_ROW_CHARS]))
        else:
            rows.append((index, dict(zip(header, cells))))
    return SeedRows(rows, unreadable, dataset=str(path))


_SURROGATE = re.compile("[\udc80-\udcff]")


def hub_seed_files(hub: HubDatasetConfig) -> tuple[list[str], str]:
    """Download the files of one config and split of a Hub dataset; (local paths, "repo@commit").

    Which files belong to the config and split is what `datasets.load_dataset` would read: 🤗 datasets resolves
    them (the card's `configs`, else its usual layouts, or the recipe's `data_files` patterns); the files are then
    downloaded into huggingface_hub's cache at the commit the revision resolved to."""
    from huggingface_hub import HfApi, hf_hub_download

    try:
        from datasets import load_dataset_builder
    except ImportError as error:
        raise RuntimeError(f"Hub seed datasets are resolved by 🤗 datasets ({error}): pip install 'cotforge[hub]'") \
            from None
    info = HfApi().dataset_info(hub.repo, revision=hub.revision)
    commit = info.sha or hub.revision or "main"
    builder = load_dataset_builder(hub.repo, None if hub.data_files else hub.config, revision=commit,
                                   data_files=hub.data_files)
    resolved = builder.config.data_files or {}
    split = "train" if hub.data_files and len(resolved) == 1 else hub.split  # bare patterns: datasets' "train"
    marker = f"{hub.repo}@{commit}/"
    found = [url.split(marker, 1)[1] for url in resolved.get(split, []) if marker in url]
    selected = sorted(f for f in found if Path(f).suffix.lower() in SEED_FILE_SUFFIXES)
    if not selected:
        raise FileNotFoundError(f"Hub dataset {hub.repo} (revision {commit}): no data files for config "
                                f"{hub.config!r}, split {hub.split!r} (datasets resolved splits {sorted(resolved)}: "
                                f"{ {k: len(v) for k, v in resolved.items()} } files)")
    paths = [hf_hub_download(hub.repo, f, repo_type="dataset", revision=commit) for f in selected]
    return paths, f"{hub.repo}@{commit}"


def read_seed_source(source: SeedSourceConfig) -> SeedRows:
    """Every row of a seed source, local or on the Hub, numbered across its files."""
    if source.path is not None:
        return read_seed_file(source.path, source.format)
    paths, dataset = hub_seed_files(source.hub)
    out = SeedRows([], [], dataset, revision=dataset)
    offset = 0
    for path in paths:
        part = read_seed_file(path, source.format)
        out.rows += [(offset + i, row) for i, row in part.rows]
        out.unreadable += [(offset + i, reason, raw) for i, reason, raw in part.unreadable]
        offset += 1 + max([i for i, _ in part.rows] + [i for i, _, _ in part.unreadable] + [-1])
    return out
