"""Recipe section `questions`: where questions come from, mixed by weight."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from schemas.config_base import StrictConfig


class FamilySourceConfig(StrictConfig):
    """Questions from a programmatic family with computed answers."""

    kind: Literal["family"] = "family"
    family: str
    n: int = Field(gt=0)
    difficulty: int = Field(default=1, ge=1, le=10)
    params: dict[str, int | float | str | bool] = {}


QuestionSourceConfig = Annotated[Union[FamilySourceConfig], Field(discriminator="kind")]


class QuestionsConfig(StrictConfig):
    sources: list[QuestionSourceConfig] = Field(min_length=1)
