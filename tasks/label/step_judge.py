"""The optional per-step LLM judge of the PRM view: asks whether each step is correct and measures how often it
agrees with the Monte-Carlo labels."""

from __future__ import annotations

import re

from cotforge.schemas.config_views import PrmViewConfig
from cotforge.schemas.records import stable_id
from cotforge.tasks.generate import GenerationRequest, Generator, SamplingParams

_YES_NO = re.compile(r"\b(yes|no)\b", re.I)


def judge_step_messages(question: str, steps: list[str], step: int, rubric: str) -> tuple[dict[str, str], ...]:
    """The judge's chat for one step: the question, the steps before it, and the step to check."""
    previous = "\n".join(f"Step {j + 1}: {s}" for j, s in enumerate(steps[:step])) or "(none)"
    user = (f"Question:\n{question}\n\nPrevious steps:\n{previous}\n\n"
            f"Step to check:\nStep {step + 1}: {steps[step]}\n\nIs this step correct given the previous ones? "
            "Answer yes or no.")
    return {"role": "system", "content": rubric}, {"role": "user", "content": user}


def parse_yes_no(text: str) -> bool | None:
    """The first standalone "yes" / "no" of a judge's reply; None when it has neither."""
    found = _YES_NO.search(text or "")
    return None if found is None else found.group(1).lower() == "yes"


def judge_agreement(judge_labels: list[bool | None], labels: list[bool]) -> float | None:
    """Share of the steps the judge decided where it agrees with the hard label; None when it decided none."""
    pairs = [(j, h) for j, h in zip(judge_labels, labels) if j is not None]
    return sum(j == h for j, h in pairs) / len(pairs) if pairs else None


def judge_steps(generator: Generator, items: list[tuple[dict, list[str]]], config: PrmViewConfig,
                recipe_seed: int) -> list[tuple[list[bool | None], list[str]]]:
    """(yes/no per step, raw reply per step) for each (row, steps) item, from ONE batched generate call.

    A failed request or a reply without yes/no is None for that step (the reply or error text is kept); a backend
    that fails the whole call makes every step None with its error, so the MC labels are never lost to the judge.
    """
    judge = config.judge
    s = judge.generation.sampling
    params = SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=tuple(s.stop))
    requests = [GenerationRequest(
        request_id=f"{row['sample_id']}:judge:{i}", n=1, params=params,
        messages=judge_step_messages(row["question"] or "", steps, i, judge.rubric),
        seed=int(stable_id(str(recipe_seed), row["sample_id"], str(i), "judge", length=8), 16) % (2**31 - 1),
        context={"step_index": i, "sample_id": row["sample_id"]})
        for row, steps in items for i in range(len(steps))]
    try:
        completions = generator.generate(requests) if requests else []
        replies = {c.request_id: (None, f"error: {c.error}") if c.error is not None else (parse_yes_no(c.text), c.text)
                   for c in completions if c.index == 0}
    except Exception as error:  # noqa: BLE001 - recorded on every step, the labels stand without the judge
        replies = {r.request_id: (None, f"error: {type(error).__name__}: {error}") for r in requests}
    out = []
    for row, steps in items:
        got = [replies.get(f"{row['sample_id']}:judge:{i}", (None, "error: no reply")) for i in range(len(steps))]
        out.append(([g[0] for g in got], [g[1] for g in got]))
    return out
