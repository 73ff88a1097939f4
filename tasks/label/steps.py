"""Step labelling: segment rationales into steps and label each step by Monte-Carlo rollouts from its prefix.

A prefix is "good" when some of its m rollouts reaches an answer the question's verifier accepts, "bad" when none
does; labels follow first-error semantics (true before the first bad prefix, false from it on: never a correct step
after the first wrong one). The last step ends the rationale, so its score is the sample's own verdict.
`label_method` picks where to roll out (tasks/label/search.py): `mc_rollout`, every prefix (Math-Shepherd, m * (K-1)
rollouts for K steps); `binary_search`, bisection for the first bad prefix (about m * log2(K)). Each round's prefixes
go to the backend in ONE `generate` call (tasks/label/rollouts.py), so a prefix cache shares the common prompt.

A hard label is a one-sided test: a correct prefix is labelled false only if all m rollouts fail, which happens with
probability (1 - p)^m for a per-rollout success rate p (p = 0.5, m = 4: 6%), while a wrong prefix is labelled true
only if a rollout recovers (rare when errors carry through, as they do for the simulated solver). A row whose signals
disagree (a prefix failed but the sample was verified, a longer prefix recovered, the deciding probe lost rollouts to
backend errors, the judge saw another first error) is flagged `uncertain` with its reasons rather than guessed.

Optionally (`views.prm.judge.enabled`) an LLM judge is asked, for each step of a labelled sample, "is this step
correct given the previous ones?": one request per step, all steps of the shard in one batched call. Its yes/no per
step, its first wrong step and whether that is the rollouts' first error are kept on the row (`judge.mode:
consensus` keeps only agreeing rows in the view); the raw replies stay in the `step_labels` stage record.
"""

from __future__ import annotations

import json

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
from cotforge.tasks.generate import Generator
from cotforge.tasks.label.consensus import consensus
from cotforge.tasks.label.rollouts import make_pending, roll_out
from cotforge.tasks.label.segment import SEGMENTERS
from cotforge.tasks.label.step_judge import judge_agreement, judge_steps
from cotforge.tasks.verify.cascade import verifier_versions
from cotforge.tasks.verify.pool import VerifierPool


class StepLabel(Record):
    """The step labels of one sample (or why it has none): the record of the `step_labels` stage."""

    sample_id: str
    question_id: str
    status: str  # "labelled", "skipped"
    skip_reason: str | None  # "no_steps", "too_many_steps", "no_gold_answer", "no_verdict", "rollouts_failed"
    steps: list[str]
    segmentation: str
    labels: list[bool]  # first-error semantics: true before `first_error_step`, false from it on
    step_scores: list[float | None]  # share of a prefix's rollouts that reached the answer; None: not rolled out
    first_error_step: int | None
    label_method: str
    rollout_rule: str  # "per_step", "binary_search", "cheap_check", "cheap_check_then_full", "ground_truth", ""
    label_status: str  # "confident", "uncertain"; "" when not labelled
    uncertain_reasons: list[str]  # "few_rollouts", "non_monotone", "verdict_disagrees", "judge_disagrees"
    rollouts_per_step: int
    rollout_requests: int  # requests sent for this sample (each of up to m completions)
    rollouts: int  # completions requested for this sample (failed ones included): its cost
    rollouts_reused: int  # completions of an identical prefix measured for another sample of the question
    mc_equivalent_rollouts: int  # what per-step MC at the same m would have spent: m * (steps - 1)
    rollout_errors: int  # completions the backend failed to produce (left out of the soft score's denominator)
    rollout_model: str
    judge_step_labels: list[bool | None] | None  # the LLM judge's yes/no per step; None: judge off or not labelled
    judge_agreement: float | None  # share of judged steps where the judge agrees with the hard label
    judge_first_error_step: int | None  # the first step the judge called wrong
    consensus: bool | None  # judge and rollouts agree on the first error; None: judge off or undecided
    consensus_reason: str | None  # "agree", "judge_disagrees (judge i, rollouts j)", "judge_undecided", "judge_off"
    judge_model: str  # backend/model of the judge; "" without one
    judge_replies: list[str] | None  # the judge's raw reply per step (or the backend's error), for inspection
    recipe_hash: str
    build_id: str


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


def ground_truth_labels(n_steps: int, first_error_step: int | None, verified: bool | None) -> list[bool]:
    """Labels from a known first wrong step: true before it, false from it on; a wrong answer with no wrong step
    (format failure) puts the error on the last step."""
    labels = [first_error_step is None or i < first_error_step for i in range(n_steps)]
    if verified is not True and first_error_step is None and labels:
        labels[-1] = False
    return labels


def _base(r: dict, steps: list[str], config: PrmViewConfig, recipe_hash: str, build_id: str) -> dict:
    return {"sample_id": r["sample_id"], "question_id": r["question_id"], "status": "skipped", "skip_reason": None,
            "steps": steps, "segmentation": config.segmentation, "labels": [], "step_scores": [],
            "first_error_step": None, "label_method": config.label_method, "rollout_rule": "", "label_status": "",
            "uncertain_reasons": [], "rollouts_per_step": 0, "rollout_requests": 0, "rollouts": 0,
            "rollouts_reused": 0, "mc_equivalent_rollouts": 0, "rollout_errors": 0, "rollout_model": "",
            "judge_step_labels": None, "judge_agreement": None, "judge_first_error_step": None, "consensus": None,
            "consensus_reason": None, "judge_model": "", "judge_replies": None, "recipe_hash": recipe_hash,
            "build_id": build_id}


def wants_cheap_check(r: dict, config: PrmViewConfig) -> bool:
    """The rule of `cheap_check_pass_rate`: a verified sample of a question at least that easy."""
    threshold = config.cheap_check_pass_rate
    return threshold is not None and r["verdict"] is True and (r.get("pass_rate") or 0.0) >= threshold


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
    pending = []
    for r in picked:
        steps, raw = segment(r["text"] or "")
        base = _base(r, steps, config, recipe_hash, build_id)
        gold = r.get("gold_answer") or r.get("pseudo_label")
        reason = ("no_steps" if not steps else "too_many_steps" if len(steps) > config.max_steps
                  else "no_verdict" if r["verdict"] is None
                  else "no_gold_answer" if gold is None and config.label_method != "simulated_ground_truth" else None)
        if reason:
            rows.append(base | {"skip_reason": reason})
        elif config.label_method == "simulated_ground_truth":
            if r["backend"] != "simulated":
                rows.append(base | {"skip_reason": "no_ground_truth"})
                continue
            labels = ground_truth_labels(len(steps), r["first_error_step"], r["verdict"])
            first = next((i for i, ok in enumerate(labels) if not ok), None)
            rows.append(base | {"status": "labelled", "labels": labels, "step_scores": [float(x) for x in labels],
                                "first_error_step": first, "rollout_rule": "ground_truth",
                                "label_status": "confident"})
        else:
            pending.append((base, make_pending(r, raw, config, wants_cheap_check(r, config))))
            rows.append(base)
    items = [item for _, item in pending]
    verified = joined.filter(pl.col("verdict").fill_null(False)).select("question_id", "sample_id", "text").rows()
    rounds = roll_out(items, generator, config, generation, recipe_seed, verify, pool, verified) if items else 0
    model = f"{generator.backend}/{generator.model}" if rounds else ""
    rule = "binary_search" if config.label_method == "binary_search" else "per_step"
    for base, item in pending:
        o = item.outcome
        info = {"rollouts_per_step": config.rollouts, "rollout_requests": item.requests, "rollouts": item.rollouts,
                "rollouts_reused": item.reused, "mc_equivalent_rollouts": config.rollouts * (len(item.raw) - 1),
                "rollout_errors": item.errors, "rollout_model": model, "step_scores": o.scores,
                "rollout_rule": (rule if not item.cheap_check else "cheap_check"
                                 if item.requests <= 1 and o.first_error_step is None else "cheap_check_then_full")}
        if o.status != "labelled":
            base.update(info | {"skip_reason": "rollouts_failed"})
            continue
        base.update(info | {"status": "labelled", "labels": o.labels, "first_error_step": o.first_error_step,
                            "label_status": "uncertain" if o.uncertain else "confident",
                            "uncertain_reasons": o.uncertain})
    if config.judge.enabled and judge is not None:
        _judge(rows, picked, judge, config, recipe_seed)
    return to_table(rows, StepLabel)


def _judge(rows: list[dict], picked: list[dict], judge: Generator, config: PrmViewConfig, recipe_seed: int) -> None:
    """The judge's verdict per step of every labelled row, its first wrong step and the consensus with the rollouts
    (a disagreement makes the row uncertain)."""
    question = {r["sample_id"]: r["question"] for r in picked}
    labelled = [row for row in rows if row["status"] == "labelled"]
    verdicts = judge_steps(judge, [({"sample_id": row["sample_id"], "question": question[row["sample_id"]]},
                                    row["steps"]) for row in labelled], config, recipe_seed)
    model = f"{judge.backend}/{judge.model}" if labelled else ""
    for row, (judged, replies) in zip(labelled, verdicts):
        agree, reason, judge_first = consensus(judged, row["first_error_step"])
        row.update(judge_step_labels=judged, judge_agreement=judge_agreement(judged, row["labels"]),
                   judge_first_error_step=judge_first, consensus=agree, consensus_reason=reason,
                   judge_model=model, judge_replies=replies)
        if agree is False:
            row.update(label_status="uncertain", uncertain_reasons=sorted({*row["uncertain_reasons"],
                                                                            "judge_disagrees"}))


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
