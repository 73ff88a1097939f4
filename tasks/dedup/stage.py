"""The dedup stage's shard tasks: questions and rationales against each other, earlier versions and the shared
Redis index, and what is written at publish time (the version index, the summary, the shared index's entries).

The global dedup of a build is shard tasks plus one merge: `sketch_shard` per question (or sample) shard, mapped on
the flow's task runner (Ray included), then `dedup_shard` / `sample_dedup_shard` merge every shard's sketches."""

from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.config_dedup import DedupConfig, MinHashConfig
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardRef, config_hash, shard_key
from cotforge.tasks.dedup.cluster import (
    Sketch,
    cluster_texts,
    dedup_questions,
    dedup_samples,
    signatures_table,
    sketch_texts,
)
from cotforge.tasks.dedup.decontam import hit_counts
from cotforge.tasks.dedup.index import (
    INDEX_BATCH_ROWS,
    earlier_index,
    index_fingerprint,
    sketch_from_table,
    sketch_table,
    write_index,
)
from cotforge.tasks.dedup.shared_index import SharedIndex, claim_owner, shared_index_filter

log = logging.getLogger("cotforge.dedup")


@task(name="new_questions", cache_policy=NO_CACHE)
def new_questions_shards(ctx: BuildContext, questions: list[ShardRef],
                         config: DedupConfig) -> tuple[list[ShardRef], list[ShardRef]]:
    """Per question shard, the questions no earlier version holds (neither the same question nor a near-duplicate
    above the question threshold): only these are sampled; an earlier version's rows are carried, never sampled again.

    Returns (new question shards, `earlier_questions` shards naming each question left out, the earlier question it
    matches and the similarity). A shard with nothing left out is returned as it is, so its key stays the same."""
    prior = earlier_index(ctx.store.url, ctx.version, config.earlier_versions, "questions", config.questions)
    if prior is None:
        return questions, []
    fingerprint = index_fingerprint(prior)
    fresh, earlier = [], []
    for ref in questions:
        key = shard_key("new_questions", config_hash(config.questions, fingerprint), ref.key)
        done, matched = ctx.store.done("new_questions", key), ctx.store.done("earlier_questions", key)
        if done is None or matched is None:
            table = ctx.store.read(ref)
            result = cluster_texts(table.column("question_id").to_pylist(), table.column("text").to_pylist(),
                                   config.questions, prior=prior)
            old = [reason == "earlier_version" for reason in result.drop_reason]
            matched = ctx.store.write("earlier_questions", key, pa.table({
                "question_id": table.column("question_id").filter(pa.array(old, pa.bool_())),
                "earlier_question_id": pa.array([c for c, o in zip(result.cluster_id, old) if o], pa.string()),
                "similarity": pa.array([s for s, o in zip(result.similarity, old) if o], pa.float64())}), ctx.metadata)
            done = ctx.store.write("new_questions", key, table.filter(pa.array([not o for o in old], pa.bool_())),
                                   ctx.metadata)
        fresh.append(ref if done.rows == ref.rows else done)
        earlier.append(matched)
    return fresh, earlier


@task(name="dedup_sketch", cache_policy=NO_CACHE)
def sketch_shard(ctx: BuildContext, ref: ShardRef, config: MinHashConfig, id_column: str = "question_id") -> ShardRef:
    """The sketches (normalised-text key, length, MinHash signature) of one question (or, with `id_column`
    "sample_id", sample) shard's texts."""
    key = shard_key("dedup_sketch", config_hash(config), ref.key)
    done = ctx.store.done("dedup_sketch", key)
    if done is not None:
        return done
    table = ctx.store.read(ref, columns=[id_column, "text"])
    sketch = sketch_texts(table.column("text").to_pylist(), config)
    return ctx.store.write("dedup_sketch", key, sketch_table(table.column(id_column).to_pylist(), sketch))


def _merged_sketch(ctx: BuildContext, rows: list[ShardRef], sketches: list[ShardRef] | None,
                   config: MinHashConfig) -> Sketch | None:
    """Every shard's sketches in row order (None: the merge computes them itself)."""
    if sketches is None:
        return None
    if [r.rows for r in sketches] != [r.rows for r in rows]:
        raise ValueError("dedup: the sketch shards do not match the shards they should sketch")
    # Filled shard by shard into arrays of the final size: concatenating every shard's arrays would hold the
    # signatures twice (issue 26: 164 MB each at 320,000 samples).
    n = sum(r.rows for r in sketches)
    merged = Sketch(np.empty(n, np.uint64), np.empty(n, np.int64), np.empty((n, config.num_perm), np.uint32))
    start = 0
    for ref in sketches:
        part = sketch_from_table(ctx.store.read(ref, ["key", "length", "signature"]), config.num_perm)
        end = start + len(part.keys)
        merged.keys[start:end], merged.lengths[start:end], merged.signatures[start:end] = \
            part.keys, part.lengths, part.signatures
        start = end
    return merged


@task(name="dedup", cache_policy=NO_CACHE)
def dedup_shard(ctx: BuildContext, questions: list[ShardRef], votes: list[ShardRef], decontam: list[ShardRef],
                config: DedupConfig, sketches: list[ShardRef] | None = None) -> ShardRef:
    """Deduplicate all question shards together (duplicates can sit in different shards) and against earlier
    versions; contaminated questions (from the decontam shard) are never kept. `sketches`: one `sketch_shard` per
    question shard (the merge step); None sketches here."""

    prior = earlier_index(ctx.store.url, ctx.version, config.earlier_versions, "questions", config.questions)
    key = shard_key("dedup", config_hash(config, ctx.version, index_fingerprint(prior), exclude={"decontam"}),
                    *[r.key for r in questions + votes + decontam], stage_version="2")
    done = ctx.store.done("dedup", key)
    if done is not None:
        return done
    vote_table = pl.from_arrow(ctx.store.read_all(votes, ["question_id", "n_correct"])) if votes else None
    verified = {} if vote_table is None else dict(zip(vote_table["question_id"].to_list(),
                                                      (vote_table["n_correct"] > 0).to_list()))
    contamination: dict[str, list[str]] = {}
    if decontam:
        for row in ctx.store.read_all(decontam).select(["question_id", "benchmark"]).to_pylist():
            names = contamination.setdefault(row["question_id"], [])
            if row["benchmark"] not in names:
                names.append(row["benchmark"])
    question_table = ctx.store.read_all(questions, ["question_id", "text"])  # all rows at once: only what is compared
    table, result = dedup_questions(question_table, config.questions, ctx.recipe_hash, ctx.build_id,
                                    verified=verified, contamination=contamination, prior=prior,
                                    sketch=_merged_sketch(ctx, questions, sketches, config.questions))
    if config.redis is not None:  # claims the kept questions; they become entries once this build has published
        table = shared_index_filter(table, result.signatures, config.redis, config.questions, "questions",
                                    claim_owner(ctx.build_id, ctx.store.url), "question_id",
                                    texts=question_table.column("text").to_pylist())
    ctx.store.write("dedup_index", key, signatures_table(table.column("question_id").to_pylist(), None,
                                                     table.column("keep").to_pylist(), result.signatures,
                                                     question_table.column("text")),
                    {"cotforge.minhash": json.dumps(result.stats)}, row_group_rows=INDEX_BATCH_ROWS)
    return ctx.store.write("dedup", key, table, ctx.metadata | {"cotforge.minhash": json.dumps(result.stats)})


@task(name="dedup_samples", cache_policy=NO_CACHE)
def sample_dedup_shard(ctx: BuildContext, samples: list[ShardRef], verdicts: list[ShardRef],
                       config: DedupConfig, sketches: list[ShardRef] | None = None) -> ShardRef:
    """Deduplicate the sampled rationales (all shards together), preferring verified ones; `sketches` as for
    `dedup_shard`."""

    prior = earlier_index(ctx.store.url, ctx.version, config.earlier_versions, "samples", config.samples)
    key = shard_key("sample_dedup", config_hash(config, ctx.version, index_fingerprint(prior), exclude={"decontam"}),
                    *[r.key for r in samples + verdicts])
    done = ctx.store.done("sample_dedup", key)
    if done is not None:
        return done
    verdict_table = ctx.store.read_all(verdicts, ["sample_id", "verdict"]) if verdicts else None
    verified = {} if verdict_table is None else {
        s: v is True for s, v in zip(verdict_table.column("sample_id").to_pylist(),
                                     verdict_table.column("verdict").to_pylist())}
    sample_table = ctx.store.read_all(samples, ["sample_id", "question_id", "text"])
    table, result = dedup_samples(sample_table, config.samples, ctx.recipe_hash, ctx.build_id, verified=verified,
                                  prior=prior, sketch=_merged_sketch(ctx, samples, sketches, config.samples))
    if config.redis is not None:  # rationales too: within their question when the scope says so
        table = shared_index_filter(table, result.signatures, config.redis, config.samples, "samples",
                                    claim_owner(ctx.build_id, ctx.store.url), "sample_id", "question_id",
                                    texts=sample_table.column("text").to_pylist())
    ctx.store.write("sample_dedup_index", key, signatures_table(
        table.column("sample_id").to_pylist(), table.column("question_id").to_pylist(),
        table.column("keep").to_pylist(), result.signatures, sample_table.column("text")),
        {"cotforge.minhash": json.dumps(result.stats)}, row_group_rows=INDEX_BATCH_ROWS)  # copied batch by batch
    return ctx.store.write("sample_dedup", key, table, ctx.metadata | {"cotforge.minhash": json.dumps(result.stats)})


def publish_dedup(ctx: BuildContext, refs: dict[str, list[ShardRef]], config: DedupConfig,
                  folder: str | None = None) -> dict:
    """Write this version's MinHash indexes under `<folder>/index/<version>/` (the version folder being written) and
    summarise dedup and decontamination: {"counts": funnel lines for the card, "report": the report's dedup
    section}."""

    report: dict = {"index": {}}
    counts: dict[str, int] = {}
    for stage, kind, mh in (("dedup", "questions", config.questions), ("sample_dedup", "samples", config.samples)):
        for ref in refs.get(stage, []):
            index_ref = ctx.store.done(f"{stage}_index", ref.key)
            table = ctx.store.read(ref)
            meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
            report[kind] = json.loads(meta.get("cotforge.minhash", "{}"))
            if index_ref is not None:
                with ctx.store.open_parquet(index_ref) as index_file:
                    report["index"][kind] = write_index(folder or ctx.store.url, ctx.version, kind, index_file, mh)
            reasons = pl.from_arrow(table)["drop_reason"].drop_nulls().to_list()
            label = "questions" if kind == "questions" else "rationales"
            for reason in ("exact_duplicate", "near_duplicate", "earlier_version", "concurrent_build"):
                counts[f"{label} dropped: {reason.replace('_', ' ')}"] = reasons.count(reason)
            # LSH proposes, the exact check (or a decisive estimate) confirms: both counts, so recall and the
            # cost of confirming stay visible
            for stat, line in (("candidate_pairs", "pairs compared (member and representative)"),
                               ("confirmed_pairs", "pairs confirmed"), ("checked_exact", "pairs checked by exact Jaccard")):
                if stat in report[kind]:
                    counts[f"{label} dedup: {line}"] = report[kind][stat]
    if refs.get("decontam"):
        per_bench = hit_counts(ctx.store.read_all(refs["decontam"]))
        report["contamination"] = {e.name: per_bench.get(e.name, 0) for e in config.decontam.evals}
        report["decontam"] = {"ngram": config.decontam.ngram, "minhash_threshold": config.decontam.minhash_threshold,
                              "evals": [e.name for e in config.decontam.evals]}
        counts.update({f"questions contaminated: {name}": n for name, n in report["contamination"].items()})
    if refs.get("earlier_questions"):
        counts["questions already in an earlier version (not sampled)"] = sum(r.rows for r in refs["earlier_questions"])
    return {"counts": counts, "report": report}


def publish_shared_index(ctx: BuildContext, refs: dict[str, list[ShardRef]], config: DedupConfig) -> dict:
    """Once this build has published: turn its claims in the shared Redis index into entries other builds dedup
    against. Returns, per kind, the rows entered and the rows another build took meanwhile (a claim that lapsed)."""
    summary: dict = {}
    if config.redis is None:
        return summary
    for stage, kind, mh in (("dedup", "questions", config.questions), ("sample_dedup", "samples", config.samples)):
        index = SharedIndex(config.redis, mh, kind, claim_owner(ctx.build_id, ctx.store.url))
        entered, taken = 0, []
        for ref in refs.get(stage, []):
            index_ref = ctx.store.done(f"{stage}_index", ref.key)
            if index_ref is None:
                continue
            table = ctx.store.read(index_ref)
            table = table.filter(table.column("keep"))
            signatures = table.column("signature").combine_chunks().flatten().to_numpy().reshape(-1, mh.num_perm)
            groups = table.column("group").to_pylist() if mh.scope == "question" else None
            texts = table.column("text").to_pylist() if "text" in table.column_names else None
            for row_id, match in zip(table.column("id").to_pylist(),
                                     index.publish(table.column("id").to_pylist(), signatures, groups, texts)):
                entered += match is None
                if match is not None:
                    taken.append({"id": row_id, "other": match[0], "similarity": match[1]})
        summary[kind] = {"entered": entered, "taken_meanwhile": taken}
        if taken:
            log.warning("shared index: %d %s of this build were taken by another build after this build's claim "
                        "lapsed (raise dedup.redis.claim_ttl_s): %s", len(taken), kind, taken[:5])
    return summary


def release_shared_claims(ctx: BuildContext, config: DedupConfig) -> None:
    """A build that failed drops its claims in the shared index, so rows it will not publish are not held from other
    builds until the claims expire (a killed build's claims lapse after `dedup.redis.claim_ttl_s`)."""
    if config.redis is None:
        return
    try:
        owner = claim_owner(ctx.build_id, ctx.store.url)
        for kind, mh in (("questions", config.questions), ("samples", config.samples)):
            released = SharedIndex(config.redis, mh, kind, owner).release()
            log.warning("shared index: released %d %s claimed by the failed build", released, kind)
    except Exception as error:  # noqa: BLE001 - must not hide the build's own failure
        log.warning("shared index: could not release the failed build's claims (%s); they expire after "
                    "dedup.redis.claim_ttl_s", error)
