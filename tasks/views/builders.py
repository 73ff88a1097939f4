"""View builders: the only place rows are selected. Each turns the joined stage records into one training table.

Kernels only: every builder takes the frame from `join_records` (one row per sample) and its view's config, and
returns an Arrow table with the view's exact schema (schemas/views.py).
"""

from __future__ import annotations

import re
from typing import Callable

import polars as pl
import pyarrow as pa

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_generation import GenerationConfig
from cotforge.schemas.config_views import (
    CalibrationViewConfig,
    PreferenceViewConfig,
    PrmViewConfig,
    RlvrViewConfig,
    SftViewConfig,
    UnpairedViewConfig,
    ViewsConfig,
)
from cotforge.schemas.views import (
    COTFORGE_VERSION,
    VIEWS,
    CalibrationRow,
    PreferenceRow,
    PrmRow,
    RlvrRow,
    SftRow,
    UnpairedRow,
)
from cotforge.tasks.core.join import question_slices
from cotforge.tasks.label.steps import ground_truth_labels, label_steps
from cotforge.tasks.verify.extract import FINAL_ANSWER_LINE
from cotforge.tasks.views.formats import format_table
from cotforge.tasks.views.generations import build_generations, verifier_spec

# A line that states the final answer: the conventions tasks/verify/extract.py reads.
_FINAL_LINE = FINAL_ANSWER_LINE
_THINK_END = re.compile(r"</think>", re.I)
_THINK_START = re.compile(r"^\s*<think>", re.I)

PROMPT_RULE = ("Every chat view's prompt is the conversation the sample was generated from: the recipe's system "
               "prompt (generation.system_prompt), then the question.")
OWN_WORDS_RULE = ("Assistant turns are the model's own words: the text is only split into reasoning and final part "
                  "(at its last line stating the answer, its last code block, or its own </think>), never completed.")


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, final part), both the model's own words. The final part starts at the model's own `</think>`, else
    at the last line stating the answer, else at the last code block; without any, all of the text is reasoning and
    the final part is empty. Nothing is added (a sample without its final line fails the format check instead)."""
    text = text.strip()
    end = list(_THINK_END.finditer(text))
    if end:
        return _THINK_START.sub("", text[:end[-1].start()]).strip(), text[end[-1].end():].strip()
    lines = text.splitlines()
    final = next((i for i in range(len(lines) - 1, -1, -1) if _FINAL_LINE.search(lines[i])), None)
    if final is None:
        final = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].lstrip().startswith("```")
                      and sum(line.lstrip().startswith("```") for line in lines[:i]) % 2 == 1), None)
        if final is not None:  # the line that closes the last block: the block starts at the fence before it
            final = max(i for i in range(final) if lines[i].lstrip().startswith("```"))
    if final is None:
        return text, ""
    return "\n".join(lines[:final]).strip(), "\n".join(lines[final:]).strip()


def render_assistant(reasoning: str, final: str, reasoning_format: str) -> str:
    """The assistant turn: `<think>` tags keep the rationale apart from the answer in reasoning chat templates."""
    if reasoning_format == "think_tags":
        return f"<think>\n{reasoning}\n</think>\n\n{final}".strip()
    return "\n".join(part for part in (reasoning, final) if part)


def _prompt(question: str, system_prompt: str | None) -> list[dict]:
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return system + [{"role": "user", "content": question}]


def _assistant(row: dict, reasoning_format: str) -> list[dict]:
    reasoning, final = split_reasoning(row["text"])
    return [{"role": "assistant", "content": render_assistant(reasoning, final, reasoning_format)}]


def build_sft(joined: pl.DataFrame, config: SftViewConfig, system_prompt: str | None = None,
              added_in: str | None = None) -> pa.Table:
    """Trainable rationales (finished, with a stated final answer) that a verifier judged correct (strict), or that
    agree with the majority and no verifier judged wrong (lenient), as chats in the configured TRL format."""
    picked = joined.filter(pl.col("usable") & pl.col("trainable"))
    picked = picked.filter(pl.col("verdict").fill_null(False)) if config.keep == "verified" else picked.filter(
        pl.col("agrees_with_majority") & pl.col("verdict").fill_null(True))
    rows = []
    for r in picked.iter_rows(named=True):
        reasoning, final = split_reasoning(r["text"])
        prompt = _prompt(r["question"], system_prompt)
        completion = [{"role": "assistant", "content": render_assistant(reasoning, final, config.reasoning_format)}]
        rows.append(SftRow(
            prompt=prompt, completion=completion, reasoning=reasoning,
            final_answer=final, reasoning_format=config.reasoning_format, answer=r["extracted_answer"],
            verified=r["verdict"], agrees_with_majority=r["agrees_with_majority"], keep_rule=config.keep,
            question_id=r["question_id"], sample_id=r["sample_id"], source=r["source"], difficulty=r["difficulty"],
            added_in=added_in,
        ))
    return format_table(rows, SftRow, config.format)


def _pairs(group: pl.DataFrame, config: PreferenceViewConfig) -> list[tuple[str, dict, dict]]:
    """(method, chosen, rejected) pairs within one question's samples; a chosen sample is always trainable."""
    correct = group.filter((pl.col("verdict") == True) & pl.col("trainable")).to_dicts()  # noqa: E712
    wrong = group.filter(pl.col("verdict") == False).to_dicts()  # noqa: E712
    pairs = []
    if "correct_vs_incorrect" in config.methods:
        pairs += [("correct_vs_incorrect", c, w) for c, w in list(zip(correct, wrong))[:config.max_pairs_per_question]]
    if "concise_vs_verbose" in config.methods:
        # Shortest against longest, then the next ones inward: each sample in at most one pair of this kind.
        by_length = sorted(correct, key=lambda r: (r["completion_tokens"], r["sample_index"]))
        made = 0
        for short, long in zip(by_length, reversed(by_length)):
            if made >= config.max_pairs_per_question or short["sample_id"] == long["sample_id"]:
                break
            # Two samples can be the same text (ties in sampling): such a pair teaches nothing.
            same = _assistant(short, config.reasoning_format) == _assistant(long, config.reasoning_format)
            if not same and long["completion_tokens"] >= config.min_length_ratio * max(short["completion_tokens"], 1):
                pairs.append(("concise_vs_verbose", short, long))
                made += 1
    return pairs


def build_preference(joined: pl.DataFrame, config: PreferenceViewConfig, system_prompt: str | None = None,
                     added_in: str | None = None) -> pa.Table:
    """Pairs of samples of the same question (never across questions), each with the method that made it."""
    rows = []
    usable = joined.filter(pl.col("usable"))
    for (question_id,), group in usable.group_by("question_id", maintain_order=True):
        for method, chosen, rejected in _pairs(group, config):
            rows.append(PreferenceRow(
                prompt=_prompt(chosen["question"], system_prompt), chosen=_assistant(chosen, config.reasoning_format),
                rejected=_assistant(rejected, config.reasoning_format), pair_method=method,
                chosen_verified=chosen["verdict"], rejected_verified=rejected["verdict"],
                chosen_tokens=chosen["completion_tokens"], rejected_tokens=rejected["completion_tokens"],
                question_id=question_id, chosen_sample_id=chosen["sample_id"],
                rejected_sample_id=rejected["sample_id"], source=chosen["source"], added_in=added_in,
            ))
    return format_table(rows, PreferenceRow, config.format)


def build_unpaired(joined: pl.DataFrame, config: UnpairedViewConfig, system_prompt: str | None = None,
                   added_in: str | None = None) -> pa.Table:
    """Each judged sample with its verdict as a desirable / undesirable label (undecided verdicts are left out, and a
    correct sample is desirable only when trainable)."""
    judged = (joined.filter(pl.col("usable") & pl.col("verdict").is_not_null()
                            & (pl.col("trainable") | (pl.col("verdict") == False)))  # noqa: E712
              .with_columns(rank=pl.int_range(pl.len()).over("question_id"))
              .filter(pl.col("rank") < config.max_per_question))
    rows = [UnpairedRow(
        prompt=_prompt(r["question"], system_prompt), completion=_assistant(r, config.reasoning_format),
        label=r["verdict"],
        verdict_reason=r["verdict_reason"], question_id=r["question_id"], sample_id=r["sample_id"],
        source=r["source"], added_in=added_in,
    ) for r in judged.iter_rows(named=True)]
    return format_table(rows, UnpairedRow, config.format)


def build_prm(joined: pl.DataFrame, step_labels: pl.DataFrame | None = None,
              config: PrmViewConfig | None = None, added_in: str | None = None) -> pa.Table:
    """Stepwise supervision from the `step_labels` stage (Monte-Carlo rollouts or known ground truth).

    Without step labels (the stage did not run), the simulated solver's known first errors label its samples. With
    `judge.mode: consensus` only rows where the judge and the rollouts agree on the first error are kept, with
    `uncertain: drop` only confident rows (the others stay in the step_labels stage with their reasons); with
    `after_first_error: omit` a row ends at its first wrong step.
    """
    if step_labels is None:
        ground = PrmViewConfig(label_method="simulated_ground_truth", max_samples_per_question=10**6,
                               max_steps=10**6) if config is None else config.model_copy(
            update={"label_method": "simulated_ground_truth"})
        step_labels = pl.from_arrow(label_steps(joined, None, ground, GenerationConfig(), 0, "", ""))
    config = config or PrmViewConfig()
    labelled = step_labels.filter(pl.col("status") == "labelled")
    if config.judge.enabled and config.judge.mode == "consensus":
        labelled = labelled.filter(pl.col("consensus").fill_null(False))
    if config.uncertain == "drop":
        labelled = labelled.filter(pl.col("label_status") != "uncertain")
    labelled = labelled.select(
        "sample_id", "steps", "labels", "step_scores", pl.col("first_error_step").alias("mc_first_error_step"),
        "label_method", "segmentation", "rollouts_per_step", "rollout_model", "judge_step_labels", "judge_agreement",
        "judge_model", "label_status", "uncertain_reasons", "judge_first_error_step", "consensus", "rollouts",
        "mc_equivalent_rollouts")
    rows = []
    trainable = joined.filter(pl.col("usable") & pl.col("trainable"))
    # maintain_order: rows in question order like every view (polars' default order follows whichever side it hashes,
    # so at scale it followed the step-label shards: the same rows, in an order that changed with the sizes)
    for r in trainable.join(labelled, on="sample_id", how="inner", maintain_order="left").iter_rows(named=True):
        reference = None
        if r["backend"] == "simulated":
            truth = ground_truth_labels(len(r["steps"]), r["first_error_step"], r["verdict"])
            reference = next((i for i, ok in enumerate(truth) if not ok), None)
        first = r["mc_first_error_step"]
        keep = len(r["steps"]) if config.after_first_error == "wrong" or first is None else first + 1
        judged = r["judge_step_labels"]
        rows.append(PrmRow(
            prompt=r["question"], completions=r["steps"][:keep], labels=r["labels"][:keep],
            step_scores=r["step_scores"][:keep], first_error_step=first, label_method=r["label_method"],
            segmentation=r["segmentation"], rollouts_per_step=r["rollouts_per_step"], rollout_model=r["rollout_model"],
            verified=r["verdict"], reference_first_error_step=reference, question_id=r["question_id"],
            sample_id=r["sample_id"], judge_step_labels=None if judged is None else judged[:keep],
            judge_agreement=r["judge_agreement"], judge_model=r["judge_model"] or None, added_in=added_in,
            label_status=r["label_status"], uncertain_reasons=r["uncertain_reasons"],
            judge_first_error_step=r["judge_first_error_step"], consensus=r["consensus"], rollouts=r["rollouts"],
            mc_equivalent_rollouts=r["mc_equivalent_rollouts"], steps_left_out=len(r["steps"]) - keep,
        ))
    return to_table(rows, PrmRow)


def in_pass_band(pass_rate: float | None, config: RlvrViewConfig) -> bool:
    """Whether a question's pass rate lies in the configured band (ends excluded when `exclusive`)."""
    if pass_rate is None:
        return False
    if config.exclusive:
        return config.min_pass_rate < pass_rate < config.max_pass_rate
    return config.min_pass_rate <= pass_rate <= config.max_pass_rate


def build_rlvr(joined: pl.DataFrame, config: RlvrViewConfig, system_prompt: str | None = None,
               added_in: str | None = None) -> pa.Table:
    """One RL prompt per usable question whose pass rate is in the band, with its answer and verifier."""
    questions = joined.filter(pl.col("usable")).unique("question_id", keep="first", maintain_order=True)
    rows = []
    for r in questions.iter_rows(named=True):
        if not in_pass_band(r["pass_rate"], config):
            continue
        solution, kind = (r["gold_answer"], "gold") if r["gold_answer"] is not None else (r["pseudo_label"],
                                                                                          "pseudo_label")
        rows.append(RlvrRow(
            prompt=_prompt(r["question"], system_prompt), solution=solution,
            solution_kind=kind, tests=r["tests"], answer_type=r["answer_type"], verifier=r["verifier"],
            verifier_spec=verifier_spec(r["metadata_json"]), pass_rate=r["pass_rate"], n_samples=r["n_samples"],
            n_correct=r["n_correct"],
            difficulty_bin=r["difficulty_bin"], reference_model=r["reference_model"], question_id=r["question_id"],
            source=r["source"], added_in=added_in,
        ))
    return format_table(rows, RlvrRow, config.format)


def build_calibration(joined: pl.DataFrame, config: CalibrationViewConfig, system_prompt: str | None = None,
                      added_in: str | None = None) -> pa.Table:
    """Every usable sample with its question's empirical accuracy as the confidence target."""
    rows = [CalibrationRow(
        prompt=_prompt(r["question"], system_prompt), completion=[{"role": "assistant", "content": r["text"]}],
        answer=r["extracted_answer"], correct=r["verdict"],
        confidence_target=(r["n_correct"] / r["n_samples"]) if r["gold_answer"] is not None and r["n_samples"]
        else None,
        answer_agreement=r["answer_agreement"], n_samples=r["n_samples"] or 0, question_id=r["question_id"],
        sample_id=r["sample_id"], added_in=added_in,
    ) for r in joined.filter(pl.col("usable")).iter_rows(named=True)]
    return format_table(rows, CalibrationRow, config.format)


SLICE_ROWS = 20_000  # samples a view is built from at a time: its rows live as Python objects until converted


def _sliced(build: Callable[[pl.DataFrame], pa.Table], joined: pl.DataFrame) -> pa.Table:
    """One view built slice by slice (`question_slices`): what a build holds at once is one slice's rows as Python
    objects, not every row's (issue 26: peak memory)."""
    tables = [build(part) for part in question_slices(joined, SLICE_ROWS)]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def view_builders(joined: pl.DataFrame, step_labels: pl.DataFrame | None, views: ViewsConfig,
                  system_prompt: str, added_in: str | None = None) -> dict[str, Callable[[], pa.Table]]:
    """Each enabled view's name and a thunk that builds its table from all of `joined`."""
    return {name: (lambda build=build: _sliced(lambda part: build(part, step_labels), joined))
            for name, build in view_part_builders(views, system_prompt, added_in).items()}


def view_part_builders(views: ViewsConfig, system_prompt: str, added_in: str | None = None
                       ) -> dict[str, Callable[[pl.DataFrame, pl.DataFrame | None], pa.Table]]:
    """Each enabled view's name and the function that builds its rows of some whole questions' joined records (and
    their step labels). Builders work question by question, so the parts of questions in order, concatenated, are the
    view of all of them. `system_prompt` is the one the samples were generated with: every chat view's prompt starts
    with it (PROMPT_RULE); every row names `added_in`, the dataset version these rows are new in."""
    builders = {
        "sft": lambda part, labels: build_sft(part, views.sft, system_prompt, added_in),
        "sft_lenient": lambda part, labels: build_sft(part, views.sft_lenient, system_prompt, added_in),
        "preference": lambda part, labels: build_preference(part, views.preference, system_prompt, added_in),
        "unpaired": lambda part, labels: build_unpaired(part, views.unpaired, system_prompt, added_in),
        "prm": lambda part, labels: build_prm(part, labels, views.prm, added_in),
        "rlvr": lambda part, labels: build_rlvr(part, views.rlvr, system_prompt, added_in),
        "calibration": lambda part, labels: build_calibration(part, views.calibration, system_prompt, added_in),
        "generations": lambda part, labels: build_generations(part, views.generations, system_prompt, added_in),
    }
    return {name: build for name, build in builders.items() if getattr(views, name).enabled}


def view_format(views: ViewsConfig, view: str) -> str:
    """The TRL format a recipe publishes a view in (a view without a choice: its one format)."""
    return getattr(getattr(views, view, None), "format", None) or VIEWS[view].default_format


def view_metadata(view: str, recipe_hash: str, build_id: str, version: str,
                  format_: str | None = None) -> dict[str, str]:
    """Key-value metadata every published Parquet file carries; a chat view's file names its TRL format."""
    metadata = {"cotforge.schema_name": view, "cotforge.schema_version": VIEWS[view].version,
                "cotforge.version": COTFORGE_VERSION, "cotforge.recipe_hash": recipe_hash,
                "cotforge.build_id": build_id, "cotforge.dataset_version": version}
    if len(VIEWS[view].formats) > 1:
        metadata["cotforge.format"] = format_ or VIEWS[view].default_format
    return metadata

