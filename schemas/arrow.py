"""Derive Arrow schemas from pydantic record models, so one class defines both the row and the column types."""

from __future__ import annotations

import types
import typing
from typing import Any, Union, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel

_SCALARS: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    bytes: pa.binary(),
}


def _arrow_type(annotation: Any) -> tuple[pa.DataType, bool]:
    """Map a Python annotation to (arrow type, nullable)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        nullable = len(args) != len(get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"unions of several types have no Arrow type: {annotation}")
        inner, inner_nullable = _arrow_type(args[0])
        return inner, nullable or inner_nullable
    if origin is typing.Literal:
        return pa.string(), False
    if origin in (list, tuple):
        (item,) = get_args(annotation)[:1]
        item_type, _ = _arrow_type(item)
        return pa.list_(item_type), False
    if origin is dict:
        key, value = get_args(annotation)
        return pa.map_(_arrow_type(key)[0], _arrow_type(value)[0]), False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct([_field(n, f.annotation) for n, f in annotation.model_fields.items()]), False
    if annotation in _SCALARS:
        return _SCALARS[annotation], False
    raise TypeError(f"no Arrow type for {annotation!r}")


def _field(name: str, annotation: Any) -> pa.Field:
    arrow_type, nullable = _arrow_type(annotation)
    return pa.field(name, arrow_type, nullable=nullable)


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """The Arrow schema whose columns are the model's fields, in declaration order."""
    return pa.schema([_field(name, f.annotation) for name, f in model.model_fields.items()])


def empty_table(model: type[BaseModel]) -> pa.Table:
    """A zero-row table with the model's schema (a stage with no input still writes a typed shard)."""
    return arrow_schema(model).empty_table()


def to_table(rows: list[BaseModel] | list[dict], model: type[BaseModel]) -> pa.Table:
    """Rows (models or plain dicts) to a table with the model's exact schema."""
    dicts = [r.model_dump() if isinstance(r, BaseModel) else r for r in rows]
    return pa.Table.from_pylist(dicts, schema=arrow_schema(model))


def columns_table(columns: dict[str, Any], model: type[BaseModel]) -> pa.Table:
    """Columns (lists or arrays, one per field; a field left out takes its default on every row) to a table with the
    model's exact schema: `to_table` without a model object or a dict per row, for stages that make hundreds of
    thousands of rows at once. A column not of the field's type fails as `to_table` would."""
    unknown = set(columns) - set(model.model_fields)
    if unknown:
        raise ValueError(f"{model.__name__} has no field {sorted(unknown)}")
    rows = len(next(iter(columns.values()))) if columns else 0
    schema = arrow_schema(model)
    arrays = []
    for field in schema:
        if field.name in columns:
            values = columns[field.name]
        else:
            default = model.model_fields[field.name].get_default(call_default_factory=True)
            values = [default] * rows
        arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)
