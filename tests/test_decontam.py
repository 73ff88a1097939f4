"""Decontamination: n-gram overlap and MinHash similarity against evaluation sets, flags with the benchmark name."""

import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cotforge.schemas.config_dedup import DecontamConfig, EvalSetConfig, MinHashConfig
from cotforge.tasks.dedup.cluster import dedup_questions
from cotforge.tasks.dedup.decontam import decontaminate_questions, find_contamination, hit_counts, load_eval_texts

GSM8K = EvalSetConfig(name="gsm8k", path="data/evals/gsm8k_test_300.jsonl")


def test_shipped_gsm8k_subset_loads():
    texts = load_eval_texts(GSM8K)
    assert len(texts) == 300 and texts[0].startswith("Janet")


def test_decontam_finds_pasted_and_paraphrased_benchmark_questions():
    evals = {"gsm8k": load_eval_texts(GSM8K)}
    pasted = "Please solve this: " + evals["gsm8k"][5] + " Show your work."
    edited = evals["gsm8k"][7].replace("?", " today?")
    clean = "A train travels 60 miles per hour for 2 hours. How far does it travel?"
    table = decontaminate_questions(pa.table({"question_id": ["p", "e", "c"], "text": [pasted, edited, clean]}),
                                    evals, DecontamConfig(), "r", "b")
    hits = pl.from_arrow(table)
    assert set(hits["question_id"]) == {"p", "e"}
    assert set(hits.filter(pl.col("question_id") == "p")["method"]) >= {"ngram"}
    assert hits.filter(pl.col("question_id") == "p")["eval_row"][0] == 5
    assert "minhash" in set(hits.filter(pl.col("question_id") == "e")["method"])
    assert hit_counts(table) == {"gsm8k": 2}
    flags, _ = dedup_questions(pa.table({"question_id": ["p", "e", "c"], "text": [pasted, edited, clean]}),
                               MinHashConfig(), "r", "b", contamination={"p": ["gsm8k"], "e": ["gsm8k"]})
    assert pl.from_arrow(flags)["drop_reason"].to_list() == ["contaminated:gsm8k", "contaminated:gsm8k", None]


def test_decontam_ngram_size_and_min_hits_are_configurable():
    evals = {"bench": ["one two three four five six seven eight"]}
    text = ["zero one two three four nine"]
    assert [h["method"] for h in find_contamination(text, evals, DecontamConfig(ngram=4))] == ["ngram"]
    assert find_contamination(text, evals, DecontamConfig(ngram=5)) == []
    assert find_contamination(text, evals, DecontamConfig(ngram=3, min_ngram_hits=3)) == []


def test_decontam_local_parquet_and_bad_path(tmp_path):
    path = tmp_path / "bench.parquet"
    pq.write_table(pa.table({"prompt": ["What is 2 + 2?"], "solution": ["4"]}), path)
    assert load_eval_texts(EvalSetConfig(name="b", path=str(path), text_fields=["prompt", "solution"])) == [
        "What is 2 + 2? 4"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_eval_texts(EvalSetConfig(name="b", path=str(tmp_path / "missing.jsonl")))
    with pytest.raises(ValueError, match="lack field"):
        load_eval_texts(EvalSetConfig(name="b", path=str(path), text_fields=["question"]))
    with pytest.raises(ValueError, match="exactly one"):
        EvalSetConfig(name="b")


def test_decontam_from_hub_dataset(tmp_path, hub_server):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo("evals/mini", repo_type="dataset", exist_ok=True)
    rows = "\n".join(json.dumps({"question": q}) for q in ["How many legs do 3 spiders and 2 cats have together?"])
    api.upload_file(path_or_fileobj=rows.encode(), path_in_repo="test.jsonl", repo_id="evals/mini",
                    repo_type="dataset")
    texts = load_eval_texts(EvalSetConfig(name="mini", hub="evals/mini", split="test"))
    assert texts == ["How many legs do 3 spiders and 2 cats have together?"]
    hits = find_contamination(["how many legs do 3 spiders and 2 cats have together ?"], {"mini": texts},
                              DecontamConfig(ngram=5))
    assert {h["method"] for h in hits} == {"ngram", "minhash"}


@pytest.mark.parametrize("above", [True, False])
def test_decontam_minhash_near_the_threshold_follows_exact_jaccard(above):
    """A pair the MinHash estimate misjudges at the threshold (found by the dedup tests' search) is decided by exact
    Jaccard: flagged when exact >= threshold though the estimate says no, passed when the estimate alone would flag."""
    from tests.test_dedup_exact import _misjudged_pair

    question, bench_text, exact, estimate = _misjudged_pair(above)
    assert (estimate >= 0.8) != (exact >= 0.8)
    config = DecontamConfig(ngram=100, minhash_threshold=0.8, minhash=MinHashConfig(threshold=0.8))  # minhash alone
    hits = find_contamination([question], {"bench": [bench_text]}, config)
    if above:
        assert [(h["method"], h["eval_row"]) for h in hits] == [("minhash", 0)]
        assert hits[0]["score"] == pytest.approx(exact, abs=1e-3)
    else:
        assert hits == []


def test_decontam_question_padded_to_dodge_minhash_is_caught_by_ngrams():
    """A benchmark question buried in ten times its length of filler: too dissimilar for MinHash, not for n-grams."""
    bench = load_eval_texts(GSM8K)[11]
    filler = " ".join(f"word{i}" for i in range(10 * len(bench.split())))
    padded = f"{filler} {bench} {filler}"
    hits = find_contamination([padded], {"gsm8k": [bench]}, DecontamConfig())
    assert [(h["method"], h["eval_row"]) for h in hits] == [("ngram", 0)]
