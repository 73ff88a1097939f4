"""Logic puzzles in the spirit of SynLogic: knights and knaves, and seating in a row under constraints.

Puzzles are built from a hidden true solution by adding true statements (constraints) until brute force over every
assignment (ordering) leaves exactly one; the gold answer is that solution, so it is computed, never guessed.
Difficulty adds people (2..7 islanders, 3..7 seats), which multiplies the assignments to rule out. The param `puzzle`
("knights" or "seating") fixes one kind; by default each question draws one.

Unanswerable variants drop a statement (constraint) whose removal lets a second solution in, found by brute force.
"""

from __future__ import annotations

import itertools
import random

from cotforge.tasks.questions.families.base import (
    ABSTAIN_STEPS,
    FamilyItem,
    Solution,
    abstain_solution,
    family_items,
    is_unanswerable,
    register_family,
)

NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi"]
PUZZLES = ("knights", "seating")
_ROLE = {True: "knight", False: "knave"}


# --- knights and knaves -------------------------------------------------------------------------------------------
# A statement: ["is", y, role] | ["both", y, z, role] | ["same", y, z] | ["diff", y, z] | ["count", k]
# with people as indices and role True for knight.

def statement_holds(statement: list, knights: tuple[bool, ...]) -> bool:
    kind = statement[0]
    if kind == "is":
        return knights[statement[1]] == statement[2]
    if kind == "both":
        return knights[statement[1]] == statement[3] and knights[statement[2]] == statement[3]
    if kind == "same":
        return knights[statement[1]] == knights[statement[2]]
    if kind == "diff":
        return knights[statement[1]] != knights[statement[2]]
    return sum(knights) == statement[1]


def knight_solutions(n: int, statements: list[list]) -> list[tuple[bool, ...]]:
    """Every assignment in which each knight's statements are true and each knave's are false."""
    return [knights for knights in itertools.product((True, False), repeat=n)
            if all(statement_holds(s, knights) == knights[speaker] for speaker, s in statements)]


def render_statement(statement: list, names: list[str]) -> str:
    kind = statement[0]
    if kind == "is":
        return f"{names[statement[1]]} is a {_ROLE[statement[2]]}."
    if kind == "both":
        return f"{names[statement[1]]} and {names[statement[2]]} are both {_ROLE[statement[3]]}s."
    if kind == "same":
        return f"{names[statement[1]]} and {names[statement[2]]} are of the same kind."
    if kind == "diff":
        return f"{names[statement[1]]} and {names[statement[2]]} are of different kinds."
    return f"Exactly {statement[1]} of us {'is a knight' if statement[1] == 1 else 'are knights'}."


def _random_statement(rng: random.Random, n: int, speaker: int, difficulty: int) -> list:
    others = [i for i in range(n) if i != speaker] or [speaker]
    kinds = ["is", "is", "same", "diff"] + (["both"] if n >= 3 else []) + (["count"] if difficulty >= 5 else [])
    kind = rng.choice(kinds)
    if kind == "is":
        return ["is", rng.choice(others), rng.random() < 0.5]
    if kind == "count":
        return ["count", rng.randint(0, n)]
    y, z = rng.sample(range(n), 2) if n >= 2 else (0, 0)
    if kind == "both":
        return ["both", y, z, rng.random() < 0.5]
    return [kind, y, z]


def _knights_puzzle(rng: random.Random, difficulty: int) -> dict | None:
    n = min(2 + difficulty // 2, 7)
    names = NAMES[:n]
    truth = tuple(rng.random() < 0.5 for _ in range(n))
    statements: list[list] = []
    speakers = list(range(n)) + [rng.randrange(n) for _ in range(n)]  # everyone speaks once, then extras if needed
    for speaker in speakers:
        for _ in range(50):
            s = _random_statement(rng, n, speaker, difficulty)
            if statement_holds(s, truth) == truth[speaker]:
                statements.append([speaker, s])
                break
        if len(statements) >= n and len(knight_solutions(n, statements)) == 1:
            return {"puzzle": "knights", "names": names, "statements": statements}
    return None


def knights_answer(names: list[str], knights: tuple[bool, ...]) -> str:
    chosen = sorted(name for name, knight in zip(names, knights) if knight)
    return ", ".join(chosen) if chosen else "none"


# --- seating in a row ---------------------------------------------------------------------------------------------
# A constraint: ["left_of", a, b] | ["next_to", a, b] | ["immediately_left", a, b] | ["not_end", a]
# | ["seat", a, k] | ["not_seat", a, k], people as indices, seats 1..n from the left.

def constraint_holds(constraint: list, order: tuple[int, ...]) -> bool:
    seat = {person: i + 1 for i, person in enumerate(order)}
    kind = constraint[0]
    if kind == "left_of":
        return seat[constraint[1]] < seat[constraint[2]]
    if kind == "next_to":
        return abs(seat[constraint[1]] - seat[constraint[2]]) == 1
    if kind == "immediately_left":
        return seat[constraint[1]] + 1 == seat[constraint[2]]
    if kind == "not_end":
        return 1 < seat[constraint[1]] < len(order)
    if kind == "seat":
        return seat[constraint[1]] == constraint[2]
    return seat[constraint[1]] != constraint[2]


def seating_solutions(n: int, constraints: list[list]) -> list[tuple[int, ...]]:
    return [order for order in itertools.permutations(range(n))
            if all(constraint_holds(c, order) for c in constraints)]


def render_constraint(c: list, names: list[str]) -> str:
    kind = c[0]
    if kind == "left_of":
        return f"{names[c[1]]} sits somewhere to the left of {names[c[2]]}."
    if kind == "next_to":
        return f"{names[c[1]]} sits next to {names[c[2]]}."
    if kind == "immediately_left":
        return f"{names[c[1]]} sits immediately to the left of {names[c[2]]}."
    if kind == "not_end":
        return f"{names[c[1]]} does not sit at either end."
    if kind == "seat":
        return f"{names[c[1]]} sits in seat {c[2]}."
    return f"{names[c[1]]} does not sit in seat {c[2]}."


def _seating_puzzle(rng: random.Random, difficulty: int) -> dict | None:
    n = min(3 + difficulty // 2, 7)
    names = NAMES[:n]
    truth = tuple(rng.sample(range(n), n))
    kinds = ["left_of", "left_of", "next_to", "immediately_left", "not_end", "not_seat", "seat"]
    survivors = list(itertools.permutations(range(n)))
    constraints: list[list] = []
    for _ in range(20 * n):
        kind = rng.choice(kinds)
        a, b = rng.sample(range(n), 2)
        c = [kind, a, b] if kind in ("left_of", "next_to", "immediately_left") else \
            [kind, a] if kind == "not_end" else [kind, a, rng.randint(1, n)]
        if not constraint_holds(c, truth):
            continue
        remaining = [order for order in survivors if constraint_holds(c, order)]
        if len(remaining) == len(survivors):
            continue  # says nothing new
        survivors = remaining
        constraints.append(c)
        if len(survivors) == 1:
            return {"puzzle": "seating", "names": names, "constraints": constraints}
    return None


def seating_answer(names: list[str], order: tuple[int, ...]) -> str:
    return ", ".join(names[i] for i in order)


class LogicFamily:
    name = "logic"

    def generate(self, n: int, difficulty: int, seed: int, **params) -> list[FamilyItem]:
        """Difficulty d: 2 + d//2 islanders (counting statements from d 5), or 3 + d//2 people to seat (max 7)."""
        puzzle = params.get("puzzle")
        if puzzle is not None and puzzle not in PUZZLES:
            raise ValueError(f"logic puzzle must be one of {PUZZLES}, got {puzzle!r}")

        def make(rng: random.Random) -> FamilyItem | None:
            kind = puzzle or rng.choice(PUZZLES)
            p = _knights_puzzle(rng, difficulty) if kind == "knights" else _seating_puzzle(rng, difficulty)
            if p is None:
                return None
            solution = self.solve(p, rng, None)
            return FamilyItem(text=self._render(p), gold_answer=solution.answer, params=p,
                              reference_steps=solution.steps, answer_type="text", verifier="exact")

        key = f"{self.name}:{puzzle}:{difficulty}:{seed}"
        return family_items(n, key, make, params, self._perturb)

    def num_steps(self, params: dict) -> int:
        return ABSTAIN_STEPS if is_unanswerable(params) else len(params["names"])

    def solve(self, params: dict, rng: random.Random, error_at: int | None) -> Solution:
        """One step per person (their role, or who takes each seat); a wrong step flips a role or swaps two
        neighbours, and the final answer reports the wrong assignment."""
        if is_unanswerable(params):
            return abstain_solution(params, rng, error_at)
        names = params["names"]
        n = len(names)
        if params["puzzle"] == "knights":
            knights = list(knight_solutions(n, params["statements"])[0])
            if error_at is not None:
                knights[error_at] = not knights[error_at]
            steps = tuple(f"{name} is a {_ROLE[k]}." for name, k in zip(names, knights))
            return Solution(steps, knights_answer(names, tuple(knights)), error_at)
        order = list(seating_solutions(n, params["constraints"])[0])
        if error_at is not None:
            other = error_at + 1 if error_at + 1 < n else error_at - 1
            order[error_at], order[other] = order[other], order[error_at]
        steps = tuple(f"Seat {i + 1}: {names[p]}." for i, p in enumerate(order))
        return Solution(steps, seating_answer(names, tuple(order)), error_at)

    def _render(self, p: dict) -> str:
        names = p["names"]
        if p["puzzle"] == "knights":
            return self._render_knights(names, p["statements"])
        return self._render_seating(names, p["constraints"])

    def _render_knights(self, names: list[str], statements: list[list]) -> str:
        intro = (f"On an island every inhabitant is a knight, who always tells the truth, or a knave, who always lies. "
                 f"You meet {len(names)} inhabitants: {', '.join(names[:-1])} and {names[-1]}.")
        said = " ".join(f"{names[speaker]} says: \"{render_statement(s, names)}\"" for speaker, s in statements)
        ask = ("Who are the knights? Answer with their names in alphabetical order, separated by commas, "
               "or 'none' if there are no knights.")
        return f"{intro} {said} {ask}"

    def _render_seating(self, names: list[str], constraints: list[list]) -> str:
        intro = (f"{len(names)} people, {', '.join(names[:-1])} and {names[-1]}, sit in a row of {len(names)} seats "
                 f"numbered 1 to {len(names)} from left to right.")
        rules = " ".join(render_constraint(c, names) for c in constraints)
        ask = "Who sits in each seat? Answer with the names from seat 1 to the last seat, separated by commas."
        return f"{intro} {rules} {ask}"

    def _perturb(self, item: FamilyItem, rng: random.Random) -> tuple[str, str] | None:
        p = item.params
        n = len(p["names"])
        key, solutions, render = (("statements", lambda cs: knight_solutions(n, cs), self._render_knights)
                                  if p["puzzle"] == "knights" else
                                  ("constraints", lambda cs: seating_solutions(n, cs), self._render_seating))
        clues = p[key]
        for drop in rng.sample(range(len(clues)), len(clues)):
            kept = clues[:drop] + clues[drop + 1:]
            if len(solutions(kept)) > 1:
                return render(p["names"], kept), "a single solution (more than one fits the clues)"
        return None


register_family(LogicFamily())
