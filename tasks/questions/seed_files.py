"""Seed sources as rows: local JSONL / Parquet / CSV files and Hub datasets (files of one config and split).

Hub datasets are read with `huggingface_hub` (`list_repo_files` + `hf_hub_download`), so `HF_ENDPOINT`, `HF_TOKEN`
and the local cache work as that library defines them (Polars' `hf://` reader would ignore `HF_ENDPOINT`).
"""

from __future__ import annotations

import csv
import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import yaml

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
        with path.open(newline="", encoding="utf-8") as f:
            return SeedRows(list(enumerate(csv.DictReader(f))), dataset=str(path))
    rows, unreadable = [], []
    with path.open(encoding="utf-8", errors="replace") as f:
        for index, line in enumerate(f):
            if not line.strip():
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


def _card_patterns(card: str, config: str | None, split: str) -> list[str]:
    """data_files patterns of one config and split from a dataset card's YAML header."""
    match = re.match(r"^---\s*\n(.*?)\n---", card, re.S)
    header = yaml.safe_load(match.group(1)) if match else None
    configs = (header or {}).get("configs") or []
    for entry in configs:
        if entry.get("config_name", "default") != (config or "default"):
            continue
        data_files = entry.get("data_files")
        if isinstance(data_files, (str, list)) and not (isinstance(data_files, list) and data_files and
                                                        isinstance(data_files[0], dict)):
            return [data_files] if isinstance(data_files, str) and split == "train" else \
                list(data_files) if split == "train" else []
        patterns: list[str] = []
        for item in data_files or []:
            if item.get("split") == split:
                paths = item.get("path")
                patterns += [paths] if isinstance(paths, str) else list(paths or [])
        return patterns
    return []


def _default_patterns(config: str | None, split: str) -> list[str]:
    base = [f"data/{split}-*", f"data/{split}.*", f"data/{split}/*", f"{split}-*", f"{split}.*", f"{split}/*"]
    if config:
        return [f"{config}/{split}-*", f"{config}/{split}.*", f"{config}/{split}/*", f"data/{config}/{split}-*",
                f"data/{config}/{split}.*"] + ([f"data/{split}-*", f"{split}-*", f"{split}.*"]
                                               if config in ("default", "main") else [])
    return base


def hub_seed_files(hub: HubDatasetConfig) -> tuple[list[str], str]:
    """Download the files of one config and split of a Hub dataset; (local paths, "repo@commit")."""
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi()
    info = api.dataset_info(hub.repo, revision=hub.revision)
    commit = info.sha or hub.revision or "main"
    files = [s.rfilename for s in (info.siblings or [])] or api.list_repo_files(hub.repo, repo_type="dataset",
                                                                                 revision=commit)
    patterns = hub.data_files
    if patterns is None and "README.md" in files:
        card = Path(hf_hub_download(hub.repo, "README.md", repo_type="dataset", revision=commit)).read_text()
        patterns = _card_patterns(card, hub.config, hub.split) or None
    patterns = patterns or _default_patterns(hub.config, hub.split)
    selected = sorted(f for f in files if any(fnmatch.fnmatch(f, p) for p in patterns)
                      and Path(f).suffix.lower() in SEED_FILE_SUFFIXES)
    if not selected:
        raise FileNotFoundError(f"Hub dataset {hub.repo} (revision {commit}): no data files for config "
                                f"{hub.config!r}, split {hub.split!r} (looked for {patterns}; the repo has {files})")
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
