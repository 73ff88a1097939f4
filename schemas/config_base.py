"""Base class of every recipe section: strict, so an unknown key or a bad value is an error naming the field."""

from pydantic import BaseModel, ConfigDict


class StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
