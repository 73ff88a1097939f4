"""Recipe section `publish`: where the dataset goes and what its card says."""

from __future__ import annotations

from schemas.config_base import StrictConfig


class PublishConfig(StrictConfig):
    out: str = "data/builds/{name}"  # local folder; `{name}` is the recipe's name
    license: str = "mit"
    pretty_name: str | None = None
