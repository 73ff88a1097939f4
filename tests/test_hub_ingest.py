"""Seed datasets from the Hub: the real `huggingface_hub` client against the local Hub-compatible server
(tests/hub_server.py), selecting files by the card's configs, by the usual layout, by revision, and through a build's
questions stage."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cotforge.schemas.config_questions import HubDatasetConfig, QuestionsConfig, SeedSourceConfig
from cotforge.tasks.questions.seed_files import hub_seed_files
from cotforge.tasks.questions.seeds import seed_questions
from cotforge.tasks.questions.stage import collect_sources

ROOT = Path(__file__).resolve().parents[1]
GSM8K_ROWS = [json.loads(line) for line in (ROOT / "data/seeds/gsm8k_train_200.jsonl").read_text().splitlines()[:6]]

CARD = """---
configs:
- config_name: main
  data_files:
  - split: train
    path: main/train-*.parquet
  - split: test
    path: main/test-*.parquet
- config_name: socratic
  data_files:
  - split: train
    path: socratic/train-*.parquet
---
# a GSM8K-shaped test dataset
"""


def _parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


@pytest.fixture
def gsm8k_repo(hub_server):
    """A dataset repo shaped like openai/gsm8k: two configs, parquet per split, a malformed row in main/train."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi()
    repo = "cotforge-test/gsm8k-mini"
    api.create_repo(repo, repo_type="dataset")
    broken = {"question": "A row whose answer lost its marker?", "answer": "It is 12."}
    operations = [
        CommitOperationAdd("README.md", CARD.encode()),
        CommitOperationAdd("main/train-00000-of-00001.parquet", _parquet(GSM8K_ROWS[:4] + [broken])),
        CommitOperationAdd("main/test-00000-of-00001.parquet", _parquet(GSM8K_ROWS[4:6])),
        CommitOperationAdd("socratic/train-00000-of-00001.parquet", _parquet(GSM8K_ROWS[:2])),
    ]
    first = api.create_commit(repo, operations, commit_message="v1", repo_type="dataset")
    api.create_commit(repo, [CommitOperationAdd("main/test-00000-of-00001.parquet", _parquet(GSM8K_ROWS[4:5]))],
                      commit_message="v2: shorter test split", repo_type="dataset")
    return repo, first.oid


def test_hub_seed_reads_config_split_via_card_and_reports_bad_rows(gsm8k_repo):
    repo, _ = gsm8k_repo
    source = SeedSourceConfig(name="gsm8k", hub=HubDatasetConfig(repo=repo, config="main", split="train"),
                              answer_format="gsm8k")
    questions, rejected = seed_questions(source, None, 0, "r", "b")
    assert [q.gold_answer for q in questions] == [r["answer"].rsplit("#### ", 1)[1] for r in GSM8K_ROWS[:4]]
    assert [(r.row, r.reason) for r in rejected] == [(4, "no_gsm8k_marker")]
    metadata = json.loads(questions[0].metadata_json)["seed"]
    assert metadata["dataset"].startswith(f"{repo}@") and len(metadata["dataset"].split("@")[1]) == 40


def test_hub_seed_revision_pins_the_data(gsm8k_repo):
    repo, first_commit = gsm8k_repo
    latest = SeedSourceConfig(name="g", hub=HubDatasetConfig(repo=repo, config="main", split="test"))
    pinned = SeedSourceConfig(name="g", hub=HubDatasetConfig(repo=repo, config="main", split="test",
                                                           revision=first_commit))
    assert len(seed_questions(latest, None, 0, "r", "b")[0]) == 1
    assert len(seed_questions(pinned, None, 0, "r", "b")[0]) == 2


def test_hub_seed_other_config_and_explicit_data_files(gsm8k_repo):
    repo, _ = gsm8k_repo
    paths, dataset = hub_seed_files(HubDatasetConfig(repo=repo, config="socratic", split="train"))
    assert len(paths) == 1 and paths[0].endswith("socratic/train-00000-of-00001.parquet")
    explicit = SeedSourceConfig(name="g", hub=HubDatasetConfig(repo=repo, data_files=["main/test-*.parquet"]))
    assert len(seed_questions(explicit, None, 0, "r", "b")[0]) == 1


def test_hub_seed_without_card_uses_usual_layout_and_missing_split_is_clear(hub_server):
    from huggingface_hub import HfApi

    api = HfApi()
    repo = "cotforge-test/plain-layout"
    api.create_repo(repo, repo_type="dataset")
    rows = "\n".join(json.dumps(r) for r in GSM8K_ROWS[:3]).encode()
    api.upload_file(path_or_fileobj=rows, path_in_repo="data/train.jsonl", repo_id=repo, repo_type="dataset")
    source = SeedSourceConfig(name="plain", hub=HubDatasetConfig(repo=repo), answer_format="gsm8k")
    assert len(seed_questions(source, None, 0, "r", "b")[0]) == 3
    with pytest.raises(FileNotFoundError, match="no data files for config None, split 'validation'"):
        hub_seed_files(HubDatasetConfig(repo=repo, split="validation"))


def test_hub_seed_mixed_with_a_family_by_weight(gsm8k_repo):
    repo, _ = gsm8k_repo
    config = QuestionsConfig(total=6, sources=[
        {"kind": "family", "family": "arithmetic", "weight": 1},
        {"kind": "seed", "name": "gsm8k", "hub": {"repo": repo, "config": "main"}, "answer_format": "gsm8k",
         "weight": 1},
    ])
    collected = collect_sources(config, 0, "r", "b")
    sources = [q.source for q in collected.questions]
    assert sources.count("family:arithmetic") == 3 and sources.count("seed:gsm8k") == 3
    assert [r.reason for r in collected.rejected] == ["no_gsm8k_marker"]
