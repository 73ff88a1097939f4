"""Programmatic question families: generated questions whose answers are computed, with a difficulty knob.

A family is registered by name and provides `generate` (n questions at a difficulty and seed, each with its gold
answer, its verifier and the parameters that made it) and `solve` (a step-by-step solution with an optional error
injected at a chosen step, used by the simulated solver so tests know the first wrong step).

Every family takes `unanswerable_rate` (0..1): that share of its questions is perturbed so that a needed fact is
missing (or, for logic puzzles, so that more than one solution fits); their gold answer is "ABSTAIN" and their
verifier `abstain`. The perturbed rows keep the original's parameters plus `unanswerable: true` and `missing`, and
every family's `solve`/`num_steps` answer them through `abstain_solution`.
"""

from __future__ import annotations

from cotforge.tasks.questions.families.base import ABSTAIN, FAMILIES, Family, FamilyItem, Solution, register_family

__all__ = ["ABSTAIN", "Family", "FamilyItem", "Solution", "family_names", "get_family", "register_family"]


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
    from cotforge.tasks.questions.families import algorithmic, arithmetic, coding, linear, logic, number_theory  # noqa: F401
