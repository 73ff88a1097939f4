"""Recipe section `publish`: where the dataset goes and what its card says."""

from __future__ import annotations

from pydantic import Field

from cotforge.schemas.config_base import StrictConfig


class PublishConfig(StrictConfig):
    out: str = "data/builds/{name}"  # local folder; `{name}` is the recipe's name
    license: str = "mit"
    pretty_name: str | None = None
    repo: str | None = None  # Hub dataset repo ORG/NAME to push each build to (`cotforge build --push` overrides)
    private: bool = False  # create the Hub repo private
    retries: int = Field(default=5, ge=0, le=20)  # Hub calls retried on 429 / 5xx / network errors
    backoff_seconds: float = Field(default=1.0, ge=0)  # first wait; doubles per retry (with jitter), capped at 30 s
