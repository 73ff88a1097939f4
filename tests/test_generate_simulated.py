"""The simulated solver: seeded, known first-error steps, and continuation from an assistant prefix."""

import random

from cotforge.tasks.generate.base import GenerationRequest
from cotforge.tasks.generate.simulated import SimulatedGenerator
from cotforge.tasks.questions.families import get_family


def _question(seed: int = 3, difficulty: int = 4):
    item = get_family("arithmetic").generate(1, difficulty, seed)[0]
    return item, {"family": "arithmetic", "params": item.params}


def _request(context, n=1, seed=7, prefix=""):
    return GenerationRequest("q", ({"role": "user", "content": "question"},), n, seed, context=context,
                             assistant_prefix=prefix)


def test_same_seed_same_text_and_known_error_step():
    item, context = _question()
    gen = SimulatedGenerator(step_error_rate=0.3, format_error_rate=0.0)
    first = gen.generate([_request(context, n=6)])
    again = gen.generate([_request(context, n=6)])
    assert [c.text for c in first] == [c.text for c in again]
    for c in first:
        correct = c.text.endswith(f"The answer is {item.gold_answer}.")
        if c.first_error_step is None:
            assert correct
        else:  # an error step shows in the text: its line differs from the reference step
            line = c.text.splitlines()[c.first_error_step]
            assert line != f"Step {c.first_error_step + 1}: {item.reference_steps[c.first_error_step]}"


def test_prefix_continues_from_step_k_and_excludes_the_prefix():
    item, context = _question()
    k = 2
    prefix = "\n".join(f"Step {i + 1}: {s}" for i, s in enumerate(item.reference_steps[:k])) + "\n"
    gen = SimulatedGenerator(step_error_rate=0.0, format_error_rate=0.0)
    [c] = gen.generate([_request({**context, "prefix_steps": k, "prefix_error_at": None}, prefix=prefix)])
    assert c.text.splitlines()[0].startswith(f"Step {k + 1}: ")
    assert prefix + c.text == "\n".join(
        [f"Step {i + 1}: {s}" for i, s in enumerate(item.reference_steps)] + [f"The answer is {item.gold_answer}."])
    assert c.first_error_step is None


def test_error_in_prefix_carries_through_to_the_answer():
    item, context = _question()
    family = get_family("arithmetic")
    wrong = family.solve(item.params, random.Random(0), error_at=1)
    k = 3
    prefix = "\n".join(f"Step {i + 1}: {s}" for i, s in enumerate(wrong.steps[:k])) + "\n"
    gen = SimulatedGenerator(step_error_rate=0.0, format_error_rate=0.0)
    completions = gen.generate([_request({**context, "prefix_steps": k, "prefix_error_at": 1}, n=3, prefix=prefix)])
    for c in completions:
        assert c.first_error_step == 1
        assert c.text.endswith(f"The answer is {wrong.answer}.")
        assert wrong.answer != item.gold_answer


def test_fresh_errors_after_the_prefix_are_drawn_at_or_after_k():
    item, context = _question()
    k = 2
    prefix = "\n".join(f"Step {i + 1}: {s}" for i, s in enumerate(item.reference_steps[:k])) + "\n"
    gen = SimulatedGenerator(step_error_rate=0.5, format_error_rate=0.0)
    completions = gen.generate([_request({**context, "prefix_steps": k, "prefix_error_at": None}, n=20,
                                         prefix=prefix)])
    errors = [c.first_error_step for c in completions]
    assert any(e is not None for e in errors) and any(e is None for e in errors)
    assert all(e is None or e >= k for e in errors)
    for c in completions:
        assert c.text.endswith(f"The answer is {item.gold_answer}.") == (c.first_error_step is None)
