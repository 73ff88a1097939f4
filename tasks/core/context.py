"""The build context: what every shard task of one build shares, passed as one frozen object."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from cotforge.schemas.records import stable_id
from cotforge.tasks.core.shards import ShardStore


@dataclass(frozen=True)
class BuildContext:
    """One build of one recipe: where its shards live and the lineage every row and shard carries.

    `build_id` derives from the recipe hash and the version only, so a resumed build writes the same rows; `run_id`
    is new for each run of it, so the report tells the work this run did from the shards it reused."""

    store: ShardStore
    recipe_hash: str
    version: str = "0.1.0"
    seed: int = 0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False)  # never in a key or a row

    @property
    def build_id(self) -> str:
        return stable_id(self.recipe_hash, self.version)

    @property
    def metadata(self) -> dict[str, str]:
        """The Parquet key-value metadata of every shard this build writes."""
        return {"cotforge.recipe_hash": self.recipe_hash, "cotforge.build_id": self.build_id}


class BuildFailed(RuntimeError):
    """The build stopped before publishing: what it produced is not usable. Its shards stay for a fixed rerun."""
