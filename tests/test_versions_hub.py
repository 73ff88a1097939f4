"""Versions on the Hub (the test server, tests/hub_server.py): each tag a full snapshot, `main` the latest, a new
version carried from a Hub tag on a machine that lacks it, and `cotforge push` of finished local versions
(`pytest -k version`, `-k push`)."""

from __future__ import annotations

import json
import shutil

import datasets  # imported before the hub_server fixture so its endpoint constants get patched
import polars as pl
import pytest
from huggingface_hub import HfApi

from cotforge.flows.build import run_build
from cotforge.flows.cli import main
from cotforge.schemas.recipe import parse_recipe
from cotforge.tasks.publish.pull import cotforge_pull
from cotforge.tasks.publish.write import read_view
from tests.conftest import VERSION_RECIPE, VERSION_RECIPE_2

# 0.2.1, built on another machine: 0.2.0's questions plus 4 new ones.
VERSION_RECIPE_3 = {**VERSION_RECIPE_2, "questions": {"sources": [
    *VERSION_RECIPE_2["questions"]["sources"], {"kind": "family", "family": "number_theory", "n": 4, "difficulty": 2}]}}


def _sampled(out, version: str) -> set[str]:
    manifest = json.loads((out / version / "manifest.json").read_text())
    return set(pl.read_parquet([r["path"] for r in manifest["stages"]["samples"]])["question_id"])


@pytest.mark.slow
def test_versions_on_the_hub_are_full_snapshots_and_main_is_the_latest(hub_server, tmp_path):
    out = tmp_path / "out"
    first = run_build(parse_recipe(VERSION_RECIPE), out=str(out), version="0.1.0", push="org/snap")
    second = run_build(parse_recipe(VERSION_RECIPE_2), out=str(out), version="0.2.0", push="org/snap")
    tags = hub_server.tags("org/snap")
    assert tags == {"0.1.0": first.pushed["commit"], "0.2.0": second.pushed["commit"]}
    main_head = next(b.target_commit for b in HfApi().list_repo_refs("org/snap", repo_type="dataset").branches
                     if b.name == "main")
    assert main_head == tags["0.2.0"]
    files = hub_server.files("org/snap", "0.2.0")
    assert {"index/0.1.0/questions.parquet", "index/0.2.0/questions.parquet"} <= set(files)
    assert not any(f.startswith("_work/") or f == "manifest.json" for f in files)
    cache = str(tmp_path / "datasets")
    for version, result in (("0.1.0", first), ("0.2.0", second)):
        for view, rows in result.views.items():
            local = read_view(str(out / version), view)
            assert local.height == rows
            ds = datasets.load_dataset("org/snap", view, split="train", revision=version, cache_dir=cache)
            assert ds.num_rows == rows, (version, view)
            assert cotforge_pull("org/snap", view, version=version).equals(local), (version, view)
    for view, rows in second.views.items():  # main (no revision): the latest full snapshot, not a delta
        assert rows == first.views[view] + second.new_rows[view]
        assert datasets.load_dataset("org/snap", view, split="train", cache_dir=cache).num_rows == rows, view
    assert cotforge_pull("org/snap", "sft").equals(read_view(str(out / "0.2.0"), "sft"))
    assert not _sampled(out, "0.1.0") & _sampled(out, "0.2.0")

    # Another machine, no local versions: the next version carries the Hub's latest tag.
    other = tmp_path / "other"
    third = run_build(parse_recipe(VERSION_RECIPE_3), out=str(other), push="org/snap")
    assert third.version == "0.2.1" and third.previous == "hf://datasets/org/snap@0.2.0"
    assert third.carried_rows == second.views and sum(third.new_rows.values()) > 0
    for view in second.views:
        pulled = cotforge_pull("org/snap", view, version="0.2.1")
        assert pulled.head(second.views[view]).equals(read_view(str(out / "0.2.0"), view)), view
        assert set(pulled.tail(third.new_rows[view])["added_in"]) <= {"0.2.1"}
    assert _sampled(other, "0.2.1") and not _sampled(other, "0.2.1") & (_sampled(out, "0.1.0") |
                                                                         _sampled(out, "0.2.0"))
    assert hub_server.tags("org/snap").keys() == {"0.1.0", "0.2.0", "0.2.1"}


@pytest.mark.slow
def test_cotforge_push_publishes_finished_versions_without_rebuilding(hub_server, two_versions, tmp_path, capsys):
    out, first, second = two_versions
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(["push", str(out), "org/pushed"]) == 0
    printed = capsys.readouterr().out
    assert "pushed org/pushed version 0.1.0" in printed and "pushed org/pushed version 0.2.0" in printed
    assert hub_server.tags("org/pushed").keys() == {"0.1.0", "0.2.0"}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # nothing rebuilt
    for version, result in (("0.1.0", first), ("0.2.0", second)):
        assert cotforge_pull("org/pushed", "sft", version=version).equals(read_view(str(out / version), "sft"))
    assert main(["push", str(out), "org/pushed"]) == 0
    assert "nothing to push: org/pushed already has every version" in capsys.readouterr().out
    assert main(["push", str(out), "org/pushed", "--version", "0.1.0"]) == 2
    assert "already has version 0.1.0" in capsys.readouterr().err
    # Oldest first: 0.1.0 after 0.2.0 would move `main` back, so it is refused.
    assert main(["push", str(out / "0.2.0"), "org/ordered"]) == 0
    assert main(["push", str(out), "org/ordered", "--version", "0.1.0"]) == 2
    assert "already has version 0.2.0, newer than 0.1.0" in capsys.readouterr().err
    # A version that no longer matches its manifest is never pushed.
    broken = tmp_path / "broken"
    shutil.copytree(out, broken, symlinks=True)
    (broken / "0.1.0" / "sft" / "train-00000.parquet").write_bytes(b"PAR1 not a parquet file")
    assert main(["push", str(broken), "org/broken"]) == 2
    err = capsys.readouterr().err
    assert "does not match its manifest, not pushed" in err and "sft/train-00000.parquet" in err
    assert hub_server.tags("org/broken") == {}
