"""The `reasoning_gym` verifier: a reasoning-gym task's own scorer, behind cotforge's answer rules.

Which answer is scored: the final answers a text states after its reasoning (`<answer>` tags, `\\boxed{}`, "The
answer is ..."), never a last line or a last number. The scorer's semantics decide, and only a full score verifies:

- score 1.0 for the final answer and for every other final answer the text states: `true`;
- a partial score (`0 < s < 1`, e.g. a list half sorted, or the gold buried in a longer answer): `false`,
  `partial_score=<s>`; a zero: `false`, `score=0.0`; a score outside 0..1 (a scorer's float sum that overshoots on a
  wrong answer): `null`;
- another stated final answer the scorer does not accept ("<answer>18</answer> ... The answer is 19"): `false`,
  `conflicting_final_answers`; a hedged final answer ("18, or maybe 19"): `false`, `hedged_answer`;
- an answer only inside `<think>`, or none stated: `false`; a scorer that raises or returns no number: `null`.

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
import re
from functools import lru_cache

from cotforge.tasks.questions.gym import entry_json, gym_version, make_entry
from cotforge.tasks.verify.gym_sandbox import score_in_sandbox
from cotforge.tasks.verify.math_answer import box_groups
from cotforge.tasks.verify.math_extract import answer_region, answer_tags, hedged_at
from cotforge.tasks.verify.rules import Result, VerifyContext, VerifyItem, register_verifier

VERIFIER_VERSION = f"2+reasoning-gym=={gym_version()}"  # 2: scored in the sandbox, code refused
_STATEMENT = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?[ \t]*", re.I)
_MARKUP = re.compile(r"</?answer>|\\boxed\{|\\fbox\{", re.I)
_ALTERNATIVES = re.compile(r"\b(?:or|and/or)\b", re.I)  # "18 or 19" inside one answer
_MAX_STATED = 20  # more distinct final answers than this is a spray, as the math verifier holds
_IMPORT_HEADROOM_S = 15.0  # a fresh worker imports reasoning-gym (about 2 s) inside its first item's deadline


def stated_answers(text: str, check_hedge: bool = True) -> tuple[list[str], str | None]:
    """(final answers the text states, last first, each once; why none counts). Only the part after a closed
    `</think>` may state one; a statement line holding a tag or box is counted by the tag or box. Without
    `check_hedge`, the final answer's own words are not read as a hedge, but a retraction or alternative around it
    still is."""
    region = answer_region(text)
    found: list[tuple[int, int, str]] = [(s, e, inner) for s, e, inner in answer_tags(region)]
    found += [(s, e, inner) for s, e, inner in box_groups(region)]
    for m in _STATEMENT.finditer(region):
        line_end = region.find("\n", m.end())
        line_end = len(region) if line_end < 0 else line_end
        rest = region[m.end():line_end]
        if not _MARKUP.search(rest):
            found.append((m.start(), line_end, rest.strip().strip("*$ ").rstrip(".").strip()))
    found = [f for f in found if f[2].strip()]
    if not found:
        inside = "</think>" in text.lower() and (answer_tags(text) or box_groups(text) or _STATEMENT.search(text))
        return [], "answer_inside_think" if inside else "no_stated_answer"
    found.sort(key=lambda f: f[1])
    start, end, _ = found[-1]
    if check_hedge:
        hedged = hedged_at(region, start, end) or _ALTERNATIVES.search(found[-1][2])
    else:  # the answer's own words are not read (its gold holds hedge words); what surrounds it still is
        hedged = hedged_at(region[:start] + "_" + region[end:], start, start + 1)
    if hedged:
        return [], "hedged_answer"
    answers = list(dict.fromkeys(f[2].strip() for f in reversed(found)))
    if len(answers) > _MAX_STATED:  # a spray of candidates: no scorer needs to read them all to say no
        return [], "conflicting_final_answers"
    return answers, None


def reads_as_hedge(gold) -> bool:
    """Whether a gold answer itself holds the words the hedge rule looks for (then the scorer judges the answer's
    words; the text around the answer is still read for hedges)."""
    return isinstance(gold, str) and bool(hedged_at(gold, 0, 0) or _ALTERNATIVES.search(gold))


def score_answers(task: str, config_json: str, entry: str, answers: tuple[str, ...]) -> Result:
    """The cascade's verdict from the task's scores of the stated answers (`answers[0]` is the final one)."""
    scores = []
    # Scorers may eval the answer: each answer is scored by a child of the warm scorer in the sandbox.
    for score, why in score_in_sandbox(task, config_json, entry, answers):
        if why is not None:  # code where an evaluating scorer reads an answer: false; a scorer that raised on a
            return (False if why.startswith("answer_") else None), why  # strange answer or could not run: undecided
        if isinstance(score, bool) or not isinstance(score, (int, float)) or math.isnan(score):
            return None, f"scorer_returned:{score!r}"[:80]
        if not 0.0 <= score <= 1.0:  # e.g. spell_backward sums 1/n per letter: 1.0000000000000002 for junk appended
            return None, f"score_out_of_range={score!r}"
        scores.append(float(score))
    final = scores[0]
    if final == 1.0 and all(s == 1.0 for s in scores[1:]):  # only the full score verifies
        return True, "score=1.0"
    if final == 1.0:
        return False, f"conflicting_final_answers:score={min(scores):g}"
    return False, f"partial_score={final:g}" if final > 0 else f"score={final:g}"


def _spec(item_metadata: str) -> dict | None:
    try:
        return json.loads(item_metadata or "{}").get("reasoning_gym")
    except (ValueError, AttributeError):
        return None


@register_verifier("reasoning_gym", VERIFIER_VERSION)
def verify_reasoning_gym(items: list[VerifyItem], ctx: VerifyContext) -> list[Result]:
    """Score the stated final answers with the question's reasoning-gym scorer (in the pool; see the module)."""
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
        gold = spec["entry"].get("answer")
        # A gold answer in words that read as a hedge ("either", "or", "maybe") is scored as written.
        answers, why = stated_answers(item.text, check_hedge=not reads_as_hedge(gold))
        if why is not None:
            out.append((False, why))
            continue
        out.append(None)
        todo.append((len(out) - 1, (spec["task"], json.dumps(spec["config"], sort_keys=True),
                                    json.dumps(spec["entry"], sort_keys=True), tuple(answers))))
    distinct = list(dict.fromkeys(args for _, args in todo))  # samples of a question often state the same answers
    results = dict(zip(distinct, ctx.pool.run([("cotforge.tasks.verify.gym_check:score_answers", args)
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
    answers, why = stated_answers(text, check_hedge=not reads_as_hedge(data["entry"].get("answer")))
    if why is not None:
        return False, why
    return score_answers(data["task"], json.dumps(data["config"], sort_keys=True),
                         json.dumps(data["entry"], sort_keys=True), tuple(answers))


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
