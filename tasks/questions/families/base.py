"""What every question family shares: the item and solution records, the protocol, the registry, and the helpers
for distinct items and unanswerable variants."""


from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Protocol

from cotforge.schemas.records import normalize_text

ABSTAIN = "ABSTAIN"


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


def generate_distinct(n: int, seed_key: str, make: Callable[[random.Random], FamilyItem | None],
                      max_tries_per_item: int = 50) -> list[FamilyItem]:
    """`n` items with distinct normalised texts from `make(rng)` (None: try again), deterministic per `seed_key`.

    Distinct texts matter because a question's id is the hash of its text: two equal texts would be one question."""
    rng = random.Random(seed_key)
    items: list[FamilyItem] = []
    seen: set[str] = set()
    for _ in range(n * max_tries_per_item):
        if len(items) == n:
            break
        item = make(rng)
        if item is None or normalize_text(item.text) in seen:
            continue
        seen.add(normalize_text(item.text))
        items.append(item)
    if len(items) < n:
        raise ValueError(f"{seed_key}: could make only {len(items)} distinct questions of the {n} asked for; "
                         "ask for fewer or raise the difficulty")
    return items


def add_unanswerable(items: list[FamilyItem], rate: float, seed_key: str,
                     perturb: Callable[[FamilyItem, random.Random], tuple[str, str] | None]) -> list[FamilyItem]:
    """Replace a share `rate` of the items by unanswerable variants.

    `perturb(item, rng)` returns (new text, what is missing) or None when the item has no good perturbation (it then
    stays answerable). A separate random stream keeps the answerable items identical whatever the rate."""
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"unanswerable_rate must be within 0..1, got {rate}")
    rng = random.Random(f"{seed_key}:unanswerable")
    out = []
    for item in items:
        perturbed = perturb(item, rng) if rate and rng.random() < float(rate) else None
        if perturbed is None:
            out.append(item)
            continue
        text, missing = perturbed
        params = {**item.params, "unanswerable": True, "missing": missing}
        out.append(FamilyItem(text=text, gold_answer=ABSTAIN, params=params,
                              reference_steps=abstain_solution(params, rng, None).steps, answer_type="text",
                              verifier="abstain"))
    return out


def is_unanswerable(params: dict) -> bool:
    return bool(params.get("unanswerable"))


ABSTAIN_STEPS = 2


def abstain_solution(params: dict, rng: random.Random, error_at: int | None) -> Solution:
    """The right response to a perturbed question: notice what is missing and decline. An error makes the solver
    invent the missing fact and answer anyway (a hallucination, the failure the abstain verifier catches)."""
    missing = params.get("missing", "a needed fact")
    steps = ["Check what the question gives and what it asks for.",
             f"The question does not determine {missing}, so the answer cannot be determined."]
    if error_at is None:
        return Solution(tuple(steps), ABSTAIN, None)
    guess = rng.randint(1, 99)
    steps[1] = f"Assume {missing} is {guess} and work it out from there."
    return Solution(tuple(steps[:error_at] + steps[error_at:]), str(guess * rng.randint(1, 5)), error_at)


def family_items(n: int, seed_key: str, make: Callable[[random.Random], FamilyItem | None], params: dict,
                 perturb: Callable) -> list[FamilyItem]:
    """`n` distinct items from `make`, a `params["unanswerable_rate"]` share of them turned unanswerable by `perturb`
    (the tail every family's `generate` ends with)."""
    return add_unanswerable(generate_distinct(n, seed_key, make), params_value(params, "unanswerable_rate", 0, float),
                            seed_key, perturb)


def params_value(params: dict, key: str, default, kind: type = int):
    """A family parameter from the recipe, converted, with a clear error naming it."""
    value = params.get(key, default)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"family parameter {key!r} must be {kind.__name__}, got {value!r}") from None
