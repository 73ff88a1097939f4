"""What an exporter returns: the files of one trainer's export (tables or text) and how to train with them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

from cotforge.tasks.views.builders import render_assistant, split_reasoning


@dataclass
class ExportFile:
    """One file of an export: rows (`.parquet` or `.jsonl`, by the name) or text, and the view it comes from."""

    name: str
    rows: pa.Table | list[dict] | None = None
    text: str | None = None
    view: str | None = None

    @property
    def count(self) -> int | None:
        if self.rows is None:
            return None
        return self.rows.num_rows if isinstance(self.rows, pa.Table) else len(self.rows)


@dataclass
class Export:
    """A trainer's export: its files and the commands that train on them (`{dest}` stands for the export folder)."""

    trainer: str
    files: list[ExportFile] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)  # file name -> command
    notes: list[str] = field(default_factory=list)


def rows_of(frame: pl.DataFrame) -> list[dict]:
    return frame.to_dicts()


def think_turn(message: dict) -> dict:
    """An assistant turn with its rationale in `<think>` tags (how reasoning chat templates and LLaMA-Factory's
    reasoning templates read it), the words unchanged: only split at the model's own `</think>` or final line."""
    reasoning, final = split_reasoning(message["content"])
    return {"role": message["role"], "content": render_assistant(reasoning, final, "think_tags") if reasoning
            else message["content"]}


def reasoning_turn(message: dict) -> dict:
    """An assistant turn as `content` (the final part) and `reasoning_content` (the rationale), the field chat
    templates of reasoning models (Qwen3, DeepSeek-R1) render inside their thinking block."""
    reasoning, final = split_reasoning(message["content"])
    if not reasoning or not final:
        return {"role": message["role"], "content": message["content"], "reasoning_content": None}
    return {"role": message["role"], "content": final, "reasoning_content": reasoning}


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
