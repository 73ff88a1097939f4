"""A seeded simulated solver for the programmatic families: its error model is known, so tests can check labels.

Each step goes wrong with probability `step_error_rate`; the first wrong step is recorded on the completion and the
error carries through the later steps, as a real model's would. With `format_error_rate` the answer line is missing.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator, Sequence

from cotforge.tasks.generate.base import Completion, GenerationRequest
from cotforge.tasks.questions.families import get_family


def model_name(step_error_rate: float) -> str:
    """The name this backend gives its solver: its error rate is what tells two solvers apart."""
    return f"simulated-solver(step_error_rate={step_error_rate})"


class SimulatedGenerator:
    backend = "simulated"
    revision = "1"

    def __init__(self, step_error_rate: float = 0.15, format_error_rate: float = 0.05):
        self.step_error_rate = step_error_rate
        self.format_error_rate = format_error_rate
        self.model = model_name(step_error_rate)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return [self._complete(r, i) for r in requests for i in range(r.n)]

    def stream(self, requests: Iterable[GenerationRequest]) -> Iterator[list[Completion]]:
        """One request at a time, each yielded as it is solved (a window of one: the solver has no engine to fill)."""
        for request in requests:
            yield [self._complete(request, i) for i in range(request.n)]

    def _complete(self, request: GenerationRequest, index: int) -> Completion:
        rng = random.Random(f"{request.seed}:{index}")
        family_name = request.context.get("family")
        if family_name is None and "gold_answer" in request.context:
            return self._complete_from_gold(request, index, rng)
        if family_name is None:
            return Completion(request.request_id, index, "", "error", 0, 0, retryable=False,
                              error="simulated solver needs a question from a programmatic family")
        family = get_family(family_name)
        params = request.context["params"]
        # A prefix (PRM rollouts, guided re-sampling) holds steps 0..k-1 already written; steps k.. get fresh error
        # draws, and an error inside the prefix carries through, as it would for a model continuing that text.
        k = int(request.context.get("prefix_steps", 0) or 0)
        prefix_error_at = request.context.get("prefix_error_at")
        num_steps = family.num_steps(params)
        error_at = next((s for s in range(k, num_steps) if rng.random() < self.step_error_rate), None)
        steps, answer = _continue_solution(family, params, rng, k, error_at, request.assistant_prefix)
        first_error = prefix_error_at if prefix_error_at is not None and prefix_error_at < k else error_at
        lines = [f"Step {k + i + 1}: {step}" for i, step in enumerate(steps)]
        if rng.random() >= self.format_error_rate:
            lines.append(f"The answer is {answer}.")
        text = "\n".join(lines)
        if request.assistant_prefix and not request.assistant_prefix.endswith("\n") and text:
            text = "\n" + text
        prompt_tokens = sum(len(m["content"].split()) for m in request.messages)
        prompt_tokens += len(request.assistant_prefix.split())
        return Completion(request.request_id, index, text, "stop", prompt_tokens, len(text.split()),
                          first_error_step=first_error)

    def _complete_from_gold(self, request: GenerationRequest, index: int, rng: random.Random) -> Completion:
        """A question without a family but with a gold answer (reasoning-gym): two steps, then the gold answer in
        answer tags, or (with probability `step_error_rate`) a wrong one made from it."""
        gold = request.context["gold_answer"] or ""
        wrong = rng.random() < self.step_error_rate or not gold
        answer = _wrong_answer(gold, rng) if wrong else gold
        lines = ["Step 1: Read what the task asks for.", "Step 2: Work it out."]
        if rng.random() >= self.format_error_rate:
            lines.append(f"<answer>{answer}</answer>")
        text = "\n".join(lines)
        prompt_tokens = sum(len(m["content"].split()) for m in request.messages)
        return Completion(request.request_id, index, text, "stop", prompt_tokens, len(text.split()),
                          first_error_step=1 if wrong else None)

    def close(self) -> None:
        pass


def _wrong_answer(gold: str, rng: random.Random) -> str:
    """Another answer than `gold`: a number off by a little, else the text reversed or extended."""
    try:
        return str(int(gold) + rng.choice([-2, -1, 1, 2]))
    except ValueError:
        return gold[::-1] if gold[::-1] != gold else gold + " x"


_STEP_RESULT = re.compile(r"=\s*(-?\d+)\s*$")


def _continue_solution(family, params: dict, rng: random.Random, k: int, error_at: int | None,
                       prefix: str) -> tuple[tuple[str, ...], str]:
    """Steps k.. of a solution and its final answer, continuing from the value the prefix's last step reached."""
    if k == 0:
        solution = family.solve(params, rng, error_at)
        return solution.steps, solution.answer
    last_step = [line for line in prefix.splitlines() if line.strip()][-1:] or [""]
    reached = _STEP_RESULT.search(last_step[0])
    if reached and "start" in params and "plan" in params:
        # Families shaped like arithmetic (a start value and a plan of operations): carry the prefix's value on,
        # wrong or not, so an error in the prefix reaches the final answer.
        rest = dict(params, start=int(reached.group(1)), plan=params["plan"][k:])
        solution = family.solve(rest, rng, None if error_at is None else error_at - k)
        return solution.steps, solution.answer
    # Other families: the prefix is taken as correct; only the fresh draws can go wrong.
    solution = family.solve(params, rng, error_at)
    return solution.steps[k:], solution.answer
