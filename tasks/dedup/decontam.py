"""Decontamination: flag questions that overlap an evaluation set, by shared word n-grams and by MinHash similarity.

The n-gram test (GPT-3 / Llama style, 13-grams by default) catches a benchmark question pasted into a longer text;
the MinHash test catches light paraphrases and number changes (candidates confirmed as in dedup: exact Jaccard near
the threshold). Every hit becomes a DecontamHit row naming the benchmark; the dedup stage then flags the question
"contaminated:<bench>" (never deletes it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.schemas.arrow import empty_table, to_table
from cotforge.schemas.config_dedup import DecontamConfig, EvalSetConfig
from cotforge.schemas.records import DecontamHit, normalize_text, stable_id
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardRef, shard_key
from cotforge.tasks.dedup.confirm import confirm_pairs
from cotforge.tasks.dedup.lsh import bands_rows, candidate_pairs, estimated_jaccard
from cotforge.tasks.dedup.minhash import minhash_signatures, shingle_spans, span_hashes64

_WORD = re.compile(r"\w+")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _rows_from_file(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    text = path.read_text()
    if path.suffix == ".json" and text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _data_files(folder: Path, split: str | None) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".jsonl", ".json", ".parquet") and p.is_file())
    return [p for p in files if split is None or split in p.name] or files


def load_eval_texts(config: EvalSetConfig) -> list[str]:
    """The texts of one evaluation set (fields in `text_fields` joined), from a local file/folder or a Hub repo."""
    if config.hub is not None:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id=config.hub, repo_type="dataset", revision=config.revision,
                                        allow_patterns=["*.jsonl", "*.json", "*.parquet", "**/*.jsonl",
                                                        "**/*.json", "**/*.parquet"]))
        files = _data_files(folder, config.split)
    else:
        path = Path(config.path)
        if not path.exists() and (REPO_ROOT / path).exists():
            path = REPO_ROOT / path  # recipes name shipped sets relative to the repository
        if not path.exists():
            raise FileNotFoundError(f"dedup.decontam.evals[{config.name}].path: no such file or folder: {path}")
        files = _data_files(path, config.split) if path.is_dir() else [path]
    texts = []
    for file in files:
        for row in _rows_from_file(file):
            missing = [f for f in config.text_fields if f not in row]
            if missing:
                raise ValueError(f"evaluation set {config.name!r}: {file.name} rows lack field(s) {missing}")
            texts.append(" ".join(str(row[f]) for f in config.text_fields))
    return texts


def word_form(text: str) -> str:
    """Lower-case words separated by single spaces (punctuation dropped), the basis of the n-gram test."""
    return " ".join(_WORD.findall(normalize_text(text)))


def ngram_hashes(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit hash, text index) of every word n-gram; texts with fewer than n words contribute none."""
    docs = [word_form(t).encode() for t in texts]
    buf, starts, ends, doc = shingle_spans(docs, "words", n)
    words = np.array([d.count(b" ") + 1 if d else 0 for d in docs], dtype=np.int64)
    full = words[doc] >= n
    return span_hashes64(buf, starts[full], ends[full]), doc[full]


def find_contamination(texts: list[str], evals: dict[str, list[str]], config: DecontamConfig) -> list[dict]:
    """Every (text, benchmark) overlap: dicts with index, benchmark, method, score, eval_row, eval_text."""
    hits: list[dict] = []
    if not texts or not any(evals.values()):  # nothing to compare with: no n-grams, no signatures
        return hits
    hashes, owner = ngram_hashes(texts, config.ngram)
    signatures = minhash_signatures(texts, config.minhash)
    similar = config.minhash.model_copy(update={"threshold": config.minhash_threshold})
    bands, rows = bands_rows(similar)
    for bench, eval_texts in evals.items():
        if not eval_texts:
            continue
        eval_hashes, eval_owner = ngram_hashes(eval_texts, config.ngram)
        order = np.argsort(eval_hashes)
        sorted_hashes, sorted_owner = eval_hashes[order], eval_owner[order]
        position = np.minimum(np.searchsorted(sorted_hashes, hashes), max(len(sorted_hashes) - 1, 0))
        shared = (sorted_hashes[position] == hashes) if len(sorted_hashes) else np.zeros(len(hashes), bool)
        counts = np.bincount(owner[shared], minlength=len(texts))
        for i in np.flatnonzero(counts >= config.min_ngram_hits).tolist():
            first = int(sorted_owner[position[shared & (owner == i)][0]])
            hits.append({"index": i, "benchmark": bench, "method": "ngram", "score": float(counts[i]),
                         "eval_row": first, "eval_text": eval_texts[first][:200]})
        eval_signatures = minhash_signatures(eval_texts, config.minhash)
        pool = np.concatenate([signatures, eval_signatures])
        pairs = candidate_pairs(pool, bands, rows, max_bucket=config.minhash.max_bucket)
        pairs = pairs[(pairs[:, 0] < len(texts)) & (pairs[:, 1] >= len(texts))]
        pool_texts = texts + eval_texts
        decided = confirm_pairs(pairs, estimated_jaccard(pool, pairs), lambda nodes, pool_texts=pool_texts: [
            normalize_text(pool_texts[k] or "") for k in nodes.tolist()], similar)  # exact near the threshold
        best: dict[int, tuple[float, int]] = {}
        for (i, j), s, yes in zip(pairs.tolist(), decided["similarity"].tolist(), decided["similar"].tolist()):
            if yes and s > best.get(i, (-1.0, 0))[0]:
                best[i] = (s, j - len(texts))
        for i, (s, j) in sorted(best.items()):
            hits.append({"index": i, "benchmark": bench, "method": "minhash", "score": s, "eval_row": j,
                         "eval_text": eval_texts[j][:200]})
    return hits


def decontaminate_questions(questions: pa.Table, evals: dict[str, list[str]], config: DecontamConfig,
                            recipe_hash: str, build_id: str) -> pa.Table:
    """One DecontamHit row per (question, benchmark, method) overlap."""
    ids = questions.column("question_id").to_pylist()
    hits = find_contamination(questions.column("text").to_pylist(), evals, config)
    rows = [DecontamHit(question_id=ids[h.pop("index")], recipe_hash=recipe_hash, build_id=build_id, **h)
            for h in hits]
    return to_table(rows, DecontamHit) if rows else empty_table(DecontamHit)


def hit_counts(hits: pa.Table) -> dict[str, int]:
    """Contaminated questions per benchmark (a question hit by both methods counts once)."""
    seen: dict[str, set] = {}
    for row in hits.select(["question_id", "benchmark"]).to_pylist():
        seen.setdefault(row["benchmark"], set()).add(row["question_id"])
    return {bench: len(ids) for bench, ids in sorted(seen.items())}


@task(name="decontam", cache_policy=NO_CACHE)
def decontam_shard(ctx: BuildContext, questions: list[ShardRef], config: DecontamConfig) -> ShardRef:
    """Check every question against the recipe's evaluation sets."""
    evals = {e.name: load_eval_texts(e) for e in config.evals}
    evals_hash = stable_id(json.dumps(evals, sort_keys=True))
    key = shard_key("decontam", stable_id(config.model_dump_json(), evals_hash), *[r.key for r in questions])
    done = ctx.store.done("decontam", key)
    if done is not None:
        return done
    table = decontaminate_questions(ctx.store.read_all(questions), evals, config, ctx.recipe_hash, ctx.build_id)
    return ctx.store.write("decontam", key, table, ctx.metadata | {"cotforge.evals": json.dumps(
        {name: len(texts) for name, texts in evals.items()})})
