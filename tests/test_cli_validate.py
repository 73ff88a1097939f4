"""`cotforge validate` and `cotforge --version`; every YAML example in README.md is a valid recipe (or section)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cotforge.flows.cli import main
from cotforge.schemas.recipe import parse_recipe

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"name": "readme", "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 2}]}}


def readme_yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_yaml_examples_with_a_whole_recipe():
    blocks = [yaml.safe_load(b) for b in readme_yaml_blocks()]
    assert len(blocks) >= 3 and any("name" in b and "questions" in b for b in blocks)


@pytest.mark.parametrize("block", readme_yaml_blocks(), ids=lambda b: b.split("\n")[0][:40])
def test_readme_yaml_example_validates(block):
    """A whole recipe parses as it is; a section (`verify:`, `runner:` ...) parses inside a minimal recipe."""
    data = yaml.safe_load(block)
    recipe = parse_recipe(data if "name" in data else {**MINIMAL, **data}, origin="README.md")
    for key in data:
        assert getattr(recipe, key) is not None


def test_the_readme_recipe_shares_its_total_by_weight():
    whole = next(yaml.safe_load(b) for b in readme_yaml_blocks() if "name" in yaml.safe_load(b))
    recipe = parse_recipe(whole)
    counts = recipe.questions.source_counts()
    assert sum(c for c, s in zip(counts, recipe.questions.sources) if s.weight is not None) == recipe.questions.total


@pytest.mark.parametrize("name", ["demo", "simulated", "families", "gym"])
def test_validate_prints_the_plan_of_every_shipped_recipe(name, capsys):
    if name == "gym":
        from tests.conftest import require_module

        require_module("reasoning_gym", "the optional extra cotforge[gym]")
    recipe = parse_recipe(yaml.safe_load((ROOT / "data" / "recipes" / f"{name}.yaml").read_text()))
    assert main(["validate", str(ROOT / "data" / "recipes" / f"{name}.yaml")]) == 0
    out = capsys.readouterr().out
    k = recipe.generation.samples_per_question
    total = sum(recipe.questions.source_counts())
    assert f"questions: {total}" in out and f"requests: {total}" in out and f"samples: {total * k}" in out
    assert f"completions at most {total * k * recipe.generation.sampling.max_tokens}" in " ".join(out.split())


def test_validate_names_what_is_wrong(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nquestions: {total: 10, sources: [{kind: family, family: arithmetic, n: 3}]}\n")
    assert main(["validate", str(bad)]) == 2
    assert "none has one" in capsys.readouterr().err
    missing = tmp_path / "missing.yaml"
    missing.write_text("name: x\nquestions: {sources: [{kind: seed, name: s, path: /nonexistent/s.jsonl, n: 3}]}\n")
    assert main(["validate", str(missing)]) == 2
    assert "cannot resolve the sources" in capsys.readouterr().err


def test_validate_samples_nothing_and_version_prints():
    code = ("import sys; from cotforge.flows.cli import main; rc = main(['validate', 'data/recipes/demo.yaml']); "
            "assert rc == 0; assert 'llama_cpp' not in sys.modules, 'validate loaded the model backend'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    version = subprocess.run([sys.executable, "-m", "cotforge.flows.cli", "--version"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    import cotforge

    assert version.returncode == 0 and version.stdout.strip() == f"cotforge {cotforge.__version__}"


def test_validate_warns_of_a_source_that_gives_nothing(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: x\nquestions: {{sources: [{{kind: family, family: arithmetic, n: 3}}, "
                      f"{{kind: seed, name: s, path: {empty}, n: 3}}]}}\n")
    assert main(["validate", str(recipe)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "gives no question (0 rows rejected): the build stops before sampling (exit 3)" in out
