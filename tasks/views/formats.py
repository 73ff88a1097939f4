"""A chat view's rows in one of TRL's formats (schemas/views.py FORMATS): builders make conversational rows, and
these kernels turn them (or rows carried from an earlier version) into the format the recipe asks for."""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel

from cotforge.schemas.arrow import to_table
from cotforge.schemas.views import CHAT_COLUMNS, DEFAULT_FORMAT, SchemaMismatch, ViewSchema, ViewRow, format_model


def standard_text(messages: list[dict], is_prompt: bool) -> str:
    """Plain text of a chat column: the turns' contents separated by a blank line; a prompt ends with a newline, so
    the completion starts on its own line when TRL concatenates the two. One newline, not a blank line: a BPE
    tokenizer splits a trailing "\n\n" differently from "\n\n" inside the text, and TRL needs the tokenized prompt
    to be a prefix of the tokenized prompt + completion to mask it."""
    text = "\n\n".join(m["content"] for m in messages)
    return text + "\n" if is_prompt and text else text


def convert_row(row: dict, source: str, target: str) -> dict:
    """One row from format `source` to `target`. The roles of a standard row are gone, so it converts to no other."""
    if source == target:
        return row
    if source == "messages":  # back to conversational: the trailing assistant turns are the completion
        messages = row["messages"]
        cut = len(messages)
        while cut > 0 and messages[cut - 1]["role"] == "assistant":
            cut -= 1
        row = _replace(row, "messages", {"prompt": messages[:cut], "completion": messages[cut:]})
        source = DEFAULT_FORMAT
    if source != DEFAULT_FORMAT:
        raise SchemaMismatch(f"rows in format {source!r} cannot be turned into {target!r} (a standard row has no "
                             "roles); keep a view's format across the versions of a dataset")
    if target == "messages":
        return _replace(row, "prompt", {"messages": row["prompt"] + row["completion"]}, drop=("completion",))
    if target == "standard":
        return {k: standard_text(v, k == "prompt") if k in CHAT_COLUMNS else v for k, v in row.items()}
    return row


def _replace(row: dict, at: str, new: dict, drop: tuple[str, ...] = ()) -> dict:
    """The row with column `at` replaced by the `new` columns in its place (key order is column order)."""
    out = {}
    for key, value in row.items():
        if key == at:
            out.update(new)
        elif key not in drop:
            out[key] = value
    return out


def format_table(rows: list[BaseModel], model: type[ViewRow], format_: str) -> pa.Table:
    """Conversational rows of `model` as a table in `format_`."""
    dicts = [convert_row(r.model_dump(), DEFAULT_FORMAT, format_) for r in rows]
    return to_table(dicts, format_model(model, format_))


def convert_table(table: pa.Table, schema: ViewSchema, source: str, target: str) -> pa.Table:
    """A view's table from format `source` to `target` (rows carried into a version whose recipe changed the
    format); a standard table converts to no other format (SchemaMismatch)."""
    if source == target:
        return table
    rows = [convert_row(r, source, target) for r in table.to_pylist()]
    return to_table(rows, schema.row_model(target))
