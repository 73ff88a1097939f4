"""`cotforge export`: each trainer's files are written from a published version (checked against its manifest),
never into it, with the views' row counts; verl's reward function gives the build's verdict on every published
generation and nothing to answers that break the answer rules. The trainers' own loaders read these files in
tests/test_export_trainers.py."""

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from cotforge.flows.cli import main
from cotforge.tasks.export.stage import EXPORTERS, export_version
from cotforge.tasks.export.verl import compute_score
from cotforge.tasks.publish.manifest import CorruptVersionError, check_output, read_manifest
from cotforge.tasks.publish.write import read_view

# file -> the view whose rows it holds, per trainer
EXPECTED = {
    "verl": {"rl.parquet": "rlvr", "sft.parquet": "sft"},
    "llamafactory": {"sft.jsonl": "sft", "preference.jsonl": "preference", "kto.jsonl": "unpaired"},
    "axolotl": {"sft.jsonl": "sft", "dpo.jsonl": "preference", "kto.jsonl": "unpaired", "prm.jsonl": "prm"},
    "openrlhf": {"sft.jsonl": "sft", "preference.jsonl": "preference", "rl.jsonl": "rlvr"},
}


def _rows_in(path) -> int:
    if path.suffix == ".parquet":
        return pl.read_parquet(path).height
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def _tree(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("trainer", sorted(EXPORTERS))
def test_export_writes_each_view_beside_the_version_and_leaves_the_version_unchanged(export_builds, trainer):
    out = export_builds["math"]
    before = _tree(out / "0.1.0")
    result = export_version(str(out), trainer)
    dest = out / "_exports" / "0.1.0" / trainer
    assert result.dest == str(dest) and result.version == "0.1.0"
    views = read_manifest(str(out / "0.1.0"))["views"]
    for name, view in EXPECTED[trainer].items():
        assert views[view]["rows"] > 0
        assert _rows_in(dest / name) == views[view]["rows"] == result.files[name], (trainer, name)
        assert result.views[name] == view
    about = json.loads((dest / "export.json").read_text())
    assert about["version"] == "0.1.0" and about["build_id"] == read_manifest(str(out / "0.1.0"))["build_id"]
    assert result.commands and all(str(dest) in command for command in result.commands.values())
    assert _tree(out / "0.1.0") == before and check_output(str(out)).ok  # the version is untouched


def test_export_files_keep_the_rows_and_rationales(export_builds):
    """Spot checks of the formats: verl's RL columns, `<think>` for LLaMA-Factory, `reasoning_content` for axolotl."""
    out = export_builds["math"]
    sft = read_view(str(out / "0.1.0"), "sft")
    rlvr = read_view(str(out / "0.1.0"), "rlvr")
    verl = pl.read_parquet(export_version(str(out), "verl").dest + "/rl.parquet")
    assert verl.columns == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    first = verl.row(0, named=True)
    assert first["reward_model"] == {"style": "rule", "ground_truth": rlvr["solution"][0]}
    assert first["prompt"] == rlvr["prompt"].to_list()[0] and first["data_source"] == "cotforge/" + rlvr["source"][0]
    assert first["extra_info"]["question_id"] == rlvr["question_id"][0] and first["extra_info"]["index"] == 0
    assert json.loads(first["extra_info"]["verifier_spec"])["verifier"] == "math"
    lf_dest = Path(export_version(str(out), "llamafactory").dest)
    ax_dest = Path(export_version(str(out), "axolotl").dest)
    lf = [json.loads(line) for line in (lf_dest / "sft.jsonl").read_text().splitlines()]
    ax = [json.loads(line) for line in (ax_dest / "sft.jsonl").read_text().splitlines()]
    for row, lf_row, ax_row in zip(sft.iter_rows(named=True), lf, ax):
        assert lf_row["messages"][:-1] == row["prompt"]
        assert lf_row["messages"][-1]["content"] == f"<think>\n{row['reasoning']}\n</think>\n\n{row['final_answer']}"
        assert ax_row["messages"][-1] == {"role": "assistant", "content": row["final_answer"],
                                          "reasoning_content": row["reasoning"]}
    info = json.loads((lf_dest / "dataset_info.json").read_text())
    assert info["cotforge_preference"]["ranking"] is True
    assert info["cotforge_kto"]["columns"]["kto_tag"] == "label"


def test_export_refuses_a_destination_inside_a_version_and_a_version_that_fails_its_manifest(export_builds,
                                                                                            tmp_path):
    out = tmp_path / "out"
    shutil.copytree(export_builds["math"], out, symlinks=True)
    for inside in (out / "0.1.0" / "exports", out / "latest" / "x", out / "0.1.0"):
        with pytest.raises(ValueError, match="inside the published version folder"):
            export_version(str(out), "verl", dest=str(inside))
    assert check_output(str(out)).ok
    with pytest.raises(FileNotFoundError, match="no version 9.9.9"):
        export_version(str(out), "verl", version="9.9.9")
    with pytest.raises(ValueError, match="unknown trainer"):
        export_version(str(out), "megatron")
    shard = next((out / "0.1.0" / "rlvr").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-20] + b"\0" * 20)  # a corrupted file: nothing is exported from it
    with pytest.raises(CorruptVersionError, match="rlvr/"):
        export_version(str(out), "verl", dest=str(tmp_path / "verl"))
    assert not (tmp_path / "verl").exists()


def test_export_cli_prints_the_command_and_the_card_names_every_export(export_builds, tmp_path, capsys):
    out = export_builds["math"]
    assert main(["export", str(out / "0.1.0"), "--to", "verl", "--dest", str(tmp_path / "v")]) == 0
    printed = capsys.readouterr().out
    assert f"reward.custom_reward_function.path={tmp_path / 'v'}/reward.py" in printed
    assert "python -m verl.trainer.main_ppo" in printed and "rl.parquet: " in printed
    assert main(["export", str(out), "--to", "openrlhf", "--dest", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "--data.input_key prompt --data.output_key completion" in printed
    assert (tmp_path / "o" / "sft.flags").read_text().startswith(f"--data.dataset {tmp_path / 'o'}/sft.jsonl ")
    assert main(["export", str(out), "--to", "verl", "--dest", str(out / "0.1.0" / "x")]) == 2
    assert "inside the published version folder" in capsys.readouterr().err
    card = (out / "0.1.0" / "README.md").read_text()
    for trainer in EXPORTERS:
        assert f"cotforge export OUT --to {trainer} --version 0.1.0" in card


def _generations_with_rl_rows(out):
    """(verl RL row, generation text, published verdict) for every generation of every RL prompt."""
    rl = pl.read_parquet(export_version(str(out), "verl").dest + "/rl.parquet")
    generations = {r["question_id"]: r for r in read_view(str(out / "0.1.0"), "generations").iter_rows(named=True)}
    rows = []
    for row in rl.iter_rows(named=True):
        published = generations[row["extra_info"]["question_id"]]
        rows += [(row, text, verdict) for text, verdict in zip(published["generations"], published["correctness"])]
    return rows, generations


@pytest.mark.parametrize("kind", ["math", "gym"])
def test_verl_reward_is_the_build_verdict_on_every_published_generation(export_builds, kind):
    rows, generations = _generations_with_rl_rows(export_builds[kind])
    # The band [0, 1] makes every question with a generation an RL prompt: every published generation is checked.
    assert len(rows) == sum(len(g["generations"]) for g in generations.values())
    rewards = [compute_score(row["data_source"], text, row["reward_model"]["ground_truth"], row["extra_info"])
               for row, text, _ in rows]
    assert rewards == [1.0 if verdict is True else 0.0 for _, _, verdict in rows]
    assert 0 < sum(rewards) < len(rewards)  # both rewards occur


def _cheats(kind: str, gold: str) -> list[str]:
    """Answers that must earn nothing: a second answer after the right one, the right one only inside <think>."""
    if kind == "gym":
        return [f"<answer>{gold}</answer>\n<answer>{gold}1</answer>",
                f"<answer>{gold}1</answer>\n<answer>{gold}</answer>\n<answer>{gold}1</answer>",
                f"<think><answer>{gold}</answer></think>\nNo idea.",
                f"<think>The answer is {gold}.</think>", f"<answer>{gold} or {gold}1</answer>"]
    return [f"The answer is {gold}.\nThe answer is {gold}1.", f"The answer is {gold}.\nFinal Answer: {gold}1",
            f"\\boxed{{{gold}}}\n\\boxed{{{gold}1}}", f"<think>So the answer is {gold}.</think>\nI could not finish.",
            f"<think>The answer is {gold}.</think>", f"<think>\\boxed{{{gold}}}</think>\nThe answer is {gold}1."]


@pytest.mark.parametrize("kind", ["math", "gym"])
def test_verl_reward_gives_nothing_to_answers_that_break_the_answer_rules(export_builds, kind):
    rows, _ = _generations_with_rl_rows(export_builds[kind])
    scored = 0
    for row, _, _ in {r[0]["extra_info"]["question_id"]: r for r in rows}.values():
        gold = row["reward_model"]["ground_truth"]
        honest = f"<answer>{gold}</answer>" if kind == "gym" else f"Adding up.\nThe answer is {gold}."
        args = (row["data_source"], honest, gold, row["extra_info"])
        if compute_score(*args) != 1.0:  # a gold a scorer reads otherwise (e.g. a list for word_sorting)
            continue
        assert [compute_score(row["data_source"], text, gold, row["extra_info"]) for text in _cheats(kind, gold)] \
            == [0.0] * len(_cheats(kind, gold)), row["extra_info"]["question_id"]
        scored += 1
    assert scored >= 5


def test_verl_reward_gives_nothing_to_a_retraction_after_the_answer(export_builds):
    rows, _ = _generations_with_rl_rows(export_builds["math"])
    row = rows[0][0]
    gold = row["reward_model"]["ground_truth"]
    texts = [f"The answer is {gold}.\n#### {gold}1", f"The answer is {gold}.\nJust kidding, it is {gold}1."]
    assert [compute_score(row["data_source"], t, gold, row["extra_info"]) for t in texts] == [0.0, 0.0]


def test_verl_reward_leaves_other_datasets_to_verl(export_builds):
    """A row that is not cotforge's goes to verl's own default_compute_score (verl itself: the trainer tests)."""
    with pytest.raises((ImportError, NotImplementedError)):
        compute_score("some/other-dataset", "The answer is 1.", "1", {})
    with pytest.raises(ValueError, match="verifier_spec"):
        compute_score("cotforge/family:arithmetic", "The answer is 1.", "1", {})


def test_verl_rows_carry_the_build_verify_config_and_the_reward_decides_with_it(export_builds):
    """The reward runs the cascade under the build's verify config (read from the recipe in the version's card):
    a recipe whose format check vetoes gives a text without the required tags no reward, as its build would."""
    from cotforge.schemas.config_verify import VerifyConfig

    rows, _ = _generations_with_rl_rows(export_builds["math"])
    row = rows[0][0]
    spec = json.loads(row["extra_info"]["verifier_spec"])
    assert spec["verify_config"] == VerifyConfig().model_dump(mode="json")  # this recipe kept the defaults
    gold = row["reward_model"]["ground_truth"]
    strict = VerifyConfig.model_validate({"format": {"require": "think_answer_tags", "enforce": "always"}})
    strict_info = dict(row["extra_info"], verifier_spec=json.dumps(spec | {
        "verify_config": strict.model_dump(mode="json")}))
    plain, tagged = f"Adding up.\nThe answer is {gold}.", f"<think>Adding up.</think>\n<answer>{gold}</answer>"
    assert compute_score(row["data_source"], plain, gold, row["extra_info"]) == 1.0
    assert compute_score(row["data_source"], plain, gold, strict_info) == 0.0
    assert compute_score(row["data_source"], tagged, gold, strict_info) == 1.0


def test_verl_reward_follows_the_answer_contract_on_its_red_team_corpus():
    """verl's reward over rows as the export writes them: 0.0 for every wrong answer of the contract's red-team corpus
    (math, choice and exact golds), 1.0 for every honest form, so RL rewards grade as the build's verdicts do."""
    from cotforge.tasks.export.verl import rl_spec
    from tests.contract_corpus import HONEST, QUESTION, WRONG

    golds = {"math": ("18", "math", "number"), "choice": ("B", "choice", "choice"), "exact": ("Paris", "exact", "text")}

    def reward(kind: str, text: str) -> float:
        gold, verifier, answer_type = golds[kind]
        prompt = [{"role": "user", "content": QUESTION if kind == "math" else "Which one?"}]
        info = {"verifier_spec": rl_spec({"solution": gold, "verifier": verifier, "answer_type": answer_type,
                                          "tests": None, "verifier_spec": None, "prompt": prompt})}
        return compute_score(f"cotforge/{kind}", text, gold, info)

    wrong = [c for c in WRONG if c.kind in golds]
    honest = [c for c in HONEST if c.kind in golds]
    assert len(wrong) >= 90 and len(honest) >= 60
    assert [c.text for c in wrong if reward(c.kind, c.text) != 0.0] == []
    assert [c.text for c in honest if reward(c.kind, c.text) != 1.0] == []
