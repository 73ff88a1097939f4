"""cotforge: build the datasets reasoning models are trained on.

The stage folders of the repository install beneath this package (`flows/` as `cotforge.flows`, `tasks/` as
`cotforge.tasks`, `schemas/` as `cotforge.schemas`); this module is the small public API:

    import cotforge
    recipe = cotforge.load_recipe("data/recipes/simulated.yaml")
    result = cotforge.build(recipe, out="data/builds/simulated", version="0.1.0")
    sft = cotforge.pull("data/builds/simulated", "sft")           # a Polars frame, schema-checked
    cotforge.export("data/builds/simulated", "verl")              # files for verl, beside the versions

Names are imported on first use, so `import cotforge` stays cheap (Prefect loads only when a build starts).
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Recipe", "RecipeError", "build", "export", "load_recipe", "pull", "read_view"]

if TYPE_CHECKING:
    from cotforge.flows.api import build, export, pull
    from cotforge.schemas.recipe import Recipe, RecipeError, load_recipe
    from cotforge.tasks.publish.write import read_view


def _checkout_root() -> str | None:
    """The repository this module sits in when it runs from a source checkout that no installer mapped (another
    user's interpreter, a plain PYTHONPATH): there the stage folders are siblings of this folder."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # Three stats first: an installed copy (site-packages has no such folders) reads no file on import.
    if not all(os.path.isfile(os.path.join(root, d, "__init__.py")) for d in ("flows", "tasks", "schemas")):
        return None
    try:
        with open(os.path.join(root, "pyproject.toml"), encoding="utf-8") as f:
            return root if 'name = "cotforge"' in f.read() else None
    except OSError:
        return None


# Installed, setuptools maps flows/, tasks/ and schemas/ beneath this package; in a bare checkout they are found here.
if (_root := _checkout_root()) is not None and _root not in __path__:
    __path__.append(_root)

_LAZY = {
    "build": "cotforge.flows.api",
    "pull": "cotforge.flows.api",
    "export": "cotforge.flows.api",
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
