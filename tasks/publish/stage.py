"""The publish stage: build every enabled view from the stage shards, write them with the card and the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import polars as pl
import yaml
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.recipe import Recipe
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.join import join_records
from cotforge.tasks.core.shards import ShardRef, ShardStore
from cotforge.tasks.dedup.stage import publish_dedup
from cotforge.tasks.generate.accounting import generation_accounting
from cotforge.tasks.publish.card import card_text, verification_rules
from cotforge.tasks.publish.report import (
    REPORT_PLOTS,
    funnel_png,
    mix_counts,
    pass_rate_histogram_png,
    report_markdown,
    stage_counts,
    verdict_breakdown,
    verdicts_png,
)
from cotforge.tasks.publish.write import PublishedView, dumps_json, write_text, write_view
from cotforge.tasks.questions.stage import question_mix, rejects_ref
from cotforge.tasks.views.builders import view_builders, view_metadata


@dataclass
class BuildResult:
    out: str
    version: str
    build_id: str
    recipe_hash: str
    counts: dict[str, int]
    views: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    pushed: dict | None = None  # Hub repo, version tag and commit when the build was pushed (tasks/publish/hub.py)


def _frame(store: ShardStore, refs: list[ShardRef]) -> pl.DataFrame:
    return pl.from_arrow(store.read_all(refs))


@task(name="publish", cache_policy=NO_CACHE)
def publish_views(ctx: BuildContext, recipe: Recipe, refs: dict[str, list[ShardRef]],
                  timings: dict[str, float]) -> BuildResult:
    """Build every enabled view from the stage shards and write them with the card and the report."""
    store, version, recipe_hash, build_id = ctx.store, ctx.version, ctx.recipe_hash, ctx.build_id
    questions, samples, verdicts, votes, dedup = (_frame(store, refs[k]) for k in
                                                  ("questions", "samples", "verdicts", "votes", "dedup"))
    joined = join_records(questions, samples, verdicts, votes, dedup,
                          sample_dedup=_frame(store, refs["sample_dedup"]) if refs.get("sample_dedup") else None)
    step_labels = _frame(store, refs["step_labels"]) if refs.get("step_labels") else None
    published: list[PublishedView] = []
    for name, build_table in view_builders(joined, step_labels, recipe.views,
                                           recipe.generation.system_prompt).items():
        published.append(write_view(store.url, name, build_table(),
                                    view_metadata(name, recipe_hash, build_id, version)))
    view_rows = {v.name: v.rows for v in published}
    counts = stage_counts(questions, samples, verdicts, votes, dedup, view_rows)
    dedup_summary = publish_dedup(ctx, refs, recipe.dedup)  # writes OUT/index/<version>/
    counts.update(dedup_summary["counts"])
    rejects = rejects_ref(ctx, recipe.questions)  # seed rows / synth candidates turned down
    mix = question_mix(questions, _frame(store, [rejects]) if rejects else None)
    counts.update(mix_counts(mix))
    breakdown = verdict_breakdown(verdicts)
    code_questions = questions.filter(pl.col("verifier") == "code").height
    recipe_yaml = yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    lineage = {
        "recipe hash": recipe_hash, "build id": build_id, "dataset version": version,
        "generator": f"{samples['backend'][0]} / {samples['model'][0]} (revision {samples['model_revision'][0]})"
        if samples.height else "none",
        "sampling": samples["sampling_json"][0] if samples.height else "none",
        "verifiers": ", ".join(sorted(set(verdicts["verifier_name"].to_list()))) or "none",
    }
    write_text(store.url, "README.md", card_text(recipe.publish.pretty_name or recipe.name, version,
                                                 recipe.description, recipe.publish.license, recipe_yaml, published,
                                                 counts, lineage, mix=mix,
                                                 plots=[f"report/{name}" for name in REPORT_PLOTS],
                                                 rules=verification_rules(recipe.verify, counts, code_questions)))
    write_text(store.url, "report/pass_rate.png", pass_rate_histogram_png(votes))
    write_text(store.url, "report/funnel.png", funnel_png(counts))
    write_text(store.url, "report/verdicts.png", verdicts_png(breakdown))
    generation = generation_accounting(store, refs["samples"], samples, verdicts, timings.get("sample", 0.0))
    write_text(store.url, "report/report.md", report_markdown(counts, breakdown, timings, generation, mix=mix))
    result = BuildResult(store.url, version, build_id, recipe_hash, counts, view_rows, timings)
    write_text(store.url, "report/report.json", dumps_json({**asdict(result), "questions": mix, "verdicts": breakdown,
                                                            "generation": generation,
                                                            "dedup": dedup_summary["report"]}))
    store.write_json("manifest.json", {stage: [asdict(r) for r in rs] for stage, rs in refs.items()}
                     | {"views": [asdict(v) for v in published], "build_id": build_id, "version": version})
    return result
