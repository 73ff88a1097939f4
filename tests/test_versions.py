"""Versions are complete, immutable snapshots side by side in one output folder (`pytest -k version`).

0.1.0 and 0.2.0 of a recipe (tests/conftest.py `two_versions`: 0.2.0 has 0.1.0's questions plus new ones): 0.2.0 holds
0.1.0's rows unchanged plus rows for the new questions only, nothing is sampled twice, both versions load with
`datasets.load_dataset` and `cotforge pull`, and a published version is never rewritten.
"""

from __future__ import annotations

import json
import shutil

import datasets
import polars as pl
import pytest
import yaml

from cotforge.flows.build import build
from cotforge.schemas.recipe import parse_recipe
from cotforge.tasks.publish.manifest import check_output, check_version
from cotforge.tasks.publish.pull import cotforge_pull
from cotforge.tasks.publish.versions import VersionExistsError
from cotforge.tasks.publish.write import read_view
from tests.conftest import VERSION_RECIPE, VERSION_RECIPE_2


def _stage(out, version: str, stage: str) -> pl.DataFrame:
    """A stage's rows as the version's manifest lists them."""
    manifest = json.loads((out / version / "manifest.json").read_text())
    return pl.read_parquet([r["path"] for r in manifest["stages"][stage]]) if manifest["stages"][stage] else None


def test_version_is_a_complete_snapshot_that_samples_only_new_questions(two_versions):
    out, first, second = two_versions
    assert first.status == second.status == "published" and second.previous == str(out / "0.1.0")
    assert (out / "latest").resolve() == (out / "0.2.0").resolve()
    assert set(first.views) == set(second.views) and sum(second.new_rows.values()) > 0
    old_questions = set(_stage(out, "0.1.0", "questions")["question_id"])
    for view, rows in first.views.items():
        v1, v2 = read_view(str(out / "0.1.0"), view), read_view(str(out / "0.2.0"), view)
        assert v1.height == rows and second.carried_rows[view] == rows, view
        assert v2.height == rows + second.new_rows[view] == second.views[view], view
        assert v2.head(rows).equals(v1), f"{view}: 0.1.0's rows are carried unchanged, first"
        assert set(v1["added_in"]) <= {"0.1.0"} and v2.tail(second.new_rows[view])["added_in"].to_list() == \
            ["0.2.0"] * second.new_rows[view], view
        assert not set(v2.tail(second.new_rows[view])["question_id"]) & old_questions, view
    # Nothing sampled twice: 0.2.0 sampled exactly the new (linear) questions, 3 samples each.
    sources = _stage(out, "0.2.0", "source_questions")
    new_questions = set(sources.filter(pl.col("source") == "family:linear")["question_id"])
    assert len(new_questions) == 6 and set(sources["question_id"]) - new_questions == old_questions
    sampled_1, sampled_2 = _stage(out, "0.1.0", "samples"), _stage(out, "0.2.0", "samples")
    assert set(sampled_1["question_id"]) == old_questions and set(sampled_2["question_id"]) == new_questions
    assert sampled_2.height == 18 and second.counts["samples"] == 18
    earlier = _stage(out, "0.2.0", "earlier_questions")
    assert set(earlier["question_id"]) == old_questions and (earlier["similarity"] == 1.0).all()
    assert second.counts["questions already in an earlier version (not sampled)"] == 12
    # 0.1.0 is untouched by the 0.2.0 build; 0.2.0 holds the indexes of both versions.
    assert check_version(str(out / "0.1.0"), "0.1.0") == [] and check_output(str(out)).ok
    assert {p.parent.name for p in (out / "0.2.0" / "index").glob("*/questions.parquet")} == {"0.1.0", "0.2.0"}


def test_card_and_report_give_new_and_carried_rows_per_view(two_versions):
    out, first, second = two_versions
    card = (out / "0.2.0" / "README.md").read_text()
    report = (out / "0.2.0" / "report" / "report.md").read_text()
    assert "| config | schema version | format | rows | new in 0.2.0 | carried | use |" in card
    for view, rows in second.views.items():
        new, carried = second.new_rows[view], second.carried_rows[view]
        assert f"| `{view}` | " in card and f"| {rows} | {new} | {carried} | " in card, view
        assert f"| {view} | " in report and f"| {rows} | {new} | {carried} |" in report, view
    assert f"**previous version**: {out / '0.1.0'}" in card
    counts = json.loads((out / "0.2.0" / "report" / "report.json").read_text())["counts"]
    assert counts["rows carried in view sft"] == first.views["sft"] and counts["rows new in view sft"] > 0


def test_every_version_loads_with_load_dataset_and_cotforge_pull(two_versions, tmp_path, capsys):
    from cotforge.flows.cli import main

    out, first, second = two_versions
    cache = str(tmp_path / "datasets")
    for folder, result in (("0.1.0", first), ("0.2.0", second)):
        for view, rows in result.views.items():
            ds = datasets.load_dataset(str(out / folder), view, split="train", cache_dir=cache)
            assert ds.num_rows == rows, (folder, view)
            assert cotforge_pull(str(out), view, version=folder).equals(read_view(str(out / folder), view))
    latest = datasets.load_dataset(str(out / "latest"), "sft", split="train", cache_dir=cache)
    assert latest.num_rows == second.views["sft"] and set(latest["added_in"]) == {"0.1.0", "0.2.0"}

    def pulled(*args: str) -> int:
        target = tmp_path / "pulled" / "_".join(a.replace("/", "_") for a in args)
        assert main(["pull", *args, "--config", "sft", "--out", str(target)]) == 0
        return pl.read_parquet(target / "sft.parquet").height

    assert pulled(str(out), "--version", "0.1.0") == first.views["sft"]
    assert pulled(str(out), "--version", "0.2.0") == pulled(str(out)) == second.views["sft"]
    assert pulled(str(out / "0.1.0")) == first.views["sft"] and pulled(str(out / "latest")) == second.views["sft"]
    assert main(["pull", str(out), "--config", "sft", "--version", "9.9.9"]) == 2
    assert "no version 9.9.9; it has 0.1.0, 0.2.0" in capsys.readouterr().err


def _files(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_published_version_is_never_rewritten(two_versions, tmp_path, capsys):
    from cotforge.flows.cli import main

    source, first, _ = two_versions
    out = tmp_path / "out"
    shutil.copytree(source, out, symlinks=True)
    v1, work = _files(out / "0.1.0"), _files(out / "_work")
    # The same content again: nothing to do, nothing written.
    again = build(parse_recipe(VERSION_RECIPE), out=str(out), version="0.1.0")
    assert again.status == "unchanged" and again.views == first.views
    assert _files(out / "0.1.0") == v1 and _files(out / "_work") == work
    # Other content under a published version number: refused, naming what differs and the version to use.
    with pytest.raises(VersionExistsError) as refused:
        build(parse_recipe(VERSION_RECIPE_2), out=str(out), version="0.1.0")
    message = str(refused.value)
    assert "already has version 0.1.0 with other content" in message and "--version 0.2.1" in message
    assert f"sft: published {first.views['sft']} rows, this build " in message
    assert _files(out / "0.1.0") == v1 and check_output(str(out)).ok
    assert not (out / "_work" / "publish" / "0.1.0").exists()  # the staged copy is gone
    # A new version below the latest: refused before any work.
    work = _files(out / "_work")
    with pytest.raises(VersionExistsError, match="0.2.0 is already published, newer than 0.0.9"):
        build(parse_recipe(VERSION_RECIPE), out=str(out), version="0.0.9")
    assert _files(out / "_work") == work and not (out / "0.0.9").exists()
    # The CLI: without --version a re-run targets the latest version, and says there is nothing to do.
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(VERSION_RECIPE_2))
    assert main(["build", str(recipe), "--out", str(out)]) == 0
    assert "version 0.2.0 is already published" in capsys.readouterr().out
    recipe.write_text(yaml.safe_dump(VERSION_RECIPE))
    assert main(["build", str(recipe), "--out", str(out), "--version", "0.2.0"]) == 2
    assert "already has version 0.2.0 with other content" in " ".join(capsys.readouterr().err.split())
    assert (out / "latest").resolve() == (out / "0.2.0").resolve() and sorted(
        p.name for p in out.iterdir() if p.name[0].isdigit()) == ["0.1.0", "0.2.0"]
