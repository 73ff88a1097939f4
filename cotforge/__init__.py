"""cotforge: build the datasets reasoning models are trained on.

The stage folders of the repository install beneath this package (`flows/` as `cotforge.flows`, `tasks/` as
`cotforge.tasks`, `schemas/` as `cotforge.schemas`); this module is the small public API:

    import cotforge
    recipe = cotforge.load_recipe("data/recipes/simulated.yaml")
    result = cotforge.build(recipe, out="data/builds/simulated", version="0.1.0")
    sft = cotforge.pull("data/builds/simulated", "sft")           # a Polars frame, schema-checked

Names are imported on first use, so `import cotforge` stays cheap (Prefect loads only when a build starts).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Recipe", "RecipeError", "build", "load_recipe", "pull", "read_view"]

if TYPE_CHECKING:
    from cotforge.flows.api import build, pull
    from cotforge.schemas.recipe import Recipe, RecipeError, load_recipe
    from cotforge.tasks.publish.write import read_view

_LAZY = {
    "build": "cotforge.flows.api",
    "pull": "cotforge.flows.api",
    "Recipe": "cotforge.schemas.recipe",
    "RecipeError": "cotforge.schemas.recipe",
    "load_recipe": "cotforge.schemas.recipe",
    "read_view": "cotforge.tasks.publish.write",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cotforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
