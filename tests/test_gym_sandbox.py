"""reasoning-gym scorers that evaluate the answer, fed answers that are code: contained by the scorer sandbox.

Each payload is first run through the same scorer in this process (the control: the file appears, the poison
works), then through a grader process (root, and the unprivileged account) whose scorer sandbox scores it: nothing
appears outside, and a later verdict in the same sandbox is what it would have been. The guard in front of the
evaluating scorers (`unevaluable`) refuses these answers outright; the containment tests switch it off to reach
the evaluator.
"""

from __future__ import annotations

import inspect
import json
import re
import uuid
from pathlib import Path

import pytest

from tests.conftest import missing_component
from tests.sandbox_support import assert_nothing_left, grader, missing, require_bwrap, shared_dir  # noqa: F401

try:
    import reasoning_gym  # noqa: F401
except ImportError as error:  # the optional extra: scripts/test.sh installs it
    missing_component(f"reasoning-gym is not installed ({error}): pip install 'cotforge[gym]'", module=True)

from cotforge.tasks.questions import gym  # noqa: E402
from cotforge.tasks.verify import gym_check  # noqa: E402
from cotforge.tasks.verify.gym_sandbox import (  # noqa: E402
    EVALUATING_SCORERS,
    close_sandboxes,
    score_in_sandbox,
    unevaluable,
)
from cotforge.tasks.verify.sandbox import marked_processes  # noqa: E402

LIMITS = {"cpu_s": 2, "wall_s": 6.0, "memory_mb": 256, "max_processes": 8, "max_output_bytes": 10_000, "disk_mb": 4}


def _require_isolation() -> None:
    """Skip (fail under CI=true) where this process cannot open a scorer sandbox: no bwrap, or no namespaces."""
    from cotforge.tasks.verify.sandbox import isolation_problem
    from cotforge.tasks.verify.sandbox_host import _sandbox_uid

    require_bwrap()
    problem = isolation_problem(_sandbox_uid())
    if problem is not None:
        missing(f"no scorer sandbox here: {problem}")


def _item(task: str, seed: int = 3) -> tuple[dict, dict]:
    config = gym.effective_config(task, {}, None)
    return config, gym.entry_json(gym.make_entry(task, config, seed))


def _in_process(task: str, config: dict, entry: dict, answer: str) -> float:
    """The scorer as main ran it, in the calling process: the control."""
    return gym.scorer(task, config)(answer, entry)


def _write_payload(task: str, path: Path) -> str:
    """An answer that, once the task's scorer evaluates it, writes `path` (through eval, or sympy's parse_expr)."""
    code = f"open({str(path)!r}, 'w').write('pwned')"
    if EVALUATING_SCORERS[task] == "literal":
        return f"[{code}]"
    return f"__import__('builtins').exec({code!r}) or 24"


@pytest.mark.parametrize("task", sorted(EVALUATING_SCORERS))
def test_gym_payload_writes_a_file_in_process_but_nothing_outside_the_sandbox(task, grader, shared_dir):
    config, entry = _item(task)
    control = shared_dir / f"control-{task}"
    _in_process(task, config, entry, _write_payload(task, control))
    assert control.read_text() == "pwned"  # the control: main's in-process scoring ran the answer as code
    control.unlink()
    target = shared_dir / f"escape-{task}-{uuid.uuid4().hex}"
    assert grader.can_write(target)  # outside a sandbox, this grader's user could write it
    answers = [_write_payload(task, target), str(entry["answer"])]
    (payload, why), (gold, gold_why) = grader.gym(task, config, entry, answers, guard=False, **LIMITS)
    assert not target.exists()
    assert gold == 1.0 and gold_why is None  # the sandbox scores, and the next verdict is the honest one
    # With the guard (what the verifier runs), the payload never reaches the evaluator.
    (_, guarded), = grader.gym(task, config, entry, [answers[0]], guard=True, **LIMITS)
    assert guarded.startswith("answer_evaluates_code")


POISONS = {  # each rebinds what later verdicts use, in the process that evaluates it
    "string_insertion": "[setattr(__import__('reasoning_gym.algorithmic.string_insertion', fromlist=['x'])"
                        ".StringInsertionDataset, 'score_answer', lambda self, answer, entry: 1.0)]",
    "puzzle24": "__import__('builtins').exec(\"import reasoning_gym.games.puzzle24 as m; "
                "m.Puzzle24Dataset.score_answer = lambda self, answer, entry: 1.0\") or 24",
    "n_queens": "[setattr(__import__('builtins'), 'isinstance', lambda *a: False)]",  # every later answer: 0.0
}


def _poisoned_in_process(task: str, config: dict, entry: dict, later: str) -> float:
    """The control: score the poison, then `later`, in this interpreter (what main's pool worker did); restores
    what the poison rebound."""
    import builtins

    from reasoning_gym.algorithmic.string_insertion import StringInsertionDataset
    from reasoning_gym.games.n_queens import NQueensDataset
    from reasoning_gym.games.puzzle24 import Puzzle24Dataset

    saved = [(builtins, "isinstance", builtins.isinstance)] + [
        (cls, "score_answer", vars(cls)["score_answer"]) for cls in (StringInsertionDataset, Puzzle24Dataset,
                                                                     NQueensDataset)]
    try:
        _in_process(task, config, entry, POISONS[task])
        return _in_process(task, config, entry, later)
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


@pytest.mark.parametrize("task", sorted(POISONS))
def test_gym_poisoned_answer_cannot_change_a_later_verdict(task, grader):
    config, entry = _item(task)
    wrong, gold = "definitely not the answer", str(entry["answer"] if task != "n_queens"
                                                   else entry["metadata"]["valid_answers"][0])
    assert _in_process(task, config, entry, wrong) < 1.0 and _in_process(task, config, entry, gold) == 1.0
    later = gold if task == "n_queens" else wrong
    assert _poisoned_in_process(task, config, entry, later) == (0.0 if task == "n_queens" else 1.0)  # the control
    outcomes = grader.gym(task, config, entry, [POISONS[task], wrong, gold], guard=False, **LIMITS)
    assert outcomes[1][0] is not None and outcomes[1][0] < 1.0, outcomes  # the later wrong answer stays wrong
    assert outcomes[2] == [1.0, None], outcomes  # and the right one right


def test_gym_scorer_that_runs_away_is_stopped_and_the_next_verdict_is_fine(grader):
    """`9**9**9` is a valid arithmetic expression (the guard lets it through) that sympy evaluates for ever: the
    child hits its CPU or wall limit, and the sandbox goes on scoring."""
    config, entry = _item("puzzle24")
    limits = dict(LIMITS, cpu_s=1, wall_s=3.0)
    outcomes = grader.gym("puzzle24", config, entry, ["9**9**9**9", str(entry["answer"])], **limits)
    assert outcomes[0][0] is None, outcomes
    assert outcomes[0][1] in ("scorer_cpu_limit", "scorer_timeout", "scorer_error:MemoryError"), outcomes
    assert outcomes[1] == [1.0, None]


def test_gym_guard_lets_the_answers_scorers_read_through():
    """The allow-list in front of the evaluating scorers refuses code, not answers: each task's own gold answer and
    the forms models write pass it, and they verify through the sandbox."""
    _require_isolation()
    for task in sorted(EVALUATING_SCORERS):
        config, entry = _item(task)
        if entry["answer"] is not None:
            assert unevaluable(task, str(entry["answer"])) is None, (task, entry["answer"])
            assert gym_check.score_answer(task, json.dumps(config), json.dumps(entry), str(entry["answer"])) == (
                True, "score=1.0"), task
    for task, answer in (("puzzle24", "(8 - 4) * 6"), ("countdown", "5 * 3 + 2 - 1"), ("string_insertion", "abcd"),
                         ("simple_integration", "-3*x**4/4 + exp(x) + log(x)/2 + C"),
                         ("n_queens", "[['Q', '_'], ['_', 'Q']]")):
        assert unevaluable(task, answer) is None, (task, answer)
    for task, answer in (("puzzle24", "__import__('os').getpid()"), ("countdown", "exec(1)"),
                         ("polynomial_multiplication", "x.func(1)"), ("simple_integration", "Symbol('x')"),
                         ("string_insertion", "[print(1)]"), ("binary_matrix", "[x for x in []]"),
                         ("spiral_matrix", "(lambda: 1)()"), ("n_queens", "[[].__class__]"),
                         ("countdown", "1 if 1 else 2")):
        assert unevaluable(task, answer) is not None, (task, answer)
        config, entry = _item(task)
        verdict, why = gym_check.score_answer(task, json.dumps(config), json.dumps(entry), answer)
        assert verdict is False and why.startswith("answer_evaluates_code"), (task, answer, why)
    close_sandboxes()


def test_gym_evaluating_scorers_list_matches_the_library_source():
    """Every reasoning-gym scorer whose source calls eval / parse_expr / sympify on what it scores is listed (and
    so guarded); the one that evals only its own gold answer (number_sorting) is the known exception."""
    from reasoning_gym.factory import DATASETS

    found = set()
    for task, (cls, _) in DATASETS.items():
        source = inspect.getsource(cls.score_answer) if "score_answer" in vars(cls) else ""
        if re.search(r"\beval\(|parse_expr\(|sympify\(|\bexec\(", source):
            found.add(task)
    assert found - {"number_sorting"} <= set(EVALUATING_SCORERS), found - set(EVALUATING_SCORERS)


def test_gym_scoring_refuses_without_isolation(monkeypatch):
    from cotforge.tasks.verify import sandbox

    close_sandboxes()
    # scorer sandboxes of other processes (an earlier test's pool workers) may run: none may be added by this one
    others = set(marked_processes("cotforge-scorer-"))
    monkeypatch.setenv("PATH", "/nonexistent")
    sandbox.isolation_problem.cache_clear()
    try:
        config, entry = _item("chain_sum")
        (score, why), = score_in_sandbox("chain_sum", json.dumps(config), json.dumps(entry), (str(entry["answer"]),))
        assert score is None and why.startswith("no_isolation") and "bwrap not installed" in why
    finally:
        sandbox.isolation_problem.cache_clear()
        close_sandboxes()
    assert set(marked_processes("cotforge-scorer-")) <= others


def _settled_count(run_id: str) -> int:
    """How many processes a sandbox holds once it is idle (the reply comes before the clean-up and the next fork)."""
    import time

    seen: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (len(seen) < 5 or len(set(seen[-5:])) > 1):  # the same for 0.5 s
        seen.append(len(marked_processes(run_id)))
        time.sleep(0.1)
    return seen[-1]


def test_gym_sandbox_scoring_two_configs_of_a_task_by_turns_keeps_one_standby_child():
    """The child for the next answer is forked ahead (tasks/verify/scorer_zygote.py); a request for a scorer it was
    forked without (another config of the task) drops it and forks anew: every verdict is the in-process score, and
    the sandbox holds the same processes after each (the warm scorer and one waiting child, nothing left over)."""
    from cotforge.tasks.verify import gym_sandbox

    _require_isolation()
    close_sandboxes()
    items = [_item("chain_sum", seed) for seed in (1, 2)]
    items += [(config, gym.entry_json(gym.make_entry("chain_sum", config, 5)))
              for config in [gym.effective_config("chain_sum", {"min_terms": 4, "max_terms": 5}, None)]]
    counts = []
    try:
        for config, entry in items * 2 + items[::-1]:
            for answer in (str(entry["answer"]), "not a number", str(int(entry["answer"]) + 1)):
                (score, why), = score_in_sandbox("chain_sum", json.dumps(config), json.dumps(entry), (answer,))
                assert why is None and score == _in_process("chain_sum", config, entry, answer), (config, answer)
            box, = gym_sandbox._SANDBOXES.values()
            counts.append(_settled_count(box.run_id))
    finally:
        close_sandboxes()
    assert set(counts) == {3}, counts  # bwrap, the warm scorer and the one waiting child, each time
