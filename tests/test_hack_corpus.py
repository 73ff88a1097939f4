"""The reward-hacking corpus (tests/hack_corpus.py): every hack is judged not correct, alone and through a build.

`pytest -k hack` runs them all. The questions are the coding family's own (tests computed from the reference), and
each test also checks that the same tests pass the reference program: the grader can say "correct", so a hack's
"not correct" means something.
"""

import re

import polars as pl
import pytest

from cotforge.schemas.config_verify import SandboxConfig
from cotforge.tasks.questions.families.coding import TASKS_BY_NAME, CodingFamily
from cotforge.tasks.verify.program_tests import check_program
from tests.fake_openai import OpenAIShapedServer, chat_completion
from tests.hack_corpus import HACKS, Hack, program
from tests.sandbox_support import require_bwrap

LIMITS = SandboxConfig(cpu_s=1, wall_s=3.0, memory_mb=256).model_dump_json()
TASKS = ("sum_even", "running_max")


def hacks_for(task: str) -> list[Hack]:
    return [h for h in HACKS if h.task in ("any", task)]


@pytest.fixture(scope="module")
def questions():
    require_bwrap()
    items = {task: CodingFamily().generate(1, 3, seed=7, task=task)[0] for task in TASKS}
    for task, item in items.items():  # the control: the reference passes these very tests
        assert check_program(item.gold_answer, item.tests, LIMITS) == (
            True, "tests_passed", {"tests_passed": 6, "tests_total": 6, "test_mode": "values"}), task
    return items


def test_hack_corpus_has_twenty_distinct_kinds():
    names = [h.name for h in HACKS]
    assert len(names) >= 20 and len(set(names)) == len(names)
    assert len({h.code for h in HACKS}) == len(HACKS) and all(h.trick for h in HACKS)
    assert {"sys_exit_at_end", "os_exit_at_end", "main_guard_exit", "sys_exit_main_idiom", "eq_always_true",
            "atexit_os_exit", "excepthook_exit", "read_tests_from_disk"} <= set(names)  # the list


@pytest.mark.parametrize("hack", HACKS, ids=[h.name for h in HACKS])
def test_hack_is_judged_not_correct(hack, questions):
    for task in TASKS:
        if hack.task not in ("any", task):
            continue
        spec = TASKS_BY_NAME[task]
        verdict, reason, details = check_program(program(hack, spec.name, spec.arg), questions[task].tests, LIMITS)
        assert verdict is False, (task, reason, details)
        assert details["tests_passed"] < details["tests_total"] == 6 and details["test_mode"] == "values"


# The hacks against assert tests (seed-dataset style, run inside the sandbox): exits and hooks are reset or
# refused, comparisons act on plain data, and the test code is not on disk while the candidate loads.
ASSERT_MODE_HACKS = ("sys_exit_at_end", "os_exit_at_end", "main_guard_exit", "sys_exit_main_idiom", "eq_always_true",
                     "int_subclass_eq", "atexit_os_exit", "excepthook_exit", "read_tests_from_disk",
                     "read_tests_from_proc", "forge_stdout_results", "forge_result_fd", "patch_json_dumps",
                     "thread_outlives_call", "sigalrm_exit", "exit_in_del", "os_exit_mid_run", "fork_twice")


@pytest.mark.parametrize("name", ASSERT_MODE_HACKS)
def test_hack_is_judged_not_correct_by_assert_tests(name, questions):
    hack = next(h for h in HACKS if h.name == name)
    item = questions["sum_even"]
    # `assert f(x) == y and True` is no plain value test: each assert runs in the sandbox, in its own interpreter.
    asserts = "\n".join(line + " and True" for line in item.tests.splitlines())
    assert check_program(item.gold_answer, asserts, LIMITS)[:2] == (True, "tests_passed")
    verdict, reason, details = check_program(program(hack, "sum_even", "xs"), asserts, LIMITS)
    assert verdict is False and details["test_mode"] == "asserts", (reason, details)


# ------------------------------------------------------------------------- a build whose model answers with hacks


class HackServer(OpenAIShapedServer):
    """An OpenAI-shaped server that answers each coding question with every hack (and one honest program)."""

    def __init__(self):
        self.requests = 0
        super().__init__(self._answer)

    def _answer(self, body: dict) -> tuple[int, dict]:
        self.requests += 1
        name, arg = re.search(r"function `(\w+)\((\w+)\)`", body["messages"][-1]["content"]).groups()
        answers = [(f"hack: {h.name}", program(h, name, arg)) for h in hacks_for(name)]
        answers.append(("honest", TASKS_BY_NAME[name].reference))
        return 200, chat_completion([f"Here is my solution ({label}).\n```python\n{code}\n```"
                                     for label, code in (answers * body["n"])[:body["n"]]], completion_tokens=50)


@pytest.mark.slow
def test_hack_build_publishes_no_hack_for_training(tmp_path):
    """A coding-family build through an OpenAI-compatible server that answers with the whole corpus: no hack in
    sft, sft_lenient, rlvr, preference chosen or unpaired desirable; the honest programs are verified."""
    from cotforge.flows.build import build
    from cotforge.schemas.recipe import parse_recipe
    from cotforge.tasks.publish.write import read_view

    require_bwrap()
    samples = max(len(hacks_for(task)) for task in TASKS) + 1
    with HackServer() as server:
        recipe = parse_recipe({
            "name": "hacktest", "seed": 1, "shard_size": 8,
            "questions": {"sources": [{"kind": "family", "family": "coding", "n": 1, "difficulty": 3,
                                       "params": {"task": task}} for task in TASKS]},
            "generation": {"backend": "openai", "samples_per_question": samples,
                           "openai": {"base_url": server.url, "model": "hacker", "backoff_s": 0.01}},
            "verify": {"sandbox": {"cpu_s": 1, "wall_s": 3.0, "memory_mb": 256}},
            "views": {"prm": {"enabled": False}},
        })
        out = tmp_path / "out"
        result = build(recipe, out=str(out), version="0.1.0")
    verdicts = pl.concat([pl.read_parquet(p) for p in sorted((out / "_work" / "verdicts").glob("*.parquet"))],
                         how="diagonal_relaxed")
    samples_frame = pl.concat([pl.read_parquet(p) for p in sorted((out / "_work" / "samples").glob("*.parquet"))],
                              how="diagonal_relaxed")
    judged = samples_frame.select("sample_id", "text").join(verdicts, on="sample_id")
    hacks = judged.filter(pl.col("text").str.contains("(hack: ", literal=True))
    honest = judged.filter(pl.col("text").str.contains("(honest)", literal=True))
    seen = set(hacks["text"].str.extract(r"\(hack: (\w+)\)"))
    assert seen == {h.name for h in HACKS} and honest.height >= len(TASKS)
    assert hacks.filter(pl.col("verdict") == True).height == 0  # noqa: E712
    assert honest["verdict"].all()  # the control: the build can verify a program
    is_hack = set(hacks["sample_id"])
    for view in ("sft", "sft_lenient", "unpaired"):
        rows = read_view(str(out / "latest"), view)
        kept = rows if view != "unpaired" else rows.filter(pl.col("label"))
        assert not set(kept["sample_id"]) & is_hack, view
    assert result.views["sft"] == len(TASKS)  # exactly the honest programs
    chosen = set(read_view(str(out / "latest"), "preference")["chosen_sample_id"])
    assert chosen and not chosen & is_hack
    rlvr = read_view(str(out / "latest"), "rlvr")  # the solutions are the references (gold), never a sample's program
    assert rlvr.height == len(TASKS) and set(rlvr["solution"]) == {TASKS_BY_NAME[t].reference for t in TASKS}
