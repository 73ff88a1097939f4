"""Step labelling: segment rationales into steps and label each step by Monte-Carlo rollouts (Math-Shepherd).

For a rationale of K steps, the prefix ending at step i (i < K-1) is continued `m` times by the generator; step i's
soft score is the fraction of those continuations whose final answer the question's verifier accepts, and its hard
label is whether any does (a step from which the gold answer is still reachable is "not yet wrong"). The last step
ends the rationale, so its label is the sample's own verdict. All prefixes of a shard go to the backend in ONE
`generate` call, so an engine with a prefix cache shares the work of the common prefixes.

A hard label is a one-sided test: a correct prefix is labelled false only if all m rollouts fail, which happens with
probability (1 - p)^m for a per-rollout success rate p (p = 0.5, m = 4: 6%), while a wrong prefix is labelled true
only if a rollout recovers (rare when errors carry through, as they do for the simulated solver).

Optionally (`views.prm.judge.enabled`) an LLM judge is asked, for each step of a labelled sample, "is this step
correct given the previous ones?": one request per step, all steps of the shard in one batched call. Its yes/no per
step (None where the reply has neither, or the backend failed) and the share of judged steps where it agrees with the
hard label are kept on the row; the raw replies stay in the `step_labels` stage record for inspection.
"""

from __future__ import annotations

import json
import re

import polars as pl
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_generation import GenerationConfig
from cotforge.schemas.config_verify import VerifyConfig
from cotforge.schemas.config_views import PrmViewConfig
from cotforge.schemas.records import Record, stable_id
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.join import RecordRefs, read_joined
from cotforge.tasks.core.shards import ShardRef, shard_key
from cotforge.tasks.generate import GenerationRequest, Generator, SamplingParams
from cotforge.tasks.label.step_judge import judge_agreement, judge_steps
from cotforge.tasks.verify.cascade import verifier_versions, verify_samples
from cotforge.tasks.verify.pool import VerifierPool

_STEP_PREFIX = re.compile(r"^\s*(?:step\s*\d+\s*[:.)-]\s*)", re.I)


class StepLabel(Record):
    """The step labels of one sample (or why it has none): the record of the `step_labels` stage."""

    sample_id: str
    question_id: str
    status: str  # "labelled", "skipped"
    skip_reason: str | None  # "no_steps", "too_many_steps", "no_gold_answer", "no_verdict", "rollouts_failed"
    steps: list[str]
    segmentation: str
    labels: list[bool]
    step_scores: list[float]
    first_error_step: int | None
    label_method: str
    rollouts_per_step: int
    rollout_requests: int  # prefixes rolled out (one request of m completions each)
    rollout_errors: int  # completions the backend failed to produce (left out of the soft score's denominator)
    rollout_model: str
    judge_step_labels: list[bool | None] | None  # the LLM judge's yes/no per step; None: judge off or not labelled
    judge_agreement: float | None  # share of judged steps where the judge agrees with the hard label
    judge_model: str  # backend/model of the judge; "" without one
    judge_replies: list[str] | None  # the judge's raw reply per step (or the backend's error), for inspection
    recipe_hash: str
    build_id: str


def segment_lines(text: str) -> tuple[list[str], list[str]]:
    """(steps, raw lines): each non-empty line is a step; the step text drops a leading "Step i:" marker.

    The raw lines rebuild the exact prefix the model wrote, so a rollout continues the text it would have continued.
    """
    raw = [line for line in text.splitlines() if line.strip()]
    return [_STEP_PREFIX.sub("", line).strip() or line.strip() for line in raw], raw


SEGMENTERS = {"lines": segment_lines}


def pick_samples(joined: pl.DataFrame, config: PrmViewConfig) -> pl.DataFrame:
    """The usable, trainable samples to label (the prm view takes no other): per question up to
    `max_samples_per_question`, correct and wrong alternating.

    Alternating by verdict gives the labels both outcomes even when a question's samples are mostly one kind.
    """
    usable = joined.filter(pl.col("usable") & pl.col("trainable"))
    if usable.is_empty():
        return usable
    ranked = usable.sort("question_id", "sample_index").with_columns(
        pick_rank=pl.col("sample_index").rank("ordinal").over("question_id", pl.col("verdict").fill_null(False)) - 1,
    ).sort("question_id", "pick_rank", pl.col("verdict").fill_null(False), descending=[False, False, True])
    return (ranked.with_columns(pick_order=pl.int_range(pl.len()).over("question_id"))
            .filter(pl.col("pick_order") < config.max_samples_per_question).drop("pick_order", "pick_rank"))


def rollout_sampling(config: PrmViewConfig, generation: GenerationConfig) -> SamplingParams:
    s = generation.sampling
    return SamplingParams(
        temperature=s.temperature if config.rollout_temperature is None else config.rollout_temperature,
        top_p=s.top_p, max_tokens=config.rollout_max_tokens or s.max_tokens, stop=tuple(s.stop))


def rollout_seed(recipe_seed: int, sample_id: str, step: int) -> int:
    return int(stable_id(str(recipe_seed), sample_id, str(step), "rollout", length=8), 16) % (2**31 - 1)


def prefix_requests(row: dict, raw_lines: list[str], config: PrmViewConfig, generation: GenerationConfig,
                    recipe_seed: int) -> list[GenerationRequest]:
    """One request of m completions for each prefix ending at steps 0..K-2 (the last step is the sample itself)."""
    messages = ({"role": "system", "content": generation.system_prompt}, {"role": "user", "content": row["question"]})
    metadata = json.loads(row.get("metadata_json") or "{}")
    params = rollout_sampling(config, generation)
    requests = []
    for i in range(len(raw_lines) - 1):
        context = {"family": row.get("family"), "params": metadata.get("params"), "prefix_steps": i + 1,
                   "prefix_error_at": row.get("first_error_step")}
        requests.append(GenerationRequest(
            request_id=f"{row['sample_id']}:{i}", messages=messages, n=config.rollouts,
            seed=rollout_seed(recipe_seed, row["sample_id"], i), params=params,
            assistant_prefix="\n".join(raw_lines[:i + 1]) + "\n", context=context,
        ))
    return requests


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


def ground_truth_labels(n_steps: int, first_error_step: int | None, verified: bool | None) -> list[bool]:
    """Labels from a known first wrong step: true before it, false from it on; a wrong answer with no wrong step
    (format failure) puts the error on the last step."""
    labels = [first_error_step is None or i < first_error_step for i in range(n_steps)]
    if verified is not True and first_error_step is None and labels:
        labels[-1] = False
    return labels


def label_steps(joined: pl.DataFrame, generator: Generator | None, config: PrmViewConfig,
                generation: GenerationConfig, recipe_seed: int, recipe_hash: str, build_id: str,
                verify: VerifyConfig = VerifyConfig(), pool: VerifierPool | None = None,
                judge: Generator | None = None) -> pa.Table:
    """StepLabel rows for the picked samples of `joined` (one row per sample: labels, or the reason for none).

    With `config.judge.enabled` and a `judge` generator, every labelled sample's steps are also judged one by one.
    """
    segment = SEGMENTERS[config.segmentation]
    picked = pick_samples(joined, config).to_dicts()
    rows: list[dict] = []
    pending: list[tuple[dict, dict, list[str], list[GenerationRequest]]] = []
    for r in picked:
        steps, raw = segment(r["text"] or "")
        base = {"sample_id": r["sample_id"], "question_id": r["question_id"], "status": "skipped", "skip_reason": None,
                "steps": steps, "segmentation": config.segmentation, "labels": [], "step_scores": [],
                "first_error_step": None, "label_method": config.label_method, "rollouts_per_step": 0,
                "rollout_requests": 0, "rollout_errors": 0, "rollout_model": "", "judge_step_labels": None,
                "judge_agreement": None, "judge_model": "", "judge_replies": None, "recipe_hash": recipe_hash,
                "build_id": build_id}
        gold = r.get("gold_answer") or r.get("pseudo_label")
        reason = ("no_steps" if not steps else "too_many_steps" if len(steps) > config.max_steps
                  else "no_verdict" if r["verdict"] is None
                  else "no_gold_answer" if gold is None and config.label_method == "mc_rollout" else None)
        if reason:
            rows.append(base | {"skip_reason": reason})
        elif config.label_method == "simulated_ground_truth":
            if r["backend"] != "simulated":
                rows.append(base | {"skip_reason": "no_ground_truth"})
                continue
            labels = ground_truth_labels(len(steps), r["first_error_step"], r["verdict"])
            rows.append(base | _finish(labels, [float(x) for x in labels]))
        else:
            pending.append((r, base, raw, prefix_requests(r | {"gold": gold}, raw, config, generation, recipe_seed)))
    requests = [req for *_, reqs in pending for req in reqs]
    completions = generator.generate(requests) if requests else []  # one batched call for the whole shard
    by_request: dict[str, list] = {}
    for c in completions:
        by_request.setdefault(c.request_id, []).append(c)
    model = f"{generator.backend}/{generator.model}" if requests else ""
    texts, owners, where = [], [], []
    for r, _base, _raw, reqs in pending:
        for req in reqs:
            for c in by_request.get(req.request_id, []):
                if c.error is None:
                    texts.append(req.assistant_prefix + c.text)
                    owners.append(r)
                    where.append(req.request_id)
    successes: dict[str, list[bool]] = {}
    for request_id, ok in zip(where, judge_rollouts(texts, owners, verify, pool)):
        successes.setdefault(request_id, []).append(ok)
    for r, base, raw, reqs in pending:
        scores, errors = [], 0
        for req in reqs:
            got = successes.get(req.request_id, [])
            errors += config.rollouts - len(got)
            scores.append(sum(got) / len(got) if got else None)
        info = {"rollouts_per_step": config.rollouts, "rollout_requests": len(reqs), "rollout_errors": errors,
                "rollout_model": model}
        if any(s is None for s in scores):
            rows.append(base | info | {"skip_reason": "rollouts_failed"})
            continue
        scores.append(1.0 if r["verdict"] is True else 0.0)  # the last step: the sample's own verdict
        rows.append(base | info | _finish([s > 0 for s in scores], scores))
    if config.judge.enabled and judge is not None:
        question = {r["sample_id"]: r["question"] for r in picked}
        labelled = [row for row in rows if row["status"] == "labelled"]
        verdicts = judge_steps(judge, [({"sample_id": row["sample_id"], "question": question[row["sample_id"]]},
                                        row["steps"]) for row in labelled], config, recipe_seed)
        model = f"{judge.backend}/{judge.model}" if labelled else ""
        for row, (judged, replies) in zip(labelled, verdicts):
            row.update(judge_step_labels=judged, judge_agreement=judge_agreement(judged, row["labels"]),
                       judge_model=model, judge_replies=replies)
    return to_table(rows, StepLabel)


def _finish(labels: list[bool], scores: list[float]) -> dict:
    first = next((i for i, ok in enumerate(labels) if not ok), None)
    return {"status": "labelled", "labels": labels, "step_scores": scores, "first_error_step": first}


@task(name="label_steps", cache_policy=NO_CACHE)
def label_steps_shard(ctx: BuildContext, records: RecordRefs, generator: Generator | None, config: PrmViewConfig,
                      generation: GenerationConfig, verify: VerifyConfig, pool: VerifierPool | None = None,
                      judge: Generator | None = None) -> ShardRef:
    """Label the steps of one shard's samples (skipped when its output already exists).

    The output is keyed by this shard's input shards, the dedup flags of its own rows and the labelling config
    (which includes the rollout backend's and the judge's), so it is re-made exactly when one of them changes: dedup
    runs over all shards at once, and a change elsewhere (an edited seed row in another shard) must not re-run
    these rollouts.
    """
    config_hash = stable_id(config.model_dump_json(), generation.model_dump_json(), verifier_versions(verify),
                            str(ctx.seed))
    joined = read_joined(ctx.store, records)
    flags = joined.select("sample_id", "keep", "drop_reason", "sample_keep", "sample_drop_reason").rows()
    own = [r.key for part in (records.questions, records.samples, records.verdicts, records.votes) for r in part]
    key = shard_key("step_labels", config_hash, *own, stable_id(json.dumps(flags, default=str)))
    done = ctx.store.done("step_labels", key)
    if done is not None:
        return done
    table = label_steps(joined, generator, config, generation, ctx.seed, ctx.recipe_hash, ctx.build_id, verify,
                        pool, judge)
    return ctx.store.write("step_labels", key, table, ctx.metadata)
