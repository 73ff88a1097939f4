"""Dedup kernels: datasketch-compatible signatures, LSH parameters, clusters, keep policy, sample dedup, incremental
index across versions (folder and Hub), and precision/recall against exact Jaccard on a planted corpus."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from datasketch import MinHash, MinHashLSH

from cotforge.schemas.config_dedup import DedupConfig, MinHashConfig
from cotforge.schemas.records import normalize_text
from cotforge.tasks.dedup.cluster import (
    PriorIndex,
    UnionFind,
    cluster_texts,
    dedup_questions,
    dedup_samples,
    signatures_table,
)
from cotforge.tasks.dedup.index import earlier_index, read_indexes, write_index
from cotforge.tasks.dedup.lsh import bands_rows, candidate_pairs, lsh_params, recall_params
from cotforge.tasks.dedup.minhash import fast_hash32, minhash_signatures
from tests.bench.bench_dedup import exact_jaccard_pairs, planted_corpus, shingle_set


def _datasketch_signature(text: str, config: MinHashConfig) -> np.ndarray:
    norm = normalize_text(text)
    if config.shingle == "chars":
        data = norm.encode()
        shingles = [data[i:i + config.shingle_size] for i in range(max(len(data) - config.shingle_size + 1, 1))]
    else:
        words = norm.split(" ") if norm else []
        shingles = [" ".join(words[i:i + config.shingle_size]).encode()
                    for i in range(max(len(words) - config.shingle_size + 1, 1))]
    m = MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=fast_hash32 if config.hash == "fast" else None)
    for s in shingles:
        m.update(s)
    return m.hashvalues


@pytest.mark.parametrize("shingle,size", [("chars", 5), ("chars", 1), ("words", 3), ("words", 1)])
@pytest.mark.parametrize("hash_", ["fast", "sha1"])
def test_signatures_equal_datasketch_minhash(shingle, size, hash_):
    texts = ["Tom has 3 apples and buys 4 more.", "", "ab", "Ünïcode   Café  text, with  SPACES", "one two"]
    config = MinHashConfig(shingle=shingle, shingle_size=size, hash=hash_, num_perm=64, seed=7)
    ours = minhash_signatures(texts, config)
    assert ours.shape == (len(texts), 64) and ours.dtype == np.uint32
    for text, row in zip(texts, ours):
        assert np.array_equal(row, _datasketch_signature(text, config)), text


def test_signatures_span_chunks_and_batches(monkeypatch):
    import cotforge.tasks.dedup.minhash as dedup

    texts = [f"question number {i} " * (i % 40 + 1) for i in range(300)]
    config = MinHashConfig(num_perm=32)
    whole = minhash_signatures(texts, config)
    monkeypatch.setattr(dedup, "_BLOCK_DOCS", 7)  # many permutation blocks, of mixed shingle counts
    monkeypatch.setattr(dedup, "_DOC_BATCH", 13)
    assert np.array_equal(whole, minhash_signatures(texts, config))


def test_lsh_params_match_datasketch_and_report_them():
    for threshold, num_perm in [(0.8, 128), (0.5, 64), (0.9, 256)]:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)  # its public b and r: our optimiser is the same
        assert lsh_params(threshold, num_perm) == (lsh.b, lsh.r)
    # the candidate LSH is tuned for recall: at most 1% of pairs at the threshold missed, as few bands as that allows
    for threshold, num_perm in [(0.8, 128), (0.85, 128), (0.7, 64)]:
        bands, rows = recall_params(threshold, num_perm, 0.01)
        assert bands * rows <= num_perm and (1 - threshold ** rows) ** bands <= 0.01
        assert (1 - threshold ** (rows + 1)) ** (num_perm // (rows + 1)) > 0.01
    assert bands_rows(MinHashConfig()) == (21, 6)
    config = MinHashConfig(bands=16, rows=8)
    result = cluster_texts(["a", "b"], ["x y z", "p q r"], config)
    assert (result.stats["bands"], result.stats["rows"]) == (16, 8)


def test_bad_band_config_names_the_fields():
    with pytest.raises(ValueError, match="bands"):
        MinHashConfig(bands=20, rows=10, num_perm=128)
    with pytest.raises(ValueError, match="bands"):
        MinHashConfig(bands=4)


def test_candidate_pairs_respect_groups():
    config = MinHashConfig(num_perm=64)
    sig = minhash_signatures(["same text here for all"] * 4, config)
    b, r = lsh_params(0.8, 64)
    assert len(candidate_pairs(sig, b, r)) == 6
    grouped = candidate_pairs(sig, b, r, groups=np.array([0, 0, 1, 1]))
    assert sorted(map(tuple, grouped.tolist())) == [(0, 1), (2, 3)]


BASE = "A farmer has 17 sheep and buys 5 more at the market on Tuesday. How many sheep does the farmer have now?"


def test_exact_and_near_duplicates_are_flagged_not_removed():
    texts = [BASE, BASE.upper() + "  ", BASE.replace("Tuesday", "Tuesdays"),
             "A train leaves at 3 pm and travels 60 miles per hour for 2 hours. How far does it go?"]
    ids = ["q0", "q1", "q2", "q3"]
    result = cluster_texts(ids, texts, MinHashConfig(keep=["earliest"]))
    assert result.keep == [True, False, False, True]
    assert result.drop_reason == [None, "exact_duplicate", "near_duplicate", None]
    assert result.cluster_id == ["q0", "q0", "q0", "q3"]
    assert result.similarity[1] == 1.0 and 0.8 <= result.similarity[2] < 1.0
    assert result.stats["similar_pairs"] == 1 and result.stats["kept"] == 2


def test_keep_policy_prefers_verified_then_shortest_then_earliest():
    long_ = BASE + " Answer in words."
    texts = [long_, BASE, BASE + " "]  # the last two are exact duplicates after normalisation
    ids = ["long", "short", "short2"]
    default = cluster_texts(ids, texts, MinHashConfig(threshold=0.7))
    assert default.keep == [False, True, False]  # nobody verified: shortest, then earliest
    verified = cluster_texts(ids, texts, MinHashConfig(threshold=0.7), verified=[True, False, False])
    assert verified.keep == [True, False, False] and verified.cluster_id == ["long"] * 3
    longest = cluster_texts(ids, texts, MinHashConfig(threshold=0.7, keep=["longest"]))
    assert longest.keep == [True, False, False]


def test_contaminated_rows_are_never_kept():
    result = cluster_texts(["a", "b"], [BASE, BASE + "!"], MinHashConfig(keep=["earliest"]),
                           contamination=[["gsm8k"], []])
    assert result.keep == [False, True]
    assert result.drop_reason == ["contaminated:gsm8k", "exact_duplicate"] or result.drop_reason[0] == \
        "contaminated:gsm8k"
    assert result.cluster_id == ["b", "b"]


def test_dedup_questions_table_has_one_flag_per_row():
    questions = pa.table({"question_id": ["a", "b", "c"], "text": [BASE, BASE.lower(), "Something else entirely"]})
    table, _ = dedup_questions(questions, MinHashConfig(), "r", "b", verified={"b": True},
                               contamination={"c": ["mmlu", "gsm8k"]})
    frame = pl.from_arrow(table)
    assert frame["question_id"].to_list() == ["a", "b", "c"]
    assert frame["keep"].to_list() == [False, True, False]
    assert frame["drop_reason"].to_list() == ["exact_duplicate", None, "contaminated:gsm8k"]
    assert frame["contamination"].to_list()[2] == ["gsm8k", "mmlu"]


def test_rationales_dedup_within_their_question_only():
    rationale = ("Step 1: the farmer starts with 17 sheep in the field.\nStep 2: on Tuesday he buys 5 more sheep at the "
                 "market in town.\nStep 3: adding them gives 17 + 5 = 22 sheep in total.\nThe answer is 22.")
    samples = pa.table({
        "sample_id": ["s0", "s1", "s2", "s3"], "question_id": ["q1", "q1", "q2", "q1"],
        "text": [rationale, rationale, rationale, rationale.replace("is 22.", "is 22!")],
    })
    config = DedupConfig().samples
    table, result = dedup_samples(samples, config, "r", "b", verified={"s1": True})
    frame = pl.from_arrow(table)
    assert frame["keep"].to_list() == [False, True, True, False]  # s2 is another question's rationale
    assert frame["drop_reason"].to_list() == ["exact_duplicate", None, None, "near_duplicate"]
    assert frame["cluster_id"].to_list() == ["s1", "s1", "s2", "s1"]
    glob = cluster_texts(["s0", "s2"], [rationale, rationale], config.model_copy(update={"scope": "global"}),
                         groups=["q1", "q2"])
    assert glob.keep == [True, False]


def test_incremental_dedup_against_earlier_version_folder(tmp_path):
    config = MinHashConfig()
    v1 = tmp_path / "v1"
    texts1 = [BASE, "A shop sells 12 pens for 3 dollars each. What do 12 pens cost?"]
    ids1 = ["a", "b"]
    _, result = dedup_questions(pa.table({"question_id": ids1, "text": texts1}), config, "r", "b1")
    write_index(str(v1), "0.1.0", "questions", signatures_table(ids1, None, result.keep, result.signatures, texts1),
                config)
    (version, table, params), = read_indexes(str(v1), "questions")
    assert version == "0.1.0" and table.num_rows == 2 and (params["bands"], params["rows"]) == bands_rows(config)
    assert params["index_format"] == 3 and table.column("text").to_pylist()[0] == normalize_text(BASE)
    v2 = tmp_path / "v2"
    prior = earlier_index(str(v2), "0.2.0", [str(v1)], "questions", config)
    assert prior.ids == ids1
    texts2 = [BASE.replace("17", "17 "), "Brand new question about 9 cats and 4 dogs in the yard today?"]
    _, result2 = dedup_questions(pa.table({"question_id": ["x", "y"], "text": texts2}), config, "r", "b2",
                                      prior=prior)
    assert result2.keep == [False, True]
    assert result2.drop_reason == ["earlier_version", None] and result2.cluster_id[0] == "a"
    # the output folder's own index of other versions counts too, its current version does not
    write_index(str(v2), "0.2.0", "questions", signatures_table(["x", "y"], None, result2.keep, result2.signatures),
                config)
    assert earlier_index(str(v2), "0.2.0", [], "questions", config) is None
    assert earlier_index(str(v2), "0.3.0", [], "questions", config).ids == ["x", "y"]  # dropped rows too
    skipped: list[str] = []
    assert earlier_index(str(v2), "0.3.0", [], "questions", MinHashConfig(num_perm=64), skipped) is None
    assert skipped and "parameters differ" in skipped[0]


def test_index_copied_from_a_shard_in_batches_equals_the_index_written_whole(tmp_path, monkeypatch):
    """The publish stage copies the dedup stage's index shard batch by batch (bounded memory): same rows, columns,
    parameters and metadata as the index written from the whole table, and an earlier-version check reads it."""
    import pyarrow.parquet as pq

    from cotforge.tasks.dedup import index as index_module

    config = MinHashConfig()
    texts = [f"A farmer has {i} cows and buys {i % 7} more at the market. How many cows?" for i in range(40)]
    ids = [f"q{i}" for i in range(40)]
    _, result = dedup_questions(pa.table({"question_id": ids, "text": texts}), config, "r", "b1")
    table = signatures_table(ids, None, result.keep, result.signatures, texts)
    pq.write_table(table, tmp_path / "shard.parquet")
    monkeypatch.setattr(index_module, "INDEX_BATCH_ROWS", 7)  # several batches
    write_index(str(tmp_path / "whole"), "0.1.0", "questions", table, config)
    write_index(str(tmp_path / "batched"), "0.1.0", "questions", pq.ParquetFile(tmp_path / "shard.parquet"), config)
    (_, whole, whole_params), = read_indexes(str(tmp_path / "whole"), "questions")
    (_, batched, batched_params), = read_indexes(str(tmp_path / "batched"), "questions")
    assert pq.ParquetFile(tmp_path / "batched/index/0.1.0/questions.parquet").metadata.num_row_groups > 1
    assert batched.equals(whole) and batched.column_names == whole.column_names and "kept" in batched.column_names
    assert batched_params == whole_params and batched.schema.metadata == whole.schema.metadata
    assert earlier_index(str(tmp_path / "next"), "0.2.0", [str(tmp_path / "batched")], "questions",
                         config).ids == ids


def test_incremental_dedup_from_hub_repo(tmp_path, hub_server):
    """An earlier version published to a Hub repo (real huggingface_hub client, local Hub server via HF_ENDPOINT)."""
    from huggingface_hub import HfApi

    config = MinHashConfig()
    folder = tmp_path / "published"
    write_index(str(folder), "0.1.0", "questions",
                signatures_table(["a"], None, [True], minhash_signatures([BASE], config)), config)
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo("me/ds", repo_type="dataset", exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id="me/ds", repo_type="dataset")
    prior = earlier_index(str(tmp_path / "next"), "0.2.0", ["hf://datasets/me/ds"], "questions", config)
    assert prior is not None and prior.ids == ["a"]
    result = cluster_texts(["b"], [BASE + " "], config, prior=prior)
    assert result.drop_reason == ["earlier_version"] and result.cluster_id == ["a"]


def _should_drop(truth_pairs: set[tuple[int, int]], n: int) -> set[int]:
    uf = UnionFind(n)
    for i, j in truth_pairs:
        uf.union(i, j)
    return {i for pair in truth_pairs for i in pair if uf.find(i) != i}


def test_precision_and_recall_against_exact_jaccard():
    """Rows flagged as duplicates vs rows that should be: those with exact Jaccard >= threshold to another row, less
    the earliest row of each group of such rows (keep policy "earliest"), on the benchmark's corpus.

    MinHash estimates J with a standard error of sqrt(J(1-J)/num_perm) (~0.035 at 0.8 with 128 permutations), so pairs
    right at the threshold fall either way: besides the strict figures, recall is also checked on rows that are
    clearly duplicates (J >= 0.9) and precision on rows clearly not (J < 0.75). The LSH S-curve of datasketch's
    optimal (b=9, r=13) finds a pair of J = 0.85 with probability 1 - (1 - 0.85^13)^9 = 0.69, of J = 0.9 with 0.93."""
    config = MinHashConfig(threshold=0.8, keep=["earliest"])
    texts, _ = planted_corpus(400, seed=3)
    result = cluster_texts([str(i) for i in range(len(texts))], texts, config)
    sets = [shingle_set(t, config) for t in texts]
    dropped = {i for i, keep in enumerate(result.keep) if not keep}
    strict = _should_drop(exact_jaccard_pairs(sets, 0.8), len(texts))
    clear = _should_drop(exact_jaccard_pairs(sets, 0.9), len(texts))
    loose = _should_drop(exact_jaccard_pairs(sets, 0.75), len(texts))
    assert len(clear) > 30  # the corpus really has near-duplicates
    precision, recall = len(dropped & strict) / len(dropped), len(dropped & strict) / len(strict)
    assert precision >= 0.95 and recall >= 0.8, (precision, recall)
    assert len(dropped & loose) / len(dropped) >= 0.99
    assert len(dropped & clear) / len(clear) >= 0.95


def test_prior_signatures_only_match_prior_rows():
    config = MinHashConfig()
    prior = PriorIndex(["p0", "p1"], minhash_signatures([BASE, BASE], config))
    result = cluster_texts(["n"], ["Totally unrelated text about the weather in May."], config, prior=prior)
    assert result.keep == [True] and result.stats["earlier_rows"] == 2


BRIDGE_A = ("A farmer has 17 sheep and buys 8 more at the market on Monday. Then 5 of the sheep wander off into the "
            "hills and 3 come back at night. How many sheep does the farmer have now?")
BRIDGE_B = "Today " + BRIDGE_A[:-8] + " have left?"  # near A
BRIDGE_C = "Now, " + BRIDGE_B[:-3] + " own by Friday evening?"  # near B, not near A


def test_a_question_dropped_through_a_bridge_stays_dropped_in_later_versions(tmp_path):
    """0.1.0 drops B (near A) and C (near B, not near A); its index keeps their signatures, marked dropped, so 0.1.1
    drops C again as an earlier version's instead of publishing it as new."""
    config = MinHashConfig()
    assert cluster_texts(["a", "c"], [BRIDGE_A, BRIDGE_C], config).keep == [True, True], "C is not near A"
    ids, texts = ["a", "b", "c"], [BRIDGE_A, BRIDGE_B, BRIDGE_C]
    _, result = dedup_questions(pa.table({"question_id": ids, "text": texts}), config, "r", "b1")
    assert result.keep == [True, False, False] and result.drop_reason[2] == "near_duplicate"
    folder = tmp_path / "0.1.0"
    write_index(str(folder), "0.1.0", "questions", signatures_table(ids, None, result.keep, result.signatures, texts),
                config)
    (_, table, params), = read_indexes(str(folder), "questions")
    assert params["index_format"] == 3 and table.column("kept").to_pylist() == [True, False, False]
    prior = earlier_index(str(tmp_path / "next"), "0.1.1", [str(folder)], "questions", config)
    assert prior.ids == ids
    later = cluster_texts(["c2", "d"], [BRIDGE_C, "How many legs do 4 spiders and 3 beetles have together?"], config,
                          prior=prior)
    assert later.drop_reason == ["earlier_version", None] and later.cluster_id[0] in ("b", "c")  # both dropped


def test_flags_built_column_wise_equal_the_records_built_row_by_row():
    """Dedup writes its flags as columns (no model object per row: bounded memory at scale, issue 26); the table is
    the one `to_table` makes of the same records, defaults included, and a wrong type or field still fails."""
    import pyarrow as pa

    from cotforge.schemas.arrow import columns_table, to_table
    from cotforge.schemas.records import DedupFlag

    rows = [DedupFlag(question_id="a", cluster_id="a", keep=True, drop_reason=None, recipe_hash="r", build_id="b"),
            DedupFlag(question_id="b", cluster_id="a", keep=False, drop_reason="near_duplicate", similarity=0.9,
                      contamination=["gsm8k"], recipe_hash="r", build_id="b")]
    columns = {name: [getattr(r, name) for r in rows] for name in DedupFlag.model_fields if name != "similarity"}
    columns["similarity"] = [None, 0.9]
    assert columns_table(columns, DedupFlag).equals(to_table(rows, DedupFlag))
    without_defaults = {k: v for k, v in columns.items() if k not in ("similarity", "contamination")}
    assert columns_table(without_defaults, DedupFlag).column("contamination").to_pylist() == [[], []]
    with pytest.raises(ValueError, match="no field"):
        columns_table({**columns, "extra": [1, 2]}, DedupFlag)
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        columns_table({**columns, "keep": ["yes", "no"]}, DedupFlag)
