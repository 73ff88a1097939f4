"""The publish stage: build every enabled view from the stage shards and publish them as a complete version (the
previous version's rows carried, then the new rows), with the card, the report, the indexes and the manifest."""

from __future__ import annotations

import json

from dataclasses import asdict, dataclass, field

import fsspec
import polars as pl
import pyarrow as pa
import yaml
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.recipe import Recipe
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.join import join_records
from cotforge.tasks.core.memory import release_memory
from cotforge.tasks.core.shards import ShardRef, ShardStore
from cotforge.tasks.dedup.stage import publish_dedup
from cotforge.tasks.generate.accounting import REUSE_COUNTS, generation_accounting, window_path
from cotforge.tasks.label.summary import labelling_rules, labelling_summary
from cotforge.tasks.publish.card import card_text, verification_rules
from cotforge.tasks.publish.manifest import write_manifest
from cotforge.tasks.publish.report import (
    REPORT_PLOTS,
    funnel_png,
    mix_counts,
    pass_rate_histogram_png,
    report_markdown,
    stage_counts,
    stage_rates,
    stage_rows,
    verdict_breakdown,
    verdicts_png,
)
from cotforge.tasks.publish.snapshot import (
    carried_view,
    copy_indexes,
    finalize_version,
    open_version,
    staging_folder,
    version_views,
)
from cotforge.tasks.publish.versions import version_folder
from cotforge.tasks.publish.write import PublishedView, dumps_json, write_text, write_view
from cotforge.tasks.questions.stage import question_mix, rejects_ref
from cotforge.tasks.views.builders import view_builders, view_format, view_metadata
from cotforge.tasks.views.generations import CARD_NOTE as GENERATIONS_NOTE, RLVR_NOTE


@dataclass
class BuildResult:
    out: str  # the output folder (OUT); the version is in OUT/<version>/
    version: str
    build_id: str
    recipe_hash: str
    counts: dict[str, int]
    views: dict[str, int]  # rows per view in the version (carried + new)
    timings: dict[str, float] = field(default_factory=dict)
    pushed: dict | None = None  # Hub repo, version tag and commit when the build was pushed (tasks/publish/hub.py)
    new_rows: dict[str, int] = field(default_factory=dict)  # rows per view this version added
    carried_rows: dict[str, int] = field(default_factory=dict)  # rows per view carried from `previous`
    previous: str | None = None  # where the carried version was read from
    # "published"; "unchanged" (the version existed with the same rows: nothing written); "skipped" (no new rows
    # and the caller asked for new rows: nothing written)
    status: str = "published"
    stage_rows: dict[str, int] = field(default_factory=dict)  # rows each timed stage went through (report: rows/s)

    @property
    def folder(self) -> str:
        return version_folder(self.out, self.version)


def _window(store: ShardStore, build_id: str) -> list | None:
    path = f"{store.root}/{window_path(build_id)}"
    return json.loads(store.fs.cat(path))["window"] if store.fs.exists(path) else None


def _frame(store: ShardStore, refs: list[ShardRef]) -> pl.DataFrame:
    return pl.from_arrow(store.read_all(refs))


def _publish_view(folder: str, name: str, build_table, previous_folder: str | None, previous_views: list[str],
                  recipe: Recipe, ctx: BuildContext) -> PublishedView:
    """Write one view into the staged version: the previous version's rows (if it has the view) then this build's.
    Carried rows take the format the recipe publishes the view in (a view it no longer builds keeps its own)."""
    format_ = view_format(recipe.views, name) if build_table is not None else None
    carried = None
    if previous_folder and name in previous_views:
        carried, format_ = carried_view(previous_folder, name, format_)
    parts = [t for t in (carried, build_table() if build_table is not None else None) if t is not None]
    published = write_view(folder, name, pa.concat_tables(parts),
                           view_metadata(name, ctx.recipe_hash, ctx.build_id, ctx.version, format_),
                           carried_rows=carried.num_rows if carried is not None else 0)
    del parts, carried
    release_memory()  # the next view grows into the pages this one freed, not beside them
    return published


@task(name="publish", cache_policy=NO_CACHE)
def publish_views(ctx: BuildContext, recipe: Recipe, refs: dict[str, list[ShardRef]], timings: dict[str, float],
                  previous: str | None = None, require_new_rows: bool = False) -> BuildResult:
    """Publish `OUT/<version>/`: every view of the `previous` version (carried) followed by this build's new rows,
    with the card, the report, the indexes and the manifest. With `require_new_rows`, a build without new rows
    publishes nothing (status "skipped")."""
    store, version, recipe_hash, build_id = ctx.store, ctx.version, ctx.recipe_hash, ctx.build_id
    previous_folder = open_version(previous) if previous else None
    folder = staging_folder(store.url, version)
    # The indexes first, copied batch by batch, before the records are loaded: their peak and the records' do not add
    # up (issue 26: peak memory).
    dedup_summary = publish_dedup(ctx, refs, recipe.dedup, folder)  # writes <folder>/index/<version>/
    if previous_folder:
        copy_indexes(previous_folder, folder, version)  # each version holds the index of all its rows
    release_memory()
    questions, samples, verdicts, votes, dedup = (_frame(store, refs[k]) for k in
                                                  ("questions", "samples", "verdicts", "votes", "dedup"))
    joined = join_records(questions, samples, verdicts, votes, dedup,
                          sample_dedup=_frame(store, refs["sample_dedup"]) if refs.get("sample_dedup") else None)
    samples = samples.drop("text")  # the views read the joined copy; the counts need the other columns only
    step_labels = _frame(store, refs["step_labels"]) if refs.get("step_labels") else None
    builders = view_builders(joined, step_labels, recipe.views, recipe.generation.system_prompt, added_in=version)
    # One view in memory at a time (its carried rows, its new rows, the written table): a build holds the joined
    # records plus its largest view, not every view at once (issue 26: peak memory).
    previous_views = version_views(previous_folder) if previous_folder else []
    published = [_publish_view(folder, name, builders.get(name), previous_folder, previous_views, recipe, ctx)
                 for name in [*builders, *(v for v in previous_views if v not in builders)]]  # (it keeps its rows)
    if require_new_rows and not any(v.new_rows for v in published):
        fs, staged = fsspec.core.url_to_fs(folder)
        fs.rm(staged, recursive=True)
        return BuildResult(store.url, version, build_id, recipe_hash, {}, {}, timings, previous=previous,
                           status="skipped")
    view_rows = {v.name: v.rows for v in published}
    counts = stage_counts(questions, samples, verdicts, votes, dedup, view_rows)
    counts.update({f"rows new in view {v.name}": v.new_rows for v in published})
    counts.update({f"rows carried in view {v.name}": v.carried_rows for v in published})
    counts.update(dedup_summary["counts"])
    rejects = rejects_ref(ctx, recipe.questions)  # seed rows / synth candidates turned down
    sources = _frame(store, refs.get("source_questions") or refs["questions"])
    mix = question_mix(sources, _frame(store, [rejects]) if rejects else None)
    counts.update(mix_counts(mix))
    generation = generation_accounting(store, refs["samples"], samples, verdicts, timings.get("sample", 0.0),
                                       _window(store, build_id), run_id=ctx.run_id)
    counts.update({k: generation[k] for k in REUSE_COUNTS})
    breakdown = verdict_breakdown(verdicts)
    code_questions = questions.filter(pl.col("verifier") == "code").height
    recipe_yaml = yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    lineage = {
        "recipe hash": recipe_hash, "build id": build_id, "dataset version": version,
        "previous version": previous or "none (first version)",
        "generator": f"{samples['backend'][0]} / {samples['model'][0]} (revision {samples['model_revision'][0]})"
        if samples.height else "none",
        "sampling": samples["sampling_json"][0] if samples.height else "none",
        "verifiers": ", ".join(sorted(set(verdicts["verifier_name"].to_list()))) or "none",
    }
    labelling = labelling_summary(step_labels, recipe.views.prm) if recipe.views.prm.enabled else None
    write_text(folder, "README.md", card_text(recipe.publish.pretty_name or recipe.name, version,
                                              recipe.description, recipe.publish.license, recipe_yaml, published,
                                              counts, lineage, mix=mix,
                                              plots=[f"report/{name}" for name in REPORT_PLOTS],
                                              rules=verification_rules(recipe.verify, counts, code_questions)
                                              + labelling_rules(labelling, recipe.views.prm)
                                              + ([GENERATIONS_NOTE] if recipe.views.generations.enabled else [])
                                              + ([RLVR_NOTE] if recipe.views.rlvr.enabled and "reasoning_gym" in
                                                 verdicts["verifier_name"].to_list() else [])))
    write_text(folder, "report/pass_rate.png", pass_rate_histogram_png(votes))
    write_text(folder, "report/funnel.png", funnel_png(counts))
    write_text(folder, "report/verdicts.png", verdicts_png(breakdown))
    view_table = [{k: getattr(v, k) for k in ("name", "schema_version", "rows", "new_rows", "carried_rows")}
                  for v in published]
    rows = stage_rows({"questions": sources.height, "samples": samples.height,
                       **({"step_labels": step_labels.height} if step_labels is not None else {})})
    write_text(folder, "report/report.md", report_markdown(counts, breakdown, timings, generation, mix=mix,
                                                           views=view_table, labelling=labelling, rows=rows))
    result = BuildResult(store.url, version, build_id, recipe_hash, counts, view_rows, timings,
                         new_rows={v.name: v.new_rows for v in published},
                         carried_rows={v.name: v.carried_rows for v in published}, previous=previous,
                         stage_rows=rows)
    write_text(folder, "report/report.json", dumps_json({**asdict(result), "questions": mix, "verdicts": breakdown,
                                                         "generation": generation, "rows_per_view": view_table,
                                                         "dedup": dedup_summary["report"], "labelling": labelling,
                                                         "stage_rates": stage_rates(timings, rows)}))
    manifest = write_manifest(folder, version, published, {"build_id": build_id, "recipe_hash": recipe_hash},
                              previous, {stage: [asdict(r) for r in rs] for stage, rs in refs.items()})
    result.status = finalize_version(store.url, version, folder, manifest)
    return result
