"""Number theory: modular powers (square and multiply), greatest common divisors (Euclid) and remainders of products.

Difficulty widens the numbers (more exponent bits, more Euclid divisions) and adds factors. The param `kind`
("modpow", "gcd", "product_mod") fixes one kind; by default each question draws one.
"""

from __future__ import annotations

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

KINDS = ("modpow", "gcd", "product_mod")


def _slip(rng: random.Random) -> int:
    return rng.choice([-2, -1, 1, 2, 3])


class NumberTheoryFamily:
    name = "number_theory"

    def generate(self, n: int, difficulty: int, seed: int, **params) -> list[FamilyItem]:
        """Difficulty d: exponents below 2**(d+2), moduli up to 10(d+1); gcds of 2 + d//3 numbers with d+1 digits'
        worth of size; products of 2 + d factors."""
        kind_param = params.get("kind")
        if kind_param is not None and kind_param not in KINDS:
            raise ValueError(f"number_theory kind must be one of {KINDS}, got {kind_param!r}")

        def make(rng: random.Random) -> FamilyItem:
            kind = kind_param or rng.choice(KINDS)
            if kind == "modpow":
                m = rng.randint(5, 10 * (difficulty + 1))
                p = {"kind": kind, "base": rng.randint(2, 10 * difficulty + 5),
                     "exponent": rng.randint(2 ** (difficulty + 1), 2 ** (difficulty + 2) - 1), "modulus": m}
            elif kind == "gcd":
                common = rng.randint(2, 6 * difficulty + 6)
                count = 2 + difficulty // 3
                high = 10 ** (1 + difficulty // 2)
                p = {"kind": kind, "numbers": [common * rng.randint(2, high) for _ in range(count)]}
            else:
                p = {"kind": kind, "factors": [rng.randint(10, 10 * (difficulty + 2)) for _ in range(2 + difficulty)],
                     "modulus": rng.randint(3, 10 + 3 * difficulty)}
            solution = self.solve(p, rng, None)
            return FamilyItem(text=self._render(p), gold_answer=solution.answer, params=p,
                              reference_steps=solution.steps)

        key = f"{self.name}:{kind_param}:{difficulty}:{seed}"
        return family_items(n, key, make, params, self._perturb)

    def num_steps(self, params: dict) -> int:
        if is_unanswerable(params):
            return ABSTAIN_STEPS
        return len(self.solve(params, random.Random(0), None).steps)

    def solve(self, params: dict, rng: random.Random, error_at: int | None) -> Solution:
        """Step-by-step work; at `error_at` an intermediate result slips by a little and the slip carries on."""
        if is_unanswerable(params):
            return abstain_solution(params, rng, error_at)
        steps: list[str] = []
        kind = params["kind"]
        if kind == "modpow":
            m, result, square = params["modulus"], 1, params["base"] % params["modulus"]
            bits = bin(params["exponent"])[:1:-1]  # least significant bit first
            for i, bit in enumerate(bits):
                if bit == "1":
                    result = result * square % m
                if len(steps) == error_at:
                    result = (result + _slip(rng)) % m
                steps.append(f"bit {i} of the exponent is {bit}: result = {result} (mod {m}), "
                             f"square = {square} (mod {m})")
                square = square * square % m
            return Solution(tuple(steps), str(result), error_at)
        if kind == "gcd":
            numbers = params["numbers"]
            g = numbers[0]
            for other in numbers[1:]:
                a, b = max(g, other), min(g, other)
                while b:
                    q, r = divmod(a, b)
                    if len(steps) == error_at:
                        r = max(0, r + _slip(rng)) if r else _slip(rng) % b
                    steps.append(f"{a} = {q} * {b} + {r}")
                    a, b = b, r
                g = a
            return Solution(tuple(steps), str(g), error_at)
        m, result = params["modulus"], 1
        for factor in params["factors"]:
            result = result * factor % m
            if len(steps) == error_at:
                result = (result + _slip(rng)) % m
            steps.append(f"multiply by {factor}: {result} (mod {m})")
        return Solution(tuple(steps), str(result), error_at)

    def _render(self, p: dict) -> str:
        if p["kind"] == "modpow":
            return f"What is the remainder when {p['base']}^{p['exponent']} is divided by {p['modulus']}?"
        if p["kind"] == "gcd":
            numbers = [str(x) for x in p["numbers"]]
            return f"What is the greatest common divisor of {', '.join(numbers[:-1])} and {numbers[-1]}?"
        product = " * ".join(str(f) for f in p["factors"])
        return f"What is the remainder when {product} is divided by {p['modulus']}?"

    def _perturb(self, item: FamilyItem, rng: random.Random) -> tuple[str, str]:
        p = item.params
        if p["kind"] == "gcd":
            numbers = [str(x) for x in p["numbers"]]
            return (f"What is the greatest common divisor of {', '.join(numbers)} and a number Dana is thinking of?",
                    "Dana's number")
        text = item.text.replace(f"divided by {p['modulus']}?", "divided by the modulus Dana chose?")
        return text, "the modulus"


register_family(NumberTheoryFamily())
