"""The publish stage: build every enabled view from the stage shards and publish them as a complete version (the
previous version's rows carried, then the new rows), with the card, the report, the indexes and the manifest."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import fsspec
import polars as pl
import yaml
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.recipe import Recipe
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.memory import release_memory
from cotforge.tasks.core.shards import ShardRef, ShardStore
from cotforge.tasks.dedup.stage import publish_dedup
from cotforge.tasks.generate.accounting import REUSE_COUNTS, generation_accounting, window_path
from cotforge.tasks.label.summary import labelling_rules, labelling_summary
from cotforge.tasks.publish.buckets import joined_buckets
from cotforge.tasks.publish.card import card_text, verification_rules
from cotforge.tasks.publish.manifest import write_manifest
from cotforge.tasks.publish.report import (
    REPORT_PLOTS,
    funnel_png,
    merged_breakdown,
    mix_counts,
    pass_rate_histogram_png,
    report_markdown,
    stage_counts,
    stage_rates,
    stage_rows,
    verdict_counts,
    verdicts_png,
)
from cotforge.tasks.publish.snapshot import (
    carried_view_files,
    copy_indexes,
    finalize_version,
    open_version,
    staging_folder,
    version_views,
)
from cotforge.tasks.publish.versions import version_folder
from cotforge.tasks.publish.write import PublishedView, ViewWriter, dumps_json, write_text
from cotforge.tasks.questions.stage import question_mix, rejects_ref
from cotforge.tasks.views.builders import view_format, view_metadata, view_part_builders
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


def _frame(store: ShardStore, refs: list[ShardRef], columns: list[str] | None = None) -> pl.DataFrame:
    """The shards' rows as one frame; with `columns`, only those of them the shards have (older shards may lack a
    column that a later one added)."""
    if columns is not None and refs:
        with store.open_parquet(refs[0]) as first:
            present = set(first.schema_arrow.names)
        columns = [c for c in columns if c in present]
    return pl.from_arrow(store.read_all(refs, columns))


# What the counts, the card and the report read of each stage: never a rationale's text (issue 26: peak memory).
_COUNTED = {
    "questions": ["verifier", "source", "source_revision"],
    "samples": ["error", "prompt_tokens", "completion_tokens", "guidance", "backend", "model",
                "model_revision", "sampling_json"],
    "verdicts": ["extracted_answer", "verdict", "reason", "verifier_name", "trainable"],
    "votes": None,  # (every column: one small row per question)
    "step_labels": ["status", "skip_reason", "rollouts", "rollouts_reused", "mc_equivalent_rollouts",
                    "first_error_step", "consensus", "rollout_rule", "uncertain_reasons", "label_status"],
}


class _Counted:
    """The columns the counts, the card and the report read, gathered as publishing reads the records group by group
    (`joined_buckets`' `on_group`): every shard is read once, and no rationale's text is kept."""

    def __init__(self):
        self.parts: dict[str, list[pl.DataFrame]] = {kind: [] for kind in _COUNTED}
        self.verdict_counts: list[pl.DataFrame] = []

    def add(self, records: dict[str, pl.DataFrame | None]) -> None:
        for kind, columns in _COUNTED.items():
            frame = records.get(kind)
            if frame is not None:
                self.parts[kind].append(frame if columns is None else
                                        frame.select([c for c in columns if c in frame.columns]))
        self.verdict_counts.append(verdict_counts(records["verdicts"]))  # every check of every row, counted now

    def frame(self, kind: str) -> pl.DataFrame | None:
        parts = self.parts[kind]
        return pl.concat(parts, how="vertical_relaxed") if parts else None


def _publish_views(folder: str, refs: dict[str, list[ShardRef]], previous_folder: str | None, recipe: Recipe,
                   ctx: BuildContext, counted: _Counted) -> list[PublishedView]:
    """Write every view into the staged version: the previous version's rows (if it has the view) then this build's,
    built bucket by bucket of questions (`joined_buckets`) with every view's file open at once, so a build holds one
    bucket's records and rows, never a whole view (issue 26). Carried rows take the format the recipe publishes the
    view in; a view the recipe no longer builds keeps its rows and its format. `counted` gathers what the report
    reads of the records as they pass."""
    previous_views = version_views(previous_folder) if previous_folder else []
    builders = view_part_builders(recipe.views, recipe.generation.system_prompt, added_in=ctx.version)
    writers = {}
    for name in builders:
        format_ = view_format(recipe.views, name)
        writers[name] = ViewWriter(folder, name, view_metadata(name, ctx.recipe_hash, ctx.build_id, ctx.version,
                                                               format_))
        for table, _ in carried_view_files(previous_folder, name, format_) if name in previous_views else ():
            writers[name].write(table, carried=True)
    for bucket in joined_buckets(ctx.store, refs, on_group=counted.add):
        for name, build in builders.items():
            writers[name].write(build(bucket.joined, bucket.step_labels))
        del bucket  # before the next one is read: one bucket in memory, not two
    published = [writer.close() for writer in writers.values()]
    for name in (v for v in previous_views if v not in builders):
        writer = None
        for table, format_ in carried_view_files(previous_folder, name):
            writer = writer or ViewWriter(folder, name, view_metadata(name, ctx.recipe_hash, ctx.build_id,
                                                                      ctx.version, format_))
            writer.write(table, carried=True)
        published.append(writer.close())
    release_memory()
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
    counted = _Counted()
    published = _publish_views(folder, refs, previous_folder, recipe, ctx, counted)
    if require_new_rows and not any(v.new_rows for v in published):
        fs, staged = fsspec.core.url_to_fs(folder)
        fs.rm(staged, recursive=True)
        return BuildResult(store.url, version, build_id, recipe_hash, {}, {}, timings, previous=previous,
                           status="skipped")
    questions, samples, verdicts, votes = (counted.frame(k) for k in ("questions", "samples", "verdicts", "votes"))
    step_labels = counted.frame("step_labels") if refs.get("step_labels") else None
    dedup = _frame(store, refs["dedup"], ["question_id", "keep"])
    view_rows = {v.name: v.rows for v in published}
    counts = stage_counts(questions, samples, verdicts, votes, dedup, view_rows)
    counts.update({f"rows new in view {v.name}": v.new_rows for v in published})
    counts.update({f"rows carried in view {v.name}": v.carried_rows for v in published})
    counts.update(dedup_summary["counts"])
    rejects = rejects_ref(ctx, recipe.questions)  # seed rows / synth candidates turned down
    source_refs = refs.get("source_questions") or refs["questions"]
    sources = questions if source_refs == refs["questions"] else _frame(store, source_refs, _COUNTED["questions"])
    mix = question_mix(sources, _frame(store, [rejects]) if rejects else None)
    counts.update(mix_counts(mix))
    generation = generation_accounting(store, refs["samples"], samples, verdicts, timings.get("sample", 0.0),
                                       _window(store, build_id), run_id=ctx.run_id)
    counts.update({k: generation[k] for k in REUSE_COUNTS})
    breakdown = merged_breakdown(counted.verdict_counts)
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
