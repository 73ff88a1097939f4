"""Multi-step arithmetic word problems. Difficulty adds steps and widens the numbers."""

from __future__ import annotations

import random

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

_NAMES = ["Ava", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goro", "Hana", "Ivan", "Jade"]
_THINGS = ["apples", "marbles", "stickers", "coins", "books", "shells", "pencils", "stamps"]

# op -> (sentence template, step template, function)
_OPS = {
    "add": ("Then {name} gets {x} more.", "{a} + {x} = {r}", lambda a, x: a + x),
    "sub": ("Then {name} gives away {x}.", "{a} - {x} = {r}", lambda a, x: a - x),
    "mul": ("Then {name}'s pile grows to {x} times as many.", "{a} * {x} = {r}", lambda a, x: a * x),
}


class ArithmeticFamily:
    name = "arithmetic"

    def generate(self, n: int, difficulty: int, seed: int, **params) -> list[FamilyItem]:
        """`difficulty` d: d steps (1 = a single addition), operands up to 10**(1 + d//3)."""
        steps = params_value(params, "steps", difficulty)
        high = 10 ** (1 + difficulty // 3)
        ops = ["add"] if difficulty == 1 else ["add", "sub", "mul"]

        def make(rng: random.Random) -> FamilyItem:
            start = rng.randint(1, high)
            value = start
            plan = []
            for _ in range(steps):
                op = rng.choice(ops)
                if op == "sub" and value <= 1:
                    op = "add"
                x = rng.randint(2, 4) if op == "mul" else rng.randint(1, value - 1 if op == "sub" else high)
                plan.append([op, x])
                value = _OPS[op][2](value, x)
            p = {"name": rng.choice(_NAMES), "thing": rng.choice(_THINGS), "start": start, "plan": plan}
            solution = self.solve(p, rng, error_at=None)
            return FamilyItem(text=self._render(p), gold_answer=solution.answer, params=p,
                              reference_steps=solution.steps)

        key = f"{self.name}:{difficulty}:{seed}"
        return family_items(n, key, make, params, self._perturb)

    def _perturb(self, item: FamilyItem, rng: random.Random) -> tuple[str, str]:
        p = item.params
        first = f"{p['name']} has {p['start']} {p['thing']}."
        return (item.text.replace(first, f"{p['name']} has some {p['thing']}.", 1),
                f"how many {p['thing']} {p['name']} starts with")

    def num_steps(self, params: dict) -> int:
        return ABSTAIN_STEPS if is_unanswerable(params) else len(params["plan"])

    def solve(self, params: dict, rng: random.Random, error_at: int | None) -> Solution:
        """Work the plan step by step; at `error_at` the result is off by a small amount and the error carries on."""
        if is_unanswerable(params):
            return abstain_solution(params, rng, error_at)
        value = params["start"]
        steps = []
        for i, (op, x) in enumerate(params["plan"]):
            result = _OPS[op][2](value, x)
            if i == error_at:
                result += rng.choice([-3, -2, -1, 1, 2, 3, 10])
            steps.append(_OPS[op][1].format(a=value, x=x, r=result))
            value = result
        return Solution(tuple(steps), str(value), error_at)

    def _render(self, p: dict) -> str:
        sentences = [f"{p['name']} has {p['start']} {p['thing']}."]
        sentences += [_OPS[op][0].format(name=p["name"], x=x) for op, x in p["plan"]]
        sentences.append(f"How many {p['thing']} does {p['name']} have now?")
        return " ".join(sentences)


register_family(ArithmeticFamily())
