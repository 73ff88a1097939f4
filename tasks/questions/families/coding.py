"""Small coding tasks with unit tests: the question asks for one Python function, `Question.tests` holds plain
`assert` lines (no pytest) that the `code` verifier runs after the candidate program in the sandbox.

Each task has a reference solution (the gold answer) and a plausible buggy variant (what the simulated solver writes
when a step goes wrong). Expected values in the tests come from running the reference on random inputs, and the
generator keeps drawing inputs until at least one test tells the buggy variant apart, so the tests really test.
Difficulty picks harder tasks (three tiers: d 1-3, 4-6, 7-10) with longer plans and adds test cases (3 + d).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Callable

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


@dataclass(frozen=True)
class CodingTask:
    name: str  # the function's name
    arg: str  # its parameter, as written in the signature
    tier: int
    description: str  # "returns ..."
    reference: str
    buggy: str
    plan: tuple[str, ...]
    make_input: Callable[[random.Random, int], object]


def _ints(rng: random.Random, d: int, low: int = -9, size: int | None = None) -> list[int]:
    return [rng.randint(low, 9 + 3 * d) for _ in range(size if size is not None else rng.randint(0, 3 + d))]


def _word_text(rng: random.Random, d: int) -> str:
    words = ["".join(rng.choice("abcdeiou") for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 2 + d))]
    return " ".join(words)


def _mixed_text(rng: random.Random, d: int) -> str:
    if rng.random() < 0.4:  # palindromes must appear often enough for the tests to matter
        half = "".join(rng.choice("abcAB ,") for _ in range(rng.randint(0, 2 + d)))
        return half + rng.choice(["", "x", "Y"]) + half[::-1]
    return "".join(rng.choice("abcAB ,!") for _ in range(rng.randint(0, 4 + d)))


def _runs_text(rng: random.Random, d: int) -> str:
    return "".join(rng.choice("abc") * rng.randint(1, 4) for _ in range(rng.randint(0, 2 + d // 2)))


def _brackets(rng: random.Random, d: int) -> str:
    if rng.random() < 0.5:  # a balanced string, built by nesting
        s = ""
        for _ in range(rng.randint(0, 2 + d // 2)):
            o, c = rng.choice(["()", "[]", "{}"])
            s = rng.choice([f"{o}{s}{c}", f"{s}{o}{c}"])
        return s
    return "".join(rng.choice("()[]{}") for _ in range(rng.randint(1, 4 + d)))


TASKS: tuple[CodingTask, ...] = (
    CodingTask("sum_even", "xs", 1, "returns the sum of the even integers in the list `xs` (0 for an empty list)",
               "def sum_even(xs):\n    return sum(x for x in xs if x % 2 == 0)",
               "def sum_even(xs):\n    return sum(x for x in xs if x % 2 == 1)",
               ("Loop over xs.", "Keep the numbers divisible by 2 and add them up."), _ints),
    CodingTask("count_vowels", "s", 1, "returns how many characters of the string `s` are vowels (a, e, i, o, u, "
               "lower or upper case)",
               "def count_vowels(s):\n    return sum(1 for ch in s.lower() if ch in 'aeiou')",
               "def count_vowels(s):\n    return sum(1 for ch in s if ch in 'aeiou')",
               ("Lower-case the string.", "Count the characters that are vowels."),
               lambda rng, d: "".join(rng.choice("aEbIcOdu ") for _ in range(rng.randint(0, 5 + d)))),
    CodingTask("reverse_words", "s", 1, "returns the words of the string `s` (separated by single spaces) in reverse "
               "order, joined by single spaces",
               "def reverse_words(s):\n    return ' '.join(reversed(s.split(' ')))",
               "def reverse_words(s):\n    return s[::-1]",
               ("Split the string on spaces.", "Join the words in reverse order."), _word_text),
    CodingTask("spread", "xs", 1, "returns the largest minus the smallest number of the non-empty list `xs`",
               "def spread(xs):\n    return max(xs) - min(xs)",
               "def spread(xs):\n    return xs[-1] - xs[0]",
               ("Find the largest number.", "Find the smallest number and subtract."),
               lambda rng, d: _ints(rng, d, size=rng.randint(1, 3 + d))),
    CodingTask("is_palindrome", "s", 2, "returns True when the string `s` reads the same backwards once case and "
               "every character that is not a letter or digit are ignored, else False",
               "def is_palindrome(s):\n    t = [ch.lower() for ch in s if ch.isalnum()]\n    return t == t[::-1]",
               "def is_palindrome(s):\n    return s == s[::-1]",
               ("Keep only letters and digits.", "Lower-case them.", "Compare the sequence with its reverse."),
               _mixed_text),
    CodingTask("running_max", "xs", 2, "returns a list whose i-th item is the largest of xs[0], ..., xs[i]",
               "def running_max(xs):\n    out = []\n    for x in xs:\n        out.append(x if not out else max(out[-1], x))"
               "\n    return out",
               "def running_max(xs):\n    return sorted(xs)",
               ("Start with an empty result.", "Walk through xs keeping the largest value so far.",
                "Append that value at each position."), _ints),
    CodingTask("second_largest", "xs", 2, "returns the second largest distinct value in the list `xs`, or None when "
               "there is none",
               "def second_largest(xs):\n    values = sorted(set(xs))\n    return values[-2] if len(values) >= 2 else None",
               "def second_largest(xs):\n    values = sorted(xs)\n    return values[-2] if len(values) >= 2 else None",
               ("Remove duplicate values.", "Sort the distinct values.", "Return the one before the last, if any."),
               lambda rng, d: [rng.randint(0, 4 + d) for _ in range(rng.randint(0, 4 + d))]),
    CodingTask("fizzbuzz", "n", 2, "returns a list of strings for 1..n: 'Fizz' for multiples of 3, 'Buzz' for "
               "multiples of 5, 'FizzBuzz' for multiples of both, otherwise the number as a string",
               "def fizzbuzz(n):\n    out = []\n    for i in range(1, n + 1):\n        s = ('Fizz' if i % 3 == 0 else '') + "
               "('Buzz' if i % 5 == 0 else '')\n        out.append(s or str(i))\n    return out",
               "def fizzbuzz(n):\n    out = []\n    for i in range(1, n):\n        s = ('Fizz' if i % 3 == 0 else '') + "
               "('Buzz' if i % 5 == 0 else '')\n        out.append(s or str(i))\n    return out",
               ("Loop i from 1 to n inclusive.", "Build 'Fizz' and 'Buzz' parts from divisibility.",
                "Use the number itself when neither applies."), lambda rng, d: rng.randint(0, 10 + 3 * d)),
    CodingTask("run_length", "s", 3, "returns the run-length encoding of the string `s`: each maximal run of one "
               "character becomes the character followed by the run's length, e.g. 'aaab' -> 'a3b1'",
               "def run_length(s):\n    out = []\n    i = 0\n    while i < len(s):\n        j = i\n"
               "        while j < len(s) and s[j] == s[i]:\n            j += 1\n        out.append(s[i] + str(j - i))\n"
               "        i = j\n    return ''.join(out)",
               "def run_length(s):\n    return ''.join(ch + str(s.count(ch)) for ch in dict.fromkeys(s))",
               ("Walk through the string.", "Find where the current run ends.", "Write the character and the run "
                "length.", "Continue after the run."), _runs_text),
    CodingTask("balanced", "s", 3, "returns True when the brackets ()[]{} in the string `s` are balanced and "
               "properly nested, else False",
               "def balanced(s):\n    pairs = {')': '(', ']': '[', '}': '{'}\n    stack = []\n    for ch in s:\n"
               "        if ch in '([{':\n            stack.append(ch)\n        elif ch in pairs:\n"
               "            if not stack or stack.pop() != pairs[ch]:\n                return False\n"
               "    return not stack",
               "def balanced(s):\n    return all(s.count(o) == s.count(c) for o, c in ('()', '[]', '{}'))",
               ("Use a stack.", "Push opening brackets.", "Pop and compare on closing brackets.",
                "The stack must end empty."), _brackets),
    CodingTask("longest_increasing_run", "xs", 3, "returns the length of the longest contiguous strictly "
               "increasing run in the list `xs` (0 for an empty list)",
               "def longest_increasing_run(xs):\n    best = cur = 0\n    for i, x in enumerate(xs):\n"
               "        cur = cur + 1 if i and x > xs[i - 1] else 1\n        best = max(best, cur)\n    return best",
               "def longest_increasing_run(xs):\n    best = cur = 0\n    for i, x in enumerate(xs):\n"
               "        cur = cur + 1 if i and x >= xs[i - 1] else 1\n        best = max(best, cur)\n    return best",
               ("Track the current run length.", "Extend it when the number grows, else restart at 1.",
                "Keep the best length seen.", "Handle the empty list."),
               lambda rng, d: [rng.randint(0, 3 + d) for _ in range(rng.randint(0, 5 + d))]),
    CodingTask("caesar", "s", 3, "returns `s` with every lower-case letter shifted 3 places forward in the alphabet, "
               "wrapping from z to a; other characters stay as they are",
               "def caesar(s):\n    return ''.join(chr((ord(c) - 97 + 3) % 26 + 97) if 'a' <= c <= 'z' else c "
               "for c in s)",
               "def caesar(s):\n    return ''.join(chr(ord(c) + 3) if 'a' <= c <= 'z' else c for c in s)",
               ("Loop over the characters.", "Shift lower-case letters by 3.", "Wrap past z.",
                "Keep other characters."),
               lambda rng, d: "".join(rng.choice(string.ascii_lowercase[-6:] + "ab .A") for _ in range(1 + d))),
)
TASKS_BY_NAME = {t.name: t for t in TASKS}


def _function(source: str, name: str) -> Callable:
    namespace: dict = {}
    exec(source, namespace)  # our own reference code, never a model's
    return namespace[name]


def tests_for(task: CodingTask, inputs: list) -> str:
    reference = _function(task.reference, task.name)
    return "\n".join(f"assert {task.name}({value!r}) == {reference(value)!r}" for value in inputs)


def _tier(difficulty: int) -> int:
    return 1 if difficulty <= 3 else 2 if difficulty <= 6 else 3


class CodingFamily:
    name = "coding"

    def generate(self, n: int, difficulty: int, seed: int, **params) -> list[FamilyItem]:
        """Difficulty d: tasks of tier 1 (d 1-3), 2 (d 4-6) or 3 (d 7-10), each with 3 + d assert tests."""
        tier = params_value(params, "tier", _tier(difficulty))
        pool = [t for t in TASKS if t.tier == tier]
        if params.get("task") is not None:
            if params["task"] not in TASKS_BY_NAME:
                raise ValueError(f"coding task must be one of {sorted(TASKS_BY_NAME)}, got {params['task']!r}")
            pool = [TASKS_BY_NAME[params["task"]]]
        n_tests = params_value(params, "tests", 3 + difficulty)

        def make(rng: random.Random) -> FamilyItem | None:
            task = rng.choice(pool)
            reference, buggy = _function(task.reference, task.name), _function(task.buggy, task.name)
            inputs: list = []
            for _ in range(50 * n_tests):
                value = task.make_input(rng, difficulty)
                if value in inputs:
                    continue
                inputs.append(value)
                if len(inputs) >= n_tests:
                    break
            if not any(_differs(reference, buggy, v) for v in inputs):
                tellers = [v for v in (task.make_input(rng, difficulty) for _ in range(200))
                           if _differs(reference, buggy, v)]
                if not tellers:
                    return None
                inputs[-1] = tellers[0]
            example = inputs[0]
            p = {"task": task.name, "tests": tests_for(task, inputs), "example": repr(example),
                 "example_result": repr(reference(example))}
            solution = self.solve(p, rng, None)
            return FamilyItem(text=self._render(task, p), gold_answer=task.reference, params=p,
                              reference_steps=solution.steps, answer_type="code", verifier="code",
                              tests=p["tests"])

        key = f"{self.name}:{tier}:{params.get('task')}:{difficulty}:{seed}"
        return family_items(n, key, make, params, self._perturb)

    def num_steps(self, params: dict) -> int:
        return ABSTAIN_STEPS if is_unanswerable(params) else len(TASKS_BY_NAME[params["task"]].plan)

    def solve(self, params: dict, rng: random.Random, error_at: int | None) -> Solution:
        """The plan, then the program in a fenced block; a wrong step yields the task's buggy variant."""
        if is_unanswerable(params):
            return abstain_solution(params, rng, error_at)
        task = TASKS_BY_NAME[params["task"]]
        code = task.buggy if error_at is not None else task.reference
        return Solution(task.plan, f"```python\n{code}\n```", error_at)

    def _render(self, task: CodingTask, p: dict) -> str:
        return (f"Write a Python function `{task.name}({task.arg})` that {task.description}. "
                f"For example, {task.name}({p['example']}) == {p['example_result']}. "
                "Answer with the complete function in a ```python code block.")

    def _perturb(self, item: FamilyItem, rng: random.Random) -> tuple[str, str]:
        task = TASKS_BY_NAME[item.params["task"]]
        return (f"Write a Python function `{task.name}({task.arg})` that does what the customer asked for in the "
                "ticket. Answer with the complete function in a ```python code block.",
                "what the function must compute")


def _differs(reference: Callable, buggy: Callable, value) -> bool:
    try:
        return reference(value) != buggy(value)
    except Exception:  # the buggy variant crashing on this input also tells it apart
        return True


register_family(CodingFamily())
