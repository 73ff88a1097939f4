"""The recipe: one YAML file that says how to build a dataset. Strict: every error names the field and the reason."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from cotforge.schemas.config_base import StrictConfig
from cotforge.schemas.config_dedup import DedupConfig
from cotforge.schemas.config_generation import GenerationConfig
from cotforge.schemas.config_publish import PublishConfig
from cotforge.schemas.config_questions import QuestionsConfig
from cotforge.schemas.config_runner import RunnerConfig
from cotforge.schemas.config_verify import VerifyConfig
from cotforge.schemas.config_views import ViewsConfig


class RecipeError(ValueError):
    """A recipe that cannot be built; the message names each bad field and why."""


class Recipe(StrictConfig):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    seed: int = 0
    shard_size: int = Field(default=64, gt=0)  # questions per shard: a Prefect task is a shard, never a row
    questions: QuestionsConfig
    generation: GenerationConfig = GenerationConfig()
    verify: VerifyConfig = VerifyConfig()
    dedup: DedupConfig = DedupConfig()
    views: ViewsConfig = ViewsConfig()
    publish: PublishConfig = PublishConfig()
    runner: RunnerConfig = RunnerConfig()  # where shard tasks run: local, or Ray (prefect-ray)

    def content_hash(self) -> str:
        """Hash of the validated recipe (defaults filled in), so equivalent YAML files hash the same."""
        # Where the shard tasks run is not content: a build resumed on Ray reuses the local shards, rows equal.
        canonical = json.dumps(self.model_dump(mode="json", exclude={"runner"}), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _format_errors(error: ValidationError, origin: str) -> str:
    lines = [f"{origin}: {error.error_count()} problem(s)"]
    for item in error.errors():
        # Drop pydantic's union-member tags (e.g. 'family') so the path reads like the YAML the user wrote.
        loc = ".".join(str(p) for p in item["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        reason = item["msg"]
        if item["type"] == "extra_forbidden":
            reason = "unknown field (check the spelling; see the recipe reference in the README)"
        lines.append(f"  - field '{loc or '<root>'}': {reason}")
    return "\n".join(lines)


_UNION_TAGS = {"family", "seed", "synth"}


def parse_recipe(data: object, origin: str = "recipe") -> Recipe:
    """Validate a parsed YAML document; raise RecipeError naming every bad field."""
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: a recipe is a mapping of fields, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as error:
        raise RecipeError(_format_errors(error, origin)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key repeated in one mapping (plain YAML lets the last one win silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise RecipeError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line "
                                  f"{seen[key]}): a key may appear once per mapping")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file (a key repeated in one mapping is refused, naming it)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        data = yaml.load(path.read_bytes().decode("utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as error:
        raise RecipeError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML: {error}") from None
    return parse_recipe(data, origin=str(path))
