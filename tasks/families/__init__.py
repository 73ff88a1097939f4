"""Programmatic question families: generated questions whose answers are computed, with a difficulty knob.

A family is registered by name and provides `generate` (n questions at a difficulty and seed, each with its gold
answer, its verifier and the parameters that made it) and `solve` (a step-by-step solution with an optional error
injected at a chosen step, used by the simulated solver so tests know the first wrong step).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class FamilyItem:
    text: str
    gold_answer: str
    params: dict  # JSON-serialisable; enough for `solve` to redo the computation
    reference_steps: tuple[str, ...]
    answer_type: str = "number"
    verifier: str = "math"
    tests: str | None = None


@dataclass(frozen=True)
class Solution:
    steps: tuple[str, ...]
    answer: str
    first_error_step: int | None = None


class Family(Protocol):
    name: str

    def generate(self, n: int, difficulty: int, seed: int, **params) -> list[FamilyItem]: ...

    def solve(self, params: dict, rng: random.Random, error_at: int | None) -> Solution: ...

    def num_steps(self, params: dict) -> int: ...


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Make a family available to recipes by its name."""
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    _load_builtin()
    if name not in FAMILIES:
        raise KeyError(f"unknown question family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


def family_names() -> list[str]:
    _load_builtin()
    return sorted(FAMILIES)


def _load_builtin() -> None:
    # Imported lazily so that registering a family never imports every other family's dependencies.
    from tasks.families import arithmetic  # noqa: F401
