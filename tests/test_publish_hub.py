"""Publishing a build to a Hub-compatible server with the real huggingface_hub client, and pulling it back."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets  # imported before the hub_server fixture so its endpoint constants get patched
import pytest
from huggingface_hub import HfApi

from cotforge.schemas.recipe import parse_recipe
from cotforge.tasks.publish.hub import push_folder
from cotforge.tasks.publish.pull import cotforge_pull
from cotforge.tasks.publish.retry import RetryPolicy
from cotforge.tasks.publish.versions import VersionExistsError, next_version
from cotforge.tasks.publish.write import read_view
from tests.hub_server import hub_environment

FAST = RetryPolicy(retries=3, base_wait=0.01, max_wait=0.05)


def small_recipe(name: str = "hubtest", n: int = 12, seed: int = 5, **extra):
    data = {"name": name, "seed": seed, "shard_size": 6,
            "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": n, "difficulty": 2}]},
            "generation": {"backend": "simulated", "samples_per_question": 4}, **extra}
    return parse_recipe(data)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> str:
    """The version folder OUT/0.1.0 of a small build (what a push publishes)."""
    from cotforge.flows.build import run_build

    out = str(tmp_path_factory.mktemp("built") / "hubtest")
    result = run_build(small_recipe(), out=out, version="0.1.0")
    assert sum(result.views.values()) > 0
    return result.folder


def _views(folder: str) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.is_dir() and list(p.glob("*.parquet"))
                  and p.name not in ("index", "_work", "report"))


@pytest.mark.slow
def test_push_is_one_commit_with_a_tag_and_pulls_back(hub_server, built):
    result = push_folder(built, "org/reasoning", "0.1.0", private=True, retry=FAST)
    api = HfApi()
    refs = api.list_repo_refs("org/reasoning", repo_type="dataset")
    assert {t.name: t.target_commit for t in refs.tags} == {"0.1.0": result.commit}
    commits = api.list_repo_commits("org/reasoning", repo_type="dataset")
    assert len(commits) == 2  # the repo's initial commit and this build's single commit
    assert api.dataset_info("org/reasoning").private is True
    files = hub_server.files("org/reasoning", "0.1.0")
    views = _views(built)
    assert views and all(any(f.startswith(f"{v}/") for f in files) for v in views)
    assert {"README.md", "report/report.md", "report/pass_rate.png"} <= set(files)
    assert not any(f.startswith("_work/") or f == "manifest.json" for f in files)
    card = files["README.md"].decode()
    assert 'load_dataset("org/reasoning", "sft", split="train", revision="0.1.0")' in card

    for view in views:  # the Python pull returns the same rows as the local folder, schema-checked
        pulled = cotforge_pull("org/reasoning", view, version="0.1.0")
        assert pulled.equals(read_view(built, view))
    assert cotforge_pull("org/reasoning", "sft").height == read_view(built, "sft").height  # latest version
    assert next_version("org/reasoning") == "0.1.1"
    with pytest.raises(FileNotFoundError, match="no version 9.9.9"):
        cotforge_pull("org/reasoning", "sft", version="9.9.9")
    with pytest.raises(FileNotFoundError, match="no view 'nope'"):
        cotforge_pull("org/reasoning", "nope")


@pytest.mark.slow
def test_load_dataset_reads_every_view_of_the_pushed_repo(hub_server, built, tmp_path):
    push_folder(built, "org/loadable", "0.1.0", retry=FAST)
    for view in _views(built):
        ds = datasets.load_dataset("org/loadable", view, split="train", revision="0.1.0",
                                   cache_dir=str(tmp_path / "datasets"))
        assert ds.num_rows == read_view(built, view).height, view


@pytest.mark.slow
def test_republishing_a_version_is_refused_and_the_tag_never_moves(hub_server, built):
    first = push_folder(built, "org/immutable", "0.1.0", retry=FAST)
    with pytest.raises(VersionExistsError, match="already has version 0.1.0"):
        push_folder(built, "org/immutable", "0.1.0", retry=FAST)
    second = push_folder(built, "org/immutable", "0.1.1", retry=FAST)
    assert hub_server.tags("org/immutable") == {"0.1.0": first.commit, "0.1.1": second.commit}


@pytest.mark.slow
def test_retries_with_backoff_on_429_and_5xx(hub_server, built):
    hub_server.fail_on = {"commit": [503, 429], "create_repo": [502], "tag": [500]}
    result = push_folder(built, "org/flaky", "0.1.0", retry=FAST)
    statuses = [s for _, path, s in hub_server.calls("/commit/main", "POST")]
    assert statuses == [503, 429, 200]
    assert [s for _, _, s in hub_server.calls("/tag/", "POST")] == [500, 200]
    assert hub_server.tags("org/flaky") == {"0.1.0": result.commit}


@pytest.mark.slow
def test_upload_failing_half_way_leaves_no_version_and_resumes(hub_server, built):
    from tests.hub_server import LFS_SUFFIXES

    lfs = [p for p in Path(built).rglob("*") if p.suffix in LFS_SUFFIXES and "_work" not in p.parts]
    total = sum(p.stat().st_size for p in lfs)  # what goes through LFS (Parquet views, indexes, plots)
    hub_server.fail_after_bytes = total // 2
    with pytest.raises(Exception) as error:
        push_folder(built, "org/resumable", "0.1.0", retry=RetryPolicy(retries=1, base_wait=0.01))
    assert "507" in str(error.value) or "upload" in str(error.value).lower()
    assert hub_server.tags("org/resumable") == {}  # no tag: no partial version
    assert set(hub_server.files("org/resumable")) == {".gitattributes"}  # no commit with a part of the files
    uploaded_before = len([c for c in hub_server.calls("/lfs-objects/", "PUT") if c[2] == 200])
    assert 0 < uploaded_before < len(lfs)

    hub_server.heal()
    received = hub_server.bytes_received
    result = push_folder(built, "org/resumable", "0.1.0", retry=FAST)
    assert hub_server.tags("org/resumable") == {"0.1.0": result.commit}
    # Resumed: objects stored before the failure were not sent again.
    assert hub_server.bytes_received - received < total
    assert cotforge_pull("org/resumable", "sft", "0.1.0").equals(read_view(built, "sft"))


@pytest.mark.slow
def test_pull_works_offline_once_cached(hub_server, built, tmp_path):
    push_folder(built, "org/offline", "0.1.0", retry=FAST)
    online = cotforge_pull("org/offline", "sft", "0.1.0")
    cache = tmp_path / "hf-cache"  # the fixture's cache folder
    hub_server.stop()  # the Hub is gone
    with hub_environment("http://127.0.0.1:9", None, cache, offline=True):
        assert cotforge_pull("org/offline", "sft", "0.1.0").equals(online)
        assert cotforge_pull("org/offline", "sft").equals(online)  # latest cached version
        with pytest.raises(Exception):
            cotforge_pull("org/offline", "prm", "0.1.0")  # never downloaded: not in the cache


@pytest.mark.slow
def test_token_never_reaches_card_logs_or_parquet(hub_server, built, caplog):
    caplog.set_level(logging.DEBUG)
    hub_server.fail_on = {"commit": [503]}  # a retry path that logs
    push_folder(built, "org/secret", "0.1.0", retry=FAST)
    token = hub_server.token.encode()
    assert "retry 1/3" in caplog.text
    assert token.decode() not in caplog.text
    for path, content in hub_server.files("org/secret").items():
        assert token not in content, path
    for path in Path(built).parent.rglob("*"):  # the whole output folder, stage shards included
        if path.is_file():
            assert token not in path.read_bytes(), path


def test_card_has_every_section():
    from cotforge.tasks.publish.card import card_text
    from cotforge.tasks.publish.write import PublishedView

    views = [PublishedView("sft", "1.0.0", 10, ("sft/train-00000.parquet",), format="conversational"),
             PublishedView("prm", "1.0.0", 4, ("prm/train-00000.parquet",))]
    counts = {"questions generated": 5, "samples": 20, "samples verified correct": 12,
              "questions with a majority answer": 5, "questions kept after dedup": 4,
              "questions dropped as duplicates": 1, "contaminated:gsm8k": 2}
    card = card_text("demo", "0.2.0", "", "mit", "name: demo\n", views, counts,
                     {"generator": "simulated / x", "sampling": "{}", "verifiers": "math"}, repo="org/demo")
    for needle in ("config_name: sft", "config_name: prm", "| `sft` | 1.0.0 | conversational | 10 |",
                   "### Training format", "generated → verified → voted",
                   "| published | 14 |", "| deduplicated | 4 |", "contaminated:gsm8k | 2", "## Lineage",
                   "**generator**: simulated / x", "![pass_rate.png](report/pass_rate.png)", "## License\n\nmit",
                   'load_dataset("org/demo", "prm", split="train", revision="0.2.0")',
                   "cotforge pull org/demo --config sft --version 0.2.0", "name: demo"):
        assert needle in card, needle
    assert "No evaluation set" in card_text("d", "0.1.0", "", "mit", "", views, {}, {})
