"""The checks a synthesised candidate goes through: parsing the writer's reply, validity rules, the validity judge's
request and verdict, and solvability by sampling agreement.

Changing a check changes which candidates are accepted; the `synth` shard key covers this module's code, so cached
candidates are then regenerated without anyone bumping a number.
"""

from __future__ import annotations

import re
from collections import Counter

from cotforge.schemas.config_questions import ValidityConfig
from cotforge.schemas.records import stable_id
from cotforge.tasks.generate.base import GenerationRequest, SamplingParams

JUDGE_SYSTEM = "You check whether a problem is well formed. Reply with VERDICT: YES or VERDICT: NO."


def request_seed_of(*parts) -> int:
    """A request seed derived from stable ids, never from run order (synth.py seeds its writer and solver with it)."""
    return int(stable_id(*map(str, parts), length=8), 16) % (2**31 - 1)


_QUESTION = re.compile(r"question\s*:\s*(.*?)(?=\n\s*answer\s*:|\Z)", re.S | re.I)
_ANSWER = re.compile(r"answer\s*:\s*(.+)", re.I)


def parse_candidate(raw: str) -> tuple[str | None, str | None]:
    """(question, proposed answer) from `Question: ...\\nAnswer: ...`; a bare text counts as the question."""
    text = raw.replace("**", "").strip()  # small models like to bold the labels
    match = _QUESTION.search(text)
    question = match.group(1).strip() if match else None
    if question is None:
        before = re.split(r"\n\s*answer\s*:", text, maxsplit=1, flags=re.I)[0].strip()
        question = before or None
    answer_match = _ANSWER.search(text[match.end():] if match else text)
    answer = answer_match.group(1).strip().strip("*").strip() if answer_match else None
    if answer:
        answer = answer.splitlines()[0].strip()
    return (question or None), (answer or None)


_PLACEHOLDER = re.compile(r"<[^>]*>|(?<![A-Za-z}])\{[a-z_ ]+\}|\[(?:topic|insert|your|answer|number)[^\]]*\]"
                          r"|\bTODO\b|\.\.\.$", re.I)
_ASKS = re.compile(r"\?|\b(find|compute|calculate|determine|what|how|which|who|solve|evaluate|show)\b", re.I)
NUMBER_PATTERN = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def rule_validity(question: str | None, answer: str | None, answer_type: str,
                  config: ValidityConfig) -> tuple[bool | None, str]:
    """Rules that can tell a malformed question for sure (False), a clearly fine one (True), or neither (None)."""
    if not question:
        return False, "no_question_found"
    if len(question) < config.min_chars:
        return False, "too_short"
    if len(question) > config.max_chars:
        return False, "too_long"
    if _PLACEHOLDER.search(question):
        return False, "unfilled_placeholder"
    if question.count("?") > 2:
        return False, "several_questions"
    if answer is not None:
        if _PLACEHOLDER.search(answer):
            return False, "unfilled_placeholder_in_answer"
        if re.search(r"\b(or|either|depends)\b", answer, re.I):
            return False, "several_answers"
        if answer_type == "number":
            numbers = NUMBER_PATTERN.findall(answer.replace("$", ""))
            if not numbers:
                return False, "answer_not_a_number"
            if len(set(numbers)) > 1:
                return False, "several_answers"
    if answer is None:
        return None, "no_proposed_answer"
    if not _ASKS.search(question):
        return None, "not_clearly_a_question"
    return True, "well_formed"


_JUDGE_VERDICT = re.compile(r"verdict\s*[:=]?\s*\**\s*(yes|no)\b", re.I)


def judge_request(question: str, answer: str | None, index: int, seed: int) -> GenerationRequest:
    proposed = f"\nProposed answer: {answer}" if answer else ""
    user = (f"Problem: {question}{proposed}\n\nIs this a well-formed, self-contained problem with exactly one correct "
            "answer? Reply with VERDICT: YES or VERDICT: NO.")
    return GenerationRequest(request_id=f"judge:{index}", messages=({"role": "system", "content": JUDGE_SYSTEM},
                                                                    {"role": "user", "content": user}),
                             n=1, seed=request_seed_of("judge", seed, index), params=SamplingParams(temperature=0.0,
                                                                                          max_tokens=48))


def parse_judge(text: str) -> tuple[bool | None, str]:
    found = _JUDGE_VERDICT.findall(text or "")
    if not found:
        return None, "judge_unparseable"
    return found[-1].lower() == "yes", "judge_yes" if found[-1].lower() == "yes" else "judge_no"


def solvability(answers: list[str | None], proposed: str | None, min_agreement: float
                ) -> tuple[bool | None, str, float | None, str | None]:
    """(solvable, reason, agreement, gold) from the solver's normalised answers."""
    if not answers:
        return None, "no_samples", None, None
    given = [a for a in answers if a is not None]
    if not given:
        return False, "no_sample_answered", 0.0, proposed
    target = proposed if proposed is not None else Counter(given).most_common(1)[0][0]
    agreement = sum(1 for a in answers if a == target) / len(answers)
    ok = agreement >= min_agreement
    return ok, ("samples_agree" if ok else "samples_disagree"), agreement, target

