"""The `reasoning_gym` verifier: the answer contract extracts, a reasoning-gym task's own scorer compares.

Which answer is scored: the contract's one final answer (tasks/verify/contract.py: after the reasoning, stated once,
last, in an accepted form such as `<answer>` tags); a text that breaks the contract is `false` with the contract's
reason and no scorer sees it. The scorer's semantics decide, and only a full score verifies:

- an answer offering alternatives ("110 or 111") where the gold offers none: `false`, `alternative_in_answer`;
- score 1.0: `true`; a partial score (`0 < s < 1`, e.g. a list half sorted): `false`, `partial_score=<s>`; a zero:
  `false`, `score=0.0`; a score outside 0..1 (a scorer's float sum that overshoots on a wrong answer): `null`;
- a scorer that raises or returns no number: `null`.

Scoring runs in the verifier pool (a scorer may hang), and the scorer itself only inside the sandbox
(tasks/verify/gym_sandbox.py: a warm scorer forks a child per answer), since eight scorers `eval` the answer.
`rescore` re-scores a published row's text later; it
regenerates the item from (task, config, seed) and refuses a row whose stored entry differs (an edited row, or a
reasoning-gym version that makes other items), since scorers read the entry (one even `eval`s its answer).
`gym_reward` is the same rule as a TRL reward function over the `rlvr` view's `verifier_spec` column.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

from cotforge.tasks.questions.gym import entry_json, gym_version, make_entry
from cotforge.tasks.verify.contract import FORMS, REASONING_TAGS, read_answer, text_alternative
from cotforge.tasks.verify.gym_sandbox import score_in_sandbox
from cotforge.tasks.verify.rules import Result, VerifyContext, VerifyItem, register_verifier

VERIFIER_VERSION = f"3+reasoning-gym=={gym_version()}"  # 3: the answer contract extracts; scored in the sandbox
_IMPORT_HEADROOM_S = 15.0  # a fresh worker imports reasoning-gym (about 2 s) inside its first item's deadline


def stated_answer(text: str, forms: tuple[str, ...] = FORMS,
                  reasoning_tags: tuple[str, ...] = REASONING_TAGS) -> tuple[str | None, str]:
    """(the contract's final answer as written, its form) or (None, why the contract broke)."""
    return read_answer(text, "text", forms, reasoning_tags)


def score_answer(task: str, config_json: str, entry: str, answer: str) -> Result:
    """The cascade's verdict from the task's score of the contract's one final answer."""
    # Scorers may eval the answer: it is scored by a child of the warm scorer in the sandbox.
    (score, why), = score_in_sandbox(task, config_json, entry, (answer,))
    if why is not None:  # code where an evaluating scorer reads an answer: false; a scorer that raised on a
        return (False if why.startswith("answer_") else None), why  # strange answer or could not run: undecided
    if isinstance(score, bool) or not isinstance(score, (int, float)) or math.isnan(score):
        return None, f"scorer_returned:{score!r}"[:80]
    if not 0.0 <= score <= 1.0:  # e.g. spell_backward sums 1/n per letter: 1.0000000000000002 for junk appended
        return None, f"score_out_of_range={score!r}"
    if score == 1.0:  # only the full score verifies
        return True, "score=1.0"
    return False, f"partial_score={score:g}" if score > 0 else f"score={score:g}"


def _spec(item_metadata: str) -> dict | None:
    try:
        return json.loads(item_metadata or "{}").get("reasoning_gym")
    except (ValueError, AttributeError):
        return None


@register_verifier("reasoning_gym", VERIFIER_VERSION)
def verify_reasoning_gym(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """Score the contract's final answer with the question's reasoning-gym scorer (in the pool; see the module)."""
    out: list[Result | None] = []
    todo: list[tuple[int, tuple]] = []
    for item in items:
        spec = _spec(item.metadata_json)
        if item.method == "generation_error":
            out.append((None, "generation_error"))
            continue
        if spec is None:
            out.append((None, "no_reasoning_gym_entry"))
            continue
        answer, form = stated_answer(item.text, tuple(ctx.config.contract.forms),
                                     tuple(ctx.config.contract.reasoning_tags))
        if answer is None:
            out.append((False, form))
            continue
        if text_alternative(answer, spec["entry"].get("answer")):
            out.append((False, "alternative_in_answer"))
            continue
        out.append(None)
        todo.append((len(out) - 1, (spec["task"], json.dumps(spec["config"], sort_keys=True),
                                    json.dumps(spec["entry"], sort_keys=True), answer)))
    distinct = list(dict.fromkeys(args for _, args in todo))  # samples of a question often state the same answers
    results = dict(zip(distinct, ctx.pool.run([("cotforge.tasks.verify.gym_check:score_answer", args)
                                               for args in distinct], ctx.config.timeout_s + _IMPORT_HEADROOM_S)))
    for i, args in todo:
        out[i] = results[args]
    return out  # type: ignore[return-value]


@lru_cache(maxsize=4096)
def _entry_regenerates(task: str, config_json: str, seed: int, entry_json_: str) -> bool:
    """Whether (task, config, seed) makes the stored entry again (cached: a reward function asks once per step)."""
    return json.dumps(entry_json(make_entry(task, json.loads(config_json), seed)), sort_keys=True) == entry_json_


def rescore(spec: str | dict, text: str, check_entry: bool = True) -> Result:
    """Re-score a rationale against a published row's reasoning-gym entry (`verifier_spec`, or a question's
    `metadata_json`), from this process (its scorer sandbox scores). With `check_entry`, the item is regenerated
    from (task, config, seed) and must equal the stored entry: `(None, "entry_mismatch")` otherwise, nothing
    scored."""
    data = json.loads(spec) if isinstance(spec, str) else spec
    data = data.get("reasoning_gym", data)
    if check_entry and not _entry_regenerates(data["task"], json.dumps(data["config"], sort_keys=True), data["seed"],
                                              json.dumps(data["entry"], sort_keys=True)):
        return None, f"entry_mismatch:made_with_reasoning-gym=={data.get('version')},installed=={gym_version()}"
    answer, form = stated_answer(text)
    if answer is None:
        return False, form
    if text_alternative(answer, data["entry"].get("answer")):
        return False, "alternative_in_answer"
    return score_answer(data["task"], json.dumps(data["config"], sort_keys=True),
                        json.dumps(data["entry"], sort_keys=True), answer)


def rescore_row(row: dict, check_entry: bool = True) -> list[Result]:
    """Re-score every generation of a published `generations` row (its `verifier_spec` and `generations`)."""
    if not row.get("verifier_spec"):
        raise ValueError("the row has no `verifier_spec`: not a reasoning-gym question")
    return [rescore(row["verifier_spec"], text, check_entry) for text in row["generations"]]


def _completion_text(completion) -> str:
    """A TRL completion's text: a string (standard format) or its messages' contents (conversational)."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")


def gym_reward(completions: list, verifier_spec: list[str | None], **_: object) -> list[float | None]:
    """A TRL reward function (`GRPOTrainer(reward_funcs=gym_reward)`) for the `rlvr` view: 1.0 where the task's
    scorer fully accepts the completion's one stated final answer, 0.0 where it does not (partial scores, hedges,
    conflicting or missing answers, a tampered entry included), None for a row without a reasoning-gym entry (TRL
    leaves it to the other reward functions). The scorer runs in this process's own scorer sandbox (started on the
    first call), never in the trainer's interpreter; a scorer that hangs costs its wall limit and a 0.0."""
    rewards: list[float | None] = []
    for completion, spec in zip(completions, verifier_spec):
        if not spec:
            rewards.append(None)
            continue
        verdict, _reason = rescore(spec, _completion_text(completion))
        rewards.append(1.0 if verdict is True else 0.0)
    return rewards
