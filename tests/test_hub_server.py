"""The test Hub server works with the real huggingface_hub client and with datasets.load_dataset."""

from __future__ import annotations

import polars as pl
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from tests.conftest import require_module

CARD = """---
configs:
- config_name: sft
  data_files:
  - split: train
    path: sft/*.parquet
- config_name: prm
  data_files:
  - split: train
    path: prm/*.parquet
---
# test dataset
"""


def _push(api: HfApi, repo: str, tmp_path, rows: int = 50) -> str:
    sft, prm = tmp_path / "sft.parquet", tmp_path / "prm.parquet"
    pl.DataFrame({"prompt": [f"q{i}" for i in range(rows)], "completion": [str(i) for i in range(rows)]}).write_parquet(sft)
    pl.DataFrame({"prompt": ["p"] * 3, "labels": [[True, False]] * 3}).write_parquet(prm)
    info = api.create_commit(repo, repo_type="dataset", commit_message="build", operations=[
        CommitOperationAdd("README.md", CARD.encode()),
        CommitOperationAdd("sft/train-00000.parquet", str(sft)),
        CommitOperationAdd("prm/train-00000.parquet", str(prm)),
    ])
    return info.oid


def test_roundtrip_regular_and_lfs_files_tags_and_revisions(hub_server, tmp_path):
    api = HfApi()  # endpoint and token come from HF_ENDPOINT / HF_TOKEN
    assert api.whoami()["name"] == "cotforge-test"
    api.create_repo("org/data", repo_type="dataset", private=True)
    first = _push(api, "org/data", tmp_path, rows=50)
    api.create_tag("org/data", tag="0.1.0", repo_type="dataset")
    second = _push(api, "org/data", tmp_path, rows=70)
    assert first != second

    # README went as a regular (base64) file, the Parquet files through LFS batch + PUT.
    assert hub_server.calls("/info/lfs/objects/batch", "POST")
    assert len(hub_server.calls("/lfs-objects/", "PUT")) == 3  # 2 in the first build, only the changed sft later
    siblings = {s.rfilename: s for s in api.dataset_info("org/data").siblings}
    assert siblings["README.md"].lfs is None and siblings["sft/train-00000.parquet"].lfs is not None

    # Tags are created once and never moved.
    with pytest.raises(HfHubHTTPError) as error:
        api.create_tag("org/data", tag="0.1.0", repo_type="dataset")
    assert error.value.response.status_code == 409
    with pytest.raises(HfHubHTTPError):
        api.delete_tag("org/data", tag="0.1.0", repo_type="dataset")
    refs = api.list_repo_refs("org/data", repo_type="dataset")
    assert {t.name: t.target_commit for t in refs.tags} == {"0.1.0": first}
    assert refs.branches[0].target_commit == second

    # Downloads by tag, commit sha and branch see the right contents.
    for revision, rows in (("0.1.0", 50), (first, 50), (second, 70), ("main", 70)):
        path = hf_hub_download("org/data", "sft/train-00000.parquet", repo_type="dataset", revision=revision)
        assert pl.read_parquet(path).height == rows
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/data", "README.md", repo_type="dataset", revision="9.9.9")
    tree = {f.path for f in api.list_repo_tree("org/data", repo_type="dataset", recursive=True, revision="0.1.0")}
    assert {"README.md", "sft/train-00000.parquet", "prm/train-00000.parquet", "sft"} <= tree

    # A private repo is invisible without the token.
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).dataset_info("org/data")


def test_load_dataset_reads_each_config(hub_server, tmp_path):
    datasets = require_module("datasets", "the hub extra")
    api = HfApi()
    api.create_repo("org/views", repo_type="dataset")
    _push(api, "org/views", tmp_path, rows=12)
    api.create_tag("org/views", tag="1.0.0", repo_type="dataset")
    sft = datasets.load_dataset("org/views", "sft", split="train", revision="1.0.0", cache_dir=str(tmp_path / "d"))
    prm = datasets.load_dataset("org/views", "prm", split="train", revision="1.0.0", cache_dir=str(tmp_path / "d"))
    assert sft.num_rows == 12 and sft.column_names == ["prompt", "completion"]
    assert prm.num_rows == 3 and prm[0]["labels"] == [True, False]


def test_injected_failures(hub_server, tmp_path):
    api = HfApi()
    api.create_repo("org/flaky", repo_type="dataset")
    hub_server.fail_on = {"commit": [503]}
    with pytest.raises(HfHubHTTPError) as error:
        _push(api, "org/flaky", tmp_path)
    assert error.value.response.status_code == 503
    _push(api, "org/flaky", tmp_path)  # the queue is used up: the next commit goes through

    hub_server.fail_after_bytes = hub_server.bytes_received + 100
    pl.DataFrame({"x": list(range(1000))}).write_parquet(tmp_path / "big.parquet")
    with pytest.raises(Exception):
        api.upload_file(path_or_fileobj=str(tmp_path / "big.parquet"), path_in_repo="big.parquet",
                        repo_id="org/flaky", repo_type="dataset")
    assert "big.parquet" not in hub_server.files("org/flaky")  # no commit references a half-uploaded object
    hub_server.heal()
    api.upload_file(path_or_fileobj=str(tmp_path / "big.parquet"), path_in_repo="big.parquet",
                    repo_id="org/flaky", repo_type="dataset")
    assert "big.parquet" in hub_server.files("org/flaky")
