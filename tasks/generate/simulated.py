"""A seeded simulated solver for the programmatic families: its error model is known, so tests can check labels.

Each step goes wrong with probability `step_error_rate`; the first wrong step is recorded on the completion and the
error carries through the later steps, as a real model's would. With `format_error_rate` the answer line is missing.
"""

from __future__ import annotations

import random
from typing import Sequence

from tasks.families import get_family
from tasks.generate.base import Completion, GenerationRequest


class SimulatedGenerator:
    backend = "simulated"
    revision = "1"

    def __init__(self, step_error_rate: float = 0.15, format_error_rate: float = 0.05):
        self.step_error_rate = step_error_rate
        self.format_error_rate = format_error_rate
        self.model = f"simulated-solver(step_error_rate={step_error_rate})"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return [self._complete(r, i) for r in requests for i in range(r.n)]

    def _complete(self, request: GenerationRequest, index: int) -> Completion:
        rng = random.Random(f"{request.seed}:{index}")
        family_name = request.context.get("family")
        if family_name is None:
            return Completion(request.request_id, index, "", "error", 0, 0,
                              error="simulated solver needs a question from a programmatic family")
        family = get_family(family_name)
        params = request.context["params"]
        error_at = next((s for s in range(family.num_steps(params)) if rng.random() < self.step_error_rate), None)
        solution = family.solve(params, rng, error_at)
        lines = [f"Step {i + 1}: {step}" for i, step in enumerate(solution.steps)]
        if rng.random() >= self.format_error_rate:
            lines.append(f"The answer is {solution.answer}.")
        text = "\n".join(lines)
        prompt_tokens = sum(len(m["content"].split()) for m in request.messages)
        return Completion(request.request_id, index, text, "stop", prompt_tokens, len(text.split()),
                          first_error_step=solution.first_error_step)

    def close(self) -> None:
        pass
