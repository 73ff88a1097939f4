"""Linear equations in one unknown. Difficulty adds terms (x on both sides, then brackets) and widens coefficients;
from difficulty 6 the solution is a fraction.

A term is `["x", c]` (c·x), `["const", c]` or `["bracket", p, q]` (p·(x + q)). The worked solution moves every term
to the left side one at a time, keeping a running `A·x + B`, then divides: x = -B / A.
"""

from __future__ import annotations

import random
from fractions import Fraction

from cotforge.tasks.questions.families.base import (
    ABSTAIN_STEPS,
    FamilyItem,
    Solution,
    abstain_solution,
    family_items,
    is_unanswerable,
    params_value,
    register_family,
)


def _fmt_number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _fmt_linear(a: int, b: int) -> str:
    """`A·x + B` as written by hand: 3x - 7, -x, 5."""
    parts = []
    if a:
        parts.append("x" if a == 1 else "-x" if a == -1 else f"{a}x")
    if b or not parts:
        parts.append(f"{b}" if not parts else f"+ {b}" if b > 0 else f"- {-b}")
    return " ".join(parts)


def render_term(term: list, first: bool) -> str:
    kind = term[0]
    if kind == "x":
        c = term[1]
        body = "x" if abs(c) == 1 else f"{abs(c)}x"
    elif kind == "const":
        c = term[1]
        body = str(abs(c))
    else:
        c, q = term[1], term[2]
        inner = f"x + {q}" if q >= 0 else f"x - {-q}"
        body = f"({inner})" if abs(c) == 1 else f"{abs(c)}({inner})"
    if first:
        return body if c > 0 else f"-{body}"
    return f"+ {body}" if c > 0 else f"- {body}"


def render_side(terms: list[list]) -> str:
    return " ".join(render_term(t, i == 0) for i, t in enumerate(terms))


def _term_value(term: list) -> tuple[int, int]:
    """The term as (coefficient of x, constant)."""
    if term[0] == "x":
        return term[1], 0
    if term[0] == "const":
        return 0, term[1]
    return term[1], term[1] * term[2]


class LinearFamily:
    name = "linear"

    def generate(self, n: int, difficulty: int, seed: int, **params) -> list[FamilyItem]:
        """Difficulty d: d + 2 terms in all, coefficients up to 3 + 2d, x on both sides from d 2, brackets from d 4,
        fractional solutions from d 6."""
        n_terms = params_value(params, "terms", difficulty + 2)
        high = 3 + 2 * difficulty
        kinds = ["x", "const"] + (["bracket"] if difficulty >= 4 else [])

        def coefficient(rng: random.Random) -> int:
            return rng.choice([-1, 1]) * rng.randint(1, high)

        def make(rng: random.Random) -> FamilyItem | None:
            n_left = max(1, n_terms // 2 + (n_terms % 2)) if difficulty >= 2 else n_terms - 1
            left = [[rng.choice(kinds), coefficient(rng)] for _ in range(n_left)]
            right = [[rng.choice(kinds if difficulty >= 2 else ["const"]), coefficient(rng)]
                     for _ in range(n_terms - n_left - 1)]
            for term in left + right:
                if term[0] == "bracket":
                    term.append(coefficient(rng))
            if not any(t[0] != "const" for t in left):
                left[0] = ["x", coefficient(rng)]
            a = sum(_term_value(t)[0] for t in left) - sum(_term_value(t)[0] for t in right)
            if a == 0:
                return None
            b = sum(_term_value(t)[1] for t in left) - sum(_term_value(t)[1] for t in right)
            if difficulty < 6:
                # Choose the solution first, then the last constant, so the answer is a whole number.
                x0 = rng.randint(-high, high)
                last = a * x0 + b
            else:
                last = coefficient(rng) * rng.randint(1, 4)
            if last == 0:
                return None
            right.append(["const", last])
            p = {"left": left, "right": right}
            solution = self.solve(p, rng, None)
            return FamilyItem(text=self._render(p), gold_answer=solution.answer, params=p,
                              reference_steps=solution.steps)

        key = f"{self.name}:{difficulty}:{seed}"
        return family_items(n, key, make, params, self._perturb)

    def num_steps(self, params: dict) -> int:
        return ABSTAIN_STEPS if is_unanswerable(params) else len(params["left"]) + len(params["right"]) + 1

    def solve(self, params: dict, rng: random.Random, error_at: int | None) -> Solution:
        """Move the terms to the left one by one; a wrong step slips the running constant and the slip carries on."""
        if is_unanswerable(params):
            return abstain_solution(params, rng, error_at)
        a, b = 0, 0
        steps = []
        for i, (side, term) in enumerate([("left", t) for t in params["left"]] +
                                         [("right", t) for t in params["right"]]):
            ca, cb = _term_value(term)
            sign = 1 if side == "left" else -1
            a, b = a + sign * ca, b + sign * cb
            if i == error_at:
                b += rng.choice([-3, -2, -1, 1, 2, 3])
            verb = "Keep" if side == "left" else "Move to the left side"
            steps.append(f"{verb} {render_term(term, True)}: the left side is now {_fmt_linear(a, b)}")
        x = Fraction(-b, a)
        final = len(steps)
        if final == error_at:
            x += rng.choice([-1, 1])
        steps.append(f"{_fmt_linear(a, b)} = 0, so x = {_fmt_number(Fraction(-b, a))}" if final != error_at else
                     f"{_fmt_linear(a, b)} = 0, so x = {_fmt_number(x)}")
        return Solution(tuple(steps), _fmt_number(x), error_at)

    def _render(self, p: dict) -> str:
        return (f"Solve for x: {render_side(p['left'])} = {render_side(p['right'])}. "
                "Give x as a whole number or a fraction in lowest terms.")

    def _perturb(self, item: FamilyItem, rng: random.Random) -> tuple[str, str]:
        # The right side's last constant (the one that fixes the solution) becomes an unknown k.
        p = item.params
        right = render_side(p["right"][:-1])
        last = p["right"][-1][1]
        k_term = ("k" if last > 0 else "-k") if not right else ("+ k" if last > 0 else "- k")
        equation = f"{render_side(p['left'])} = {(right + ' ' if right else '') + k_term}"
        return (f"Solve for x: {equation}, where k is a constant. "
                "Give x as a whole number or a fraction in lowest terms.", "the value of k")


register_family(LinearFamily())
