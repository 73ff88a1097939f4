"""The LLM judge: a generative verifier (in the spirit of General-Reasoner) behind any `Generator` backend.

The judge sees the question, the reference answer when one is known, the candidate's full rationale and the recipe's
rubric, and must end with `SCORE: <0-10>` and `VERDICT: CORRECT|INCORRECT`. Its whole output is kept as the
rationale; a judgement that cannot be parsed is a `None` verdict with that reason, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cotforge.schemas.config_verify import JudgeConfig
from cotforge.schemas.records import stable_id
from cotforge.tasks.generate.base import GenerationRequest, Generator, SamplingParams

JUDGE_VERSION = "1"

# A verdict followed by "or ..." is the prompt's template echoed back, not a decision.
_VERDICT = re.compile(r"verdict\s*[:=]?\s*\**\s*(correct|incorrect|right|wrong|yes|no|true|false)\b"
                      r"(?!\s*(?:or|/|\|)\s*\w)", re.I)
_SCORE = re.compile(r"score\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*(10|100|1)\b)?", re.I)
_POSITIVE = {"correct", "right", "yes", "true"}


@dataclass(frozen=True)
class Judgement:
    verdict: bool | None
    reason: str
    score: float | None  # 0..1
    rationale: str


def judge_messages(question: str, candidate: str, gold: str | None, rubric: str) -> tuple[dict[str, str], ...]:
    """The chat a judge model answers."""
    reference = f"Reference answer: {gold}\n" if gold is not None else "No reference answer is known.\n"
    return (
        {"role": "system", "content": "You are a strict grader of solutions. " + rubric},
        {"role": "user", "content": (
            f"Question:\n{question}\n\n{reference}\nCandidate solution:\n{candidate}\n\n"
            "Explain briefly, then end with two lines exactly like:\nSCORE: <0-10>\nVERDICT: CORRECT or INCORRECT")},
    )


def parse_judgement(text: str, pass_score: float = 0.5) -> tuple[bool | None, str, float | None]:
    """(verdict, reason, score in 0..1) from a judge's output; the last VERDICT/SCORE lines count."""
    verdicts = _VERDICT.findall(text)
    scores = _SCORE.findall(text)
    score = None
    if scores:
        value, scale = scores[-1]
        denominator = float(scale) if scale else 10.0
        if 0.0 <= float(value) <= denominator:
            score = float(value) / denominator
    if verdicts:
        verdict = verdicts[-1].lower() in _POSITIVE
        return verdict, "judge_correct" if verdict else "judge_incorrect", score
    if score is not None:
        verdict = score >= pass_score
        return verdict, "judge_score_pass" if verdict else "judge_score_fail", score
    return None, "judge_unparseable", None


def judge_samples(generator: Generator, rows: list[dict], config: JudgeConfig, seed: int = 0) -> list[Judgement]:
    """One Judgement per row (keys: sample_id, question, text, gold_answer); backend failures become None verdicts."""
    if not rows:
        return []
    s = config.generation.sampling
    params = SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=tuple(s.stop))
    requests = [GenerationRequest(request_id=r["sample_id"],
                                  messages=judge_messages(r["question"], r["text"], r["gold_answer"], config.rubric),
                                  n=1, seed=int(stable_id(str(seed), r["sample_id"], length=8), 16), params=params,
                                  assistant_prefix=config.assistant_prefix)
                for r in rows]
    try:
        completions = generator.generate(requests)
    except Exception as error:  # the judge backend failing costs these verdicts, never the build
        return [Judgement(None, f"judge_error:{type(error).__name__}", None, "") for _ in rows]
    by_request = {c.request_id: c for c in completions}
    out = []
    for r in rows:
        completion = by_request.get(r["sample_id"])
        if completion is None or completion.error is not None:
            out.append(Judgement(None, "judge_error", None, completion.error if completion else "no completion"))
            continue
        text = config.assistant_prefix + completion.text
        verdict, reason, score = parse_judgement(text, config.pass_score)
        out.append(Judgement(verdict, reason, score, text))
    return out
