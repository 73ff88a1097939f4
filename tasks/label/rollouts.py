"""Rollouts from step prefixes, in rounds: each round asks every sample's plan (tasks/label/search.py) which prefixes
it still needs, sends them all in ONE `generate` call (the backend call a build's sampling uses), judges the
continuations with the verifier cascade and feeds the results back, until no plan needs more.

Per-step MC needs one round (two with a failed cheap check); binary search one round per halving (two when a probe's
first rollouts all miss). A binary-search prefix is keyed by its question and its text, so samples of one question
that share a prefix share its rollouts (measured once, reused by the others).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa

from cotforge.schemas.config_generation import GenerationConfig
from cotforge.schemas.config_verify import VerifyConfig
from cotforge.schemas.config_views import PrmViewConfig
from cotforge.schemas.records import stable_id
from cotforge.tasks.generate import GenerationRequest, Generator, SamplingParams
from cotforge.tasks.label.segment import SEGMENTERS
from cotforge.tasks.label.search import (Outcome, PrefixResult, per_step_outcome, per_step_probes, search_outcome,
                                         search_probes)
from cotforge.tasks.verify.cascade import verify_samples
from cotforge.tasks.verify.pool import VerifierPool

MAX_ROUNDS = 64  # a bound, never reached: bisection of max_steps prefixes needs 2 * log2(max_steps) + 2 rounds


@dataclass
class Pending:
    """One sample to label: its row, its raw steps, and the rollouts spent on it."""

    row: dict
    raw: list[str]
    verified: bool
    cheap_check: bool
    keys: list[str]  # the result key of each prefix 0..K-2
    rollouts: int = 0  # completions requested for this sample (errors included)
    requests: int = 0
    errors: int = 0  # of those, completions the backend failed to produce
    reused: int = 0  # completions measured for another sample's identical prefix, counted there
    outcome: Outcome | None = field(default=None)


def rollout_sampling(config: PrmViewConfig, generation: GenerationConfig) -> SamplingParams:
    s = generation.sampling
    return SamplingParams(
        temperature=s.temperature if config.rollout_temperature is None else config.rollout_temperature,
        top_p=s.top_p, max_tokens=config.rollout_max_tokens or s.max_tokens, stop=tuple(s.stop))


def rollout_seed(recipe_seed: int, sample_id: str, step: int) -> int:
    return int(stable_id(str(recipe_seed), sample_id, str(step), "rollout", length=8), 16) % (2**31 - 1)


def make_pending(row: dict, raw: list[str], config: PrmViewConfig, cheap_check: bool) -> Pending:
    """Per-step MC keys its prefixes by sample (no sharing: the baseline as Math-Shepherd runs it); binary search by
    question and prefix text (a prefix two samples share is rolled out once)."""
    if config.label_method == "binary_search":
        keys = [prefix_key(row["question_id"], raw, i) for i in range(len(raw) - 1)]
    else:
        keys = [f"{row['sample_id']}:{i}" for i in range(len(raw) - 1)]
    return Pending(row, raw, row["verdict"] is True, cheap_check, keys)


def _request(item: Pending, step: int, n: int, chunk: int, config: PrmViewConfig, generation: GenerationConfig,
             recipe_seed: int) -> GenerationRequest:
    row = item.row
    messages = ({"role": "system", "content": generation.system_prompt}, {"role": "user", "content": row["question"]})
    metadata = json.loads(row.get("metadata_json") or "{}")
    context = {"family": row.get("family"), "params": metadata.get("params"), "prefix_steps": step + 1,
               "prefix_error_at": row.get("first_error_step")}
    sample_id = row["sample_id"]
    base = sample_id if chunk == 0 else f"{sample_id}#{chunk}"
    request_id = f"{sample_id}:{step}" if chunk == 0 else f"{sample_id}:{step}:{chunk}"
    return GenerationRequest(request_id=request_id, messages=messages, n=n,
                             seed=rollout_seed(recipe_seed, base, step), params=rollout_sampling(config, generation),
                             assistant_prefix="\n".join(item.raw[:step + 1]) + "\n", context=context)


def prefix_key(question_id: str, raw: list[str], step: int) -> str:
    """A binary-search prefix's key: its question and its text (steps 0..step)."""
    return stable_id(question_id, "\n".join(raw[:step + 1]))


def add_witness(witnesses: dict[str, set[str]], question_id: str, text: str, witness: str,
                config: PrmViewConfig, after: int = 0) -> None:
    """Record that `text`, which reached the answer, passes through each of its own prefixes (from its step `after`
    on: a rollout is no new evidence for the prefix it was rolled out from, nor the shorter ones)."""
    raw = SEGMENTERS[config.segmentation](text)[1]
    for i in range(after, len(raw)):
        witnesses.setdefault(prefix_key(question_id, raw, i), set()).add(witness)


def _measured(item: Pending, results: dict[str, PrefixResult],
              witnesses: dict[str, set[str]]) -> list[PrefixResult | None]:
    """The results of the item's prefixes, `witnessed` by texts other than the sample itself."""
    out = []
    for key in item.keys:
        r, others = results.get(key), witnesses.get(key, set()) - {item.row["sample_id"]}
        out.append(r if not others else PrefixResult(r.successes, r.valid, r.errors, len(others)) if r
                   else PrefixResult(witnessed=len(others)))
    return out


def _probes(item: Pending, measured: list[PrefixResult | None], config: PrmViewConfig) -> list[tuple[int, int]]:
    if config.label_method == "binary_search":
        return search_probes(len(item.raw), item.verified, config.rollouts, measured, first_rollouts(config),
                             item.cheap_check)
    return per_step_probes(len(item.raw), item.verified, config.rollouts, measured, item.cheap_check)


def outcome(item: Pending, measured: list[PrefixResult | None], config: PrmViewConfig) -> Outcome:
    if config.label_method == "binary_search":
        return search_outcome(len(item.raw), item.verified, config.rollouts, measured, first_rollouts(config),
                              item.cheap_check)
    return per_step_outcome(len(item.raw), item.verified, config.rollouts, measured)


def first_rollouts(config: PrmViewConfig) -> int:
    """Rollouts a binary-search probe sends first (early stop: the rest of m only if none reached the answer)."""
    return config.first_rollouts or max(1, config.rollouts // 2)


def roll_out(items: list[Pending], generator: Generator, config: PrmViewConfig, generation: GenerationConfig,
             recipe_seed: int, verify: VerifyConfig, pool: VerifierPool | None,
             verified_texts: list[tuple[str, str, str]] = ()) -> int:
    """Run every item's plan to its end (sets `item.outcome` and its costs); returns the number of rounds (generate
    calls). Binary search takes `verified_texts` (question id, sample id, text of every verified sample) and its own
    successful rollouts as witnesses of the prefixes they pass through."""
    results: dict[str, PrefixResult] = {}
    witnesses: dict[str, set[str]] = {}
    reuse = config.label_method == "binary_search"
    for question_id, sample_id, text in verified_texts if reuse else ():
        add_witness(witnesses, question_id, text, sample_id, config)
    chunks: dict[str, int] = {}
    rounds = 0
    while rounds < MAX_ROUNDS:
        batch: dict[str, tuple[Pending, GenerationRequest]] = {}
        for item in items:
            for step, n in _probes(item, _measured(item, results, witnesses), config):
                key = item.keys[step]
                if key in batch:  # another sample needs the same prefix this round: measured once
                    continue
                chunk = chunks.get(key, 0)
                chunks[key] = chunk + 1
                batch[key] = (item, _request(item, step, n, chunk, config, generation, recipe_seed))
                item.rollouts += n
                item.requests += 1
        if not batch:
            break
        rounds += 1
        requests = [req for _, req in batch.values()]
        by_request: dict[str, list] = {}
        for c in generator.generate(requests):
            by_request.setdefault(c.request_id, []).append(c)
        texts, rows, keys, sources = [], [], [], []
        for key, (item, req) in batch.items():
            got = by_request.get(req.request_id, [])[:req.n]
            result = results.setdefault(key, PrefixResult())
            failed = req.n - sum(c.error is None for c in got)
            result.errors += failed
            item.errors += failed
            for c in got:
                if c.error is None:
                    texts.append(req.assistant_prefix + c.text)
                    rows.append(item.row)
                    keys.append(key)
                    sources.append(req.context["prefix_steps"])
        for key, ok, text, row, source in zip(keys, judge_rollouts(texts, rows, verify, pool), texts, rows, sources):
            results[key].valid += 1
            results[key].successes += ok
            if ok and reuse:
                add_witness(witnesses, row["question_id"], text, f"rollout:{key}", config, after=source)
    for item in items:
        item.outcome = outcome(item, _measured(item, results, witnesses), config)
        measured = sum(results[k].attempted for k, s in zip(item.keys, item.outcome.scores) if s is not None)
        item.reused = max(0, measured - item.rollouts)
    return rounds


def judge_rollouts(texts: list[str], rows: list[dict], verify: VerifyConfig, pool: VerifierPool | None) -> list[bool]:
    """Whether each rollout's full text (prefix + continuation) is judged correct by the same verifier cascade that
    judged the samples, against its question's gold answer (or the vote's pseudo-label)."""
    if not texts:
        return []
    ids = [f"rollout-{i}" for i in range(len(texts))]
    samples = pa.table({"sample_id": ids, "question_id": ids, "text": texts, "error": [None] * len(texts),
                        "finish_reason": ["stop"] * len(texts)}, schema=pa.schema([
                            ("sample_id", pa.string()), ("question_id", pa.string()), ("text", pa.string()),
                            ("error", pa.string()), ("finish_reason", pa.string())]))
    questions = pa.table({
        "question_id": ids, "text": [r["question"] or "" for r in rows],
        "gold_answer": [r.get("gold_answer") or r.get("pseudo_label") for r in rows],
        "verifier": [r.get("verifier") or "math" for r in rows],
        "answer_type": [r.get("answer_type") or "number" for r in rows], "tests": [r.get("tests") for r in rows]},
        schema=pa.schema([("question_id", pa.string()), ("text", pa.string()), ("gold_answer", pa.string()),
                          ("verifier", pa.string()), ("answer_type", pa.string()), ("tests", pa.string())]))
    verdicts = verify_samples(samples, questions, "", "", verify, pool)
    by_id = dict(zip(verdicts.column("sample_id").to_pylist(), verdicts.column("verdict").to_pylist()))
    return [by_id.get(i) is True for i in ids]
