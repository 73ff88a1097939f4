"""LLM-synthesised questions: written from topic prompts (as ScaleQuest does) or evolved from seed questions into
harder and easier variants, then checked before they may become questions.

The checks (in `synth_checks.py`), kept on every candidate row:
1. validity: rules first (a question was found, sensible length, no template left unfilled, one question, one
   proposed answer of the right type); where the rules cannot tell (no proposed answer, no question form), an LLM
   judge answers YES/NO; an unparseable judgement stays undecided;
2. solvability, by sampling: a solver model answers the question `samples` times; the question is solvable when at
   least `min_agreement` of the answers equal the proposed answer (or, without one, the majority answer), which then
   becomes the gold answer.

Synthesis costs model calls, so each source's candidates are cached as a shard (`synth` stage, keyed by the source's
config, the recipe seed and the code that writes and checks them): a re-run reads the shard and calls no model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Sequence

from prefect.logging import get_run_logger

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_generation import DEFAULT_SYSTEM_PROMPT
from cotforge.schemas.config_questions import SamplingConfig, SynthSourceConfig
from cotforge.schemas.records import Question, Record, normalize_text, question_id_for, stable_id
from cotforge.tasks.core.shards import ShardStore, shard_key
from cotforge.tasks.generate.base import GenerationRequest, Generator, SamplingParams
from cotforge.tasks.questions.seeds import RejectedQuestion
from cotforge.tasks.questions.synth_checks import (
    NUMBER_PATTERN,
    judge_request,
    parse_candidate,
    parse_judge,
    request_seed_of,
    rule_validity,
    solvability,
)
from cotforge.tasks.verify.extract import extract_answers, normalize_answer

WRITER_SYSTEM = "You write new, self-contained problems for students. Each problem has exactly one correct answer."
_EVOLVE = {
    "harder": "Rewrite the problem below so that it is harder: add one more reasoning step or one more condition. "
              "Keep it self-contained, with exactly one correct answer.",
    "easier": "Rewrite the problem below so that it is easier: remove a step or use smaller numbers. "
              "Keep it self-contained, with exactly one correct answer.",
}
_FORMAT = "Reply in exactly this form:\nQuestion: <the problem>\nAnswer: <the final answer only>"


class SynthCandidate(Record):
    """One synthesised candidate with every check's verdict (cached; rejected candidates are kept too)."""

    candidate_id: str
    source: str  # "synth:<name>"
    mode: str  # scratch / evolve
    prompt: str  # the topic, or the parent question's text
    direction: str | None  # evolve: harder / easier
    parent_question_id: str | None
    raw: str  # the writer's whole output
    generation_error: str | None
    text: str | None  # the parsed question
    proposed_answer: str | None
    validity: bool | None
    validity_reason: str
    validity_by: str  # "rules" or "judge"
    judge_output: str | None
    solvable: bool | None
    solvability_reason: str
    solve_answers: list[str | None]
    agreement: float | None
    gold_answer: str | None
    accepted: bool
    reject_reason: str | None
    writer_model: str


@dataclass(frozen=True)
class Generators:
    """The models synthesis uses: the writer, the validity judge and the solver (often one and the same)."""

    writer: Generator
    judge: Generator
    solver: Generator


def _params(s: SamplingConfig) -> SamplingParams:
    return SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=tuple(s.stop))


def _kind_words(answer_type: str) -> str:
    return "math word problem whose answer is a single number" if answer_type == "number" else \
        "reasoning problem whose answer is a short phrase"


def writer_requests(source: SynthSourceConfig, parents: Sequence[Question], seed: int) -> list[GenerationRequest]:
    """Scratch: one request per topic; evolve: one per parent question and direction; `candidates_per_prompt` each."""
    params = _params(source.sampling)
    requests = []
    if source.mode == "scratch":
        for i, topic in enumerate(source.topics):
            user = f"Write one new {_kind_words(source.answer_type)} about {topic}.\n{_FORMAT}"
            requests.append(GenerationRequest(
                request_id=f"scratch:{i}", messages=({"role": "system", "content": WRITER_SYSTEM},
                                                     {"role": "user", "content": user}),
                n=source.candidates_per_prompt, seed=request_seed_of(source.name, seed, "scratch", i), params=params,
                context={"prompt": topic}))
    else:
        for i, parent in enumerate(parents):
            for direction in source.directions:
                user = f"{_EVOLVE[direction]}\n\nProblem: {parent.text}\n\n{_FORMAT}"
                requests.append(GenerationRequest(
                    request_id=f"evolve:{i}:{direction}", messages=({"role": "system", "content": WRITER_SYSTEM},
                                                                    {"role": "user", "content": user}),
                    n=source.candidates_per_prompt, seed=request_seed_of(source.name, seed, direction, i),
                    params=params,
                    context={"prompt": parent.text, "direction": direction, "parent": parent.question_id}))
    return requests


def synthesize_candidates(source: SynthSourceConfig, parents: Sequence[Question], seed: int,
                          generators: Generators) -> list[SynthCandidate]:
    """Write candidates, check validity (rules, then the judge) and solvability; every candidate is returned."""
    tag = f"synth:{source.name}"
    requests = writer_requests(source, parents, seed)
    by_id = {r.request_id: r for r in requests}
    written = generators.writer.generate(requests)
    answer_type = source.answer_type
    rows: list[dict] = []
    for c in written:
        request = by_id[c.request_id]
        question, answer = parse_candidate(c.text) if not c.error else (None, None)
        proposed = normalize_answer(answer, answer_type) if answer else None
        if answer_type == "number" and answer:
            numbers = NUMBER_PATTERN.findall(answer.replace("$", ""))
            proposed = normalize_answer(numbers[0], "number") if len(set(numbers)) == 1 else proposed
        verdict, reason = (False, "generation_error") if c.error else rule_validity(question, answer, answer_type,
                                                                                     source.validity)
        rows.append({"request": request, "completion": c, "question": question, "answer": answer,
                     "proposed": proposed, "validity": verdict, "validity_reason": reason, "validity_by": "rules",
                     "judge_output": None})

    undecided = [r for r in rows if r["validity"] is None and source.validity.judge]
    if undecided:
        judged = generators.judge.generate([judge_request(r["question"], r["answer"], i, seed)
                                            for i, r in enumerate(undecided)])
        for r, j in zip(undecided, judged):
            r["judge_output"] = j.text if not j.error else f"error: {j.error}"
            r["validity"], r["validity_reason"] = (None, "judge_error") if j.error else parse_judge(j.text)
            r["validity_by"] = "judge"

    to_solve = [r for r in rows if r["validity"] or (r["validity"] is None and source.validity.accept_undecided)]
    s = source.solvability
    solve_requests = [GenerationRequest(
        request_id=f"solve:{i}", messages=({"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                                           {"role": "user", "content": r["question"]}),
        n=s.samples, seed=request_seed_of("solve", seed, source.name, i), params=_params(s.sampling))
        for i, r in enumerate(to_solve)]
    solved = generators.solver.generate(solve_requests) if solve_requests else []
    texts: dict[str, list[str | None]] = {}
    for c in solved:
        texts.setdefault(c.request_id, []).append(None if c.error else c.text)
    for i, r in enumerate(to_solve):
        outputs = texts.get(f"solve:{i}", [])
        answers = [e.answer for e in extract_answers(outputs, [answer_type] * len(outputs))]
        r["solve_answers"] = answers
        r["solvable"], r["solvability_reason"], r["agreement"], r["gold"] = solvability(answers, r["proposed"],
                                                                                       s.min_agreement)

    candidates = []
    for r in rows:
        request, c = r["request"], r["completion"]
        solvable = r.get("solvable")
        valid_enough = r["validity"] or (r["validity"] is None and source.validity.accept_undecided)
        accepted = bool(valid_enough and solvable)
        reject = None if accepted else (
            f"invalid:{r['validity_reason']}" if not valid_enough else
            f"unsolvable:{r.get('solvability_reason', 'not_checked')}")
        candidates.append(SynthCandidate(
            candidate_id=stable_id(tag, request.request_id, str(c.index)), source=tag, mode=source.mode,
            prompt=request.context.get("prompt", ""), direction=request.context.get("direction"),
            parent_question_id=request.context.get("parent"), raw=c.text, generation_error=c.error,
            text=r["question"], proposed_answer=r["proposed"], validity=r["validity"],
            validity_reason=r["validity_reason"], validity_by=r["validity_by"], judge_output=r["judge_output"],
            solvable=solvable, solvability_reason=r.get("solvability_reason", "not_checked"),
            solve_answers=r.get("solve_answers", []), agreement=r.get("agreement"), gold_answer=r.get("gold"),
            accepted=accepted, reject_reason=reject, writer_model=f"{generators.writer.backend}:"
                                                                  f"{generators.writer.model}"))
    return candidates


def candidates_to_questions(source: SynthSourceConfig, candidates: list[dict], count: int | None, recipe_hash: str,
                            build_id: str) -> tuple[list[Question], list[RejectedQuestion]]:
    """Accepted candidates become questions (verdicts in metadata_json); the others, and repeats of an accepted text,
    become rejected rows with their reason."""
    questions, rejected, seen = [], [], set()
    verifier = "math" if source.answer_type == "number" else "exact"
    for index, c in enumerate(candidates):
        reason = c["reject_reason"]
        if reason is None and normalize_text(c["text"]) in seen:
            reason = "duplicate_candidate"
        if reason is None and count is not None and len(questions) >= count:
            reason = "over_count"
        if reason is not None:
            rejected.append(RejectedQuestion(source=c["source"], row=index, reason=f"synth_{reason}", text=c["text"],
                                             row_json=json.dumps({"raw": c["raw"]})[:500], recipe_hash=recipe_hash,
                                             build_id=build_id))
            continue
        seen.add(normalize_text(c["text"]))
        checks = {k: c[k] for k in ("candidate_id", "mode", "direction", "parent_question_id", "validity",
                                    "validity_reason", "validity_by", "judge_output", "solvable",
                                    "solvability_reason", "solve_answers", "agreement", "proposed_answer",
                                    "writer_model")}
        questions.append(Question(
            question_id=question_id_for(c["text"]), source=c["source"], text=c["text"], gold_answer=c["gold_answer"],
            answer_type=source.answer_type, verifier=verifier,
            metadata_json=json.dumps({"synth": checks}, sort_keys=True, default=str), recipe_hash=recipe_hash,
            build_id=build_id))
    return questions, rejected


def make_generators(source: SynthSourceConfig) -> Generators:
    """The writer from the source's generation section; judge and solver default to the same model."""
    from cotforge.tasks.generate import make_generator

    writer = make_generator(source.generation)
    judge = make_generator(source.validity.judge_generation) if source.validity.judge_generation else writer
    solver = make_generator(source.solvability.solver_generation) if source.solvability.solver_generation else writer
    return Generators(writer, judge, solver)


def close_generators(generators: Generators) -> None:
    for g in {id(g): g for g in (generators.writer, generators.judge, generators.solver)}.values():
        g.close()


def synth_cache_key(source: SynthSourceConfig, seed: int, parents: Sequence[Question]) -> str:
    """The candidates depend on the source config (models included), the seed, (evolve) the parents' ids and the
    code of this module and what it runs (prompts, checks: the key's code hash), nothing else."""
    config = stable_id(source.model_dump_json(), str(seed), *[p.question_id for p in parents])
    return shard_key("synth", config)


def synth_candidates_cached(store: ShardStore | None, source: SynthSourceConfig, seed: int,
                            parents: Sequence[Question],
                            open_generators: Callable[[SynthSourceConfig], Generators] = make_generators,
                            metadata: dict[str, str] | None = None) -> list[dict]:
    """The source's candidates from the `synth` shard when it exists, else synthesised (model calls) and cached."""
    key = synth_cache_key(source, seed, parents)
    if store is not None and (done := store.done("synth", key)) is not None:
        return store.read(done).to_pylist()
    generators = open_generators(source)
    try:
        candidates = synthesize_candidates(source, parents, seed, generators)
    finally:
        close_generators(generators)
    table = to_table(candidates, SynthCandidate)
    if store is not None:
        store.write("synth", key, table, metadata)
    _log(f"synth:{source.name}: {sum(c.accepted for c in candidates)} of {len(candidates)} candidates accepted")
    return table.to_pylist()


def _log(message: str) -> None:
    try:
        get_run_logger().info(message)
    except Exception:  # outside a Prefect run there is no run logger; stay quiet
        pass
