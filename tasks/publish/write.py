"""Publishing: views as Parquet under `OUT/<view>/`, a dataset card with one config per view, and the build report."""

from __future__ import annotations

import json
from dataclasses import dataclass

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

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


REPO_PLACEHOLDER = "REPO_OR_PATH"  # replaced by the Hub repo id when the card is pushed (tasks/hub.py)
FUNNEL = (  # (stage, count key in the report's counts) of the card's funnel
    ("generated", "samples generated"),
    ("verified", "samples verified correct"),
    ("voted", "questions with a majority answer"),
    ("deduplicated", "questions kept after dedup"),
)


def card_text(name: str, version: str, description: str, license_: str, recipe_yaml: str,
              views: list[PublishedView], counts: dict[str, int], lineage: dict[str, str],
              plots: list[str] | None = None, repo: str | None = None, mix: list[dict] | None = None) -> str:
    """A dataset card: YAML header with one config per view (so `load_dataset(path, "sft")` works), then the schema
    versions, how to load each view, the funnel, decontamination, lineage, plots, the recipe and the license.

    Nothing secret goes in: the recipe is the validated recipe (it has no credential fields) and the lineage names
    models and parameters only."""
    repo = repo or REPO_PLACEHOLDER
    plots = ["report/pass_rate.png"] if plots is None else plots
    header = {
        "license": license_,
        "pretty_name": name,
        "tags": ["reasoning", "chain-of-thought", "synthetic", "cotforge"],
        "configs": [{"config_name": v.name, "data_files": [{"split": "train", "path": f"{v.name}/*.parquet"}]}
                    for v in views],
    }
    view_rows = "\n".join(f"| `{v.name}` | {v.schema_version} | {v.rows} | {_purpose(v.name)} |" for v in views)
    funnel = [(stage, counts[key]) for stage, key in FUNNEL if key in counts]
    funnel.append(("published", sum(v.rows for v in views)))
    funnel_rows = "\n".join(f"| {stage} | {count} | {_funnel_note(stage, counts, views)} |" for stage, count in funnel)
    all_counts = "\n".join(f"| {stage} | {count} |" for stage, count in counts.items())
    contaminated = {k: v for k, v in counts.items() if k.startswith("contaminated")}
    if contaminated:
        decontam = ("Questions were checked against the evaluation sets named in the recipe (`dedup.decontam`); "
                    "matches are flagged and kept out of every view.\n\n| check | count |\n|---|---|\n"
                    + "\n".join(f"| {k} | {v} |" for k, v in contaminated.items()))
    else:
        decontam = "No evaluation set was configured for decontamination in this build (`dedup.decontam.evals`)."
    lineage_rows = "\n".join(f"- **{k}**: {v}" for k, v in lineage.items())
    # The question mix (tasks.questions.question_mix): how many questions each source gave, and what it turned down.
    sources = "\n".join(f"| `{m['source']}` | {m['questions']} | {m['share']:.1%} | {m['rejected']} |"
                        for m in mix or []) or "| (not recorded) | | | |"
    loads = "\n".join(f'{v.name} = load_dataset("{repo}", "{v.name}", split="train", revision="{version}")'
                       for v in views)
    pulls = "\n".join(f"cotforge pull {repo} --config {v.name} --version {version}" for v in views)
    plot_lines = "\n".join(f"![{p.rsplit('/', 1)[-1]}]({p})" for p in plots) or "No plots."
    return f"""---
{yaml.safe_dump(header, sort_keys=False).strip()}
---

# {name} (version {version})

{description or "A reasoning dataset built by cotforge."}

## Views

Each view is a config of this dataset; every Parquet file carries its schema name and version in its metadata.

| config | schema version | rows | use |
|---|---|---|---|
{view_rows}

## How to load

```python
from datasets import load_dataset
{loads}
```

or as a Polars frame with a schema check (and migration of older schema versions):

```bash
{pulls}
```

```python
from cotforge.tasks.publish.hub import cotforge_pull
frame = cotforge_pull("{repo}", "{views[0].name if views else 'sft'}", version="{version}")
```

## Question sources

| source | questions | share | rows rejected (kept in the build's `question_rejects` shards with the reason) |
|---|---|---|---|
{sources}

## How it was made (funnel)

generated → verified → voted → deduplicated → published

| stage | count | what |
|---|---|---|
{funnel_rows}

All counts of this build:

| stage | count |
|---|---|
{all_counts}

Rows rejected by a verifier or deduplication are kept in the build's stage shards with their reasons; only the views
select rows. See `report/` for per-stage counts and the verdict breakdown.

## Decontamination

{decontam}

## Lineage

{lineage_rows}

## Plots

{plot_lines}

## Recipe

```yaml
{recipe_yaml.strip()}
```

## License

{license_}
"""


def _purpose(view: str) -> str:
    return VIEWS[view].purpose if view in VIEWS and getattr(VIEWS[view], "purpose", "") else _VIEW_PURPOSE.get(view, "")


def _funnel_note(stage: str, counts: dict[str, int], views: list[PublishedView]) -> str:
    if stage == "generated":
        return f"samples, for {counts.get('questions generated', '?')} questions"
    if stage == "verified":
        return "samples a verifier judged correct"
    if stage == "voted":
        return "questions with a majority answer"
    if stage == "deduplicated":
        return f"questions kept ({counts.get('questions dropped as duplicates', 0)} dropped as duplicates)"
    return "rows over all views: " + ", ".join(f"{v.name} {v.rows}" for v in views)


_VIEW_PURPOSE = {
    "sft": "supervised fine-tuning (`messages`, or `prompt`/`completion`)",
    "preference": "DPO-style pairs (`prompt`/`chosen`/`rejected`)",
    "prm": "process reward models (`prompt`/`completions`/`labels`)",
}


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
