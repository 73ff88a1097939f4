"""Recipe validation: every bad recipe is an error that names the field and the reason."""

import pytest
import yaml

from cotforge.schemas.recipe import RecipeError, load_recipe, parse_recipe

GOOD = {
    "name": "t",
    "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 3}]},
}


def _error(data) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, origin="r.yaml")
    return str(info.value)


def test_good_recipe_fills_defaults():
    recipe = parse_recipe(GOOD)
    assert recipe.generation.backend == "llamacpp"
    assert recipe.questions.sources[0].difficulty == 1


def test_unknown_top_level_key_is_named():
    message = _error({**GOOD, "genration": {}})
    assert "field 'genration'" in message and "unknown field" in message


def test_unknown_nested_key_is_named():
    message = _error({**GOOD, "generation": {"sampling": {"temprature": 0.5}}})
    assert "generation.sampling.temprature" in message


def test_bad_value_names_field_and_reason():
    message = _error({**GOOD, "generation": {"sampling": {"temperature": 9}}})
    assert "generation.sampling.temperature" in message and "less than or equal to 2" in message


def test_bad_backend_lists_choices():
    message = _error({**GOOD, "generation": {"backend": "gpt5"}})
    assert "generation.backend" in message and "simulated" in message


def test_bad_source_item_is_named_by_position():
    message = _error({"name": "t", "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 0}]}})
    assert "questions.sources.0.n" in message and "greater than 0" in message


def test_missing_required_section():
    assert "field 'questions'" in _error({"name": "t"})


def test_not_a_mapping():
    assert "mapping" in _error(["a", "b"])


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")


def test_hash_ignores_formatting(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text(yaml.safe_dump(GOOD))
    b = tmp_path / "b.yaml"
    b.write_text(yaml.safe_dump({**GOOD, "seed": 0}, default_flow_style=True))  # seed 0 is the default
    assert load_recipe(a).content_hash() == load_recipe(b).content_hash()
    assert load_recipe(a).content_hash() != parse_recipe({**GOOD, "seed": 1}).content_hash()


def test_shipped_recipes_are_valid():
    from tests.conftest import ROOT

    recipes = {path.stem: load_recipe(path) for path in sorted((ROOT / "data" / "recipes").glob("*.yaml"))}
    assert {"demo", "simulated", "families"} <= set(recipes)  # the README's recipes exist and every one validates
    assert all(recipe.name == stem for stem, recipe in recipes.items())


def test_duplicate_yaml_keys_are_refused_naming_the_key(tmp_path):
    """YAML itself lets a repeated key win silently; a recipe refuses it, naming the key and where."""
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nseed: 1\nquestions:\n  sources:\n    - kind: family\n      family: arithmetic\n"
                    "      n: 4\n      n: 40\n")
    with pytest.raises(RecipeError, match=r"dup.yaml: duplicate key 'n' at line 8 \(first at line 7\)"):
        load_recipe(path)
    top = tmp_path / "top.yaml"
    top.write_text("name: a\nseed: 1\nquestions: {sources: [{kind: family, family: arithmetic, n: 4}]}\nseed: 2\n")
    with pytest.raises(RecipeError, match=r"duplicate key 'seed'"):
        load_recipe(top)
