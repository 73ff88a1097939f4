"""Each export read by its trainer's own data code, in the trainer's own venv (scripts/install_trainers.sh): the
scripts in tests/trainers/ run there as subprocesses and report what the trainer loaded. CPU only; no training step.

- verl 0.9.1: `RLHFDataset` and `MultiTurnSFTDataset` load the export with the views' row counts; verl's `naive`
  reward manager, loaded with the export's `reward.py` the way `reward.custom_reward_function.path` loads it, gives
  every published generation the build's verdict (1.0 exactly where verified); verl's `default_compute_score`
  has no scorer for cotforge rows (only reward.py scores them).
- LLaMA-Factory 0.9.5: `get_dataset` (with its argument parser and the `qwen3` reasoning template) loads each
  dataset registered in `dataset_info.json` (SFT, `ranking` pairs, `kto_tag` rows) with the views' row counts, and
  trains on the `<think>` block.
- axolotl 0.19.0: each YAML snippet, merged into a small base config, goes through axolotl's own config loader and
  validation (`load_cfg`) and dataset preparation (`load_datasets` / `load_preference_datasets`): SFT with the
  rationale from `reasoning_content` in the loss, DPO, KTO, and the PRM view as `stepwise_supervised`.
- OpenRLHF 0.11.2 (--no-deps: its dataset classes need neither deepspeed nor flash-attn): every flag written
  beside a file is defined by the CLI it is for, and `SFTDataset` / `RewardDataset` / `PromptDataset` configured by
  exactly those flags load the files.
"""

import json
import os
import subprocess
from pathlib import Path

import polars as pl
import pytest

from cotforge.tasks.export.stage import export_version
from cotforge.tasks.publish.manifest import read_manifest
from cotforge.tasks.publish.write import read_view
from tests.conftest import missing_component

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "trainers"


def trainer_python(name: str) -> str:
    python = ROOT / f".venv-{name}" / "bin" / "python"
    if not python.is_file():
        missing_component(f"no .venv-{name}: run scripts/install_trainers.sh {name}")
    return str(python)


@pytest.fixture(scope="module")
def tokenizer_dir() -> str:
    """SmolLM2-135M-Instruct's tokenizer as a Hugging Face folder (converted from the packaged GGUF, no download)."""
    from cotforge.tasks.generate.convert import smollm2_hf_dir

    return smollm2_hf_dir()


def run_check(venv: str, script: str, *args, timeout: int = 600) -> dict:
    """Run a tests/trainers script in a trainer's venv; its last stdout line is its JSON report."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "WANDB_MODE": "disabled", "DO_NOT_TRACK": "1", "AXOLOTL_DO_NOT_TRACK": "1"}
    done = subprocess.run([trainer_python(venv), str(SCRIPTS / script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT, check=False)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def view_rows(out, view: str) -> int:
    return read_manifest(str(out / "0.1.0"))["views"][view]["rows"]


@pytest.mark.parametrize("kind", ["math", "gym"])
def test_verl_loads_the_export_and_its_reward_manager_gives_the_build_verdicts(export_builds, tokenizer_dir,
                                                                              tmp_path, kind):
    out = export_builds[kind]
    dest = tmp_path / "verl"
    export_version(str(out), "verl", dest=str(dest))
    generations = read_view(str(out / "0.1.0"), "generations")
    texts = {r["question_id"]: r["generations"] for r in generations.iter_rows(named=True)}
    (tmp_path / "generations.json").write_text(json.dumps(texts))
    report = run_check("verl", "verl_check.py", dest, tokenizer_dir, tmp_path / "generations.json")
    assert report["rl_rows"] == view_rows(out, "rlvr") and report["sft_rows"] == view_rows(out, "sft")
    assert all(n > 0 for n in report["sft_trained_tokens"])  # the assistant turns carry the loss
    assert report["lossy_decodes"] == 0  # the reward manager saw each generation's exact text
    verdicts = {r["question_id"]: [1.0 if v is True else 0.0 for v in r["correctness"]]
                for r in generations.iter_rows(named=True)}
    # Every question with a generation is an RL prompt here (band [0, 1]): every published generation is scored.
    assert set(report["rewards"]) == set(verdicts)
    assert report["rewards"] == verdicts
    rewards = [x for xs in report["rewards"].values() for x in xs]
    assert 0 < sum(rewards) < len(rewards)
    assert report["default_compute_score"].startswith("NotImplementedError")
    sources = set(pl.read_parquet(dest / "rl.parquet")["data_source"])
    assert report["data_sources"] == sorted(sources) and all(s.startswith("cotforge/") for s in sources)


def test_llamafactory_loads_every_dataset_of_the_export_through_its_dataset_info(export_builds, tokenizer_dir,
                                                                                   tmp_path):
    out = export_builds["math"]
    dest = tmp_path / "llamafactory"
    export_version(str(out), "llamafactory", dest=str(dest))
    report = run_check("llamafactory", "llamafactory_check.py", dest, tokenizer_dir, tmp_path / "work")
    datasets = report["datasets"]
    assert set(datasets) == {"cotforge_sft", "cotforge_preference", "cotforge_kto"}
    assert datasets["cotforge_sft"]["rows"] == view_rows(out, "sft")
    assert datasets["cotforge_preference"]["rows"] == view_rows(out, "preference")
    assert {"chosen_input_ids", "rejected_input_ids"} <= set(datasets["cotforge_preference"]["columns"])
    assert datasets["cotforge_kto"]["rows"] == view_rows(out, "unpaired")
    assert datasets["cotforge_kto"]["kto_tags"] == read_view(str(out / "0.1.0"), "unpaired")["label"].to_list()
    # The qwen3 reasoning template trains on the whole assistant turn, its <think> block included.
    first = read_view(str(out / "0.1.0"), "sft").row(0, named=True)
    trained = datasets["cotforge_sft"]["trained_text"]
    assert trained.startswith(f"<think>\n{first['reasoning']}\n</think>") and first["final_answer"] in trained


def test_axolotl_prepares_every_file_of_the_export_from_its_yaml_snippet(export_builds, tokenizer_dir, tmp_path):
    out = export_builds["math"]
    dest = tmp_path / "axolotl"
    export_version(str(out), "axolotl", dest=str(dest))
    report = run_check("axolotl", "axolotl_check.py", dest, tokenizer_dir, tmp_path / "work", timeout=900)
    assert set(report) == {"sft", "dpo", "kto", "prm"}
    assert report["sft"]["rows"] == view_rows(out, "sft")
    assert report["dpo"]["rows"] == view_rows(out, "preference")
    assert {"prompt", "chosen", "rejected"} <= set(report["dpo"]["columns"])
    assert report["kto"]["rows"] == view_rows(out, "unpaired")
    assert {"prompt", "completion", "label"} <= set(report["kto"]["columns"])
    prm = read_view(str(out / "0.1.0"), "prm")
    assert report["prm"]["rows"] == prm.height
    # stepwise_supervised puts one label on each step's last token: as many labelled tokens as steps.
    assert report["prm"]["labelled_steps"] == [len(labels) for labels in prm["labels"].to_list()]
    # qwen3's template renders `reasoning_content` in the thinking block, and the loss covers it.
    first = read_view(str(out / "0.1.0"), "sft").row(0, named=True)
    trained = report["sft"]["trained_text"]
    assert first["reasoning"] in trained and trained.index(first["reasoning"]) < trained.index(first["final_answer"])


def test_openrlhf_flags_exist_in_its_clis_and_its_dataset_classes_load_the_export(export_builds, tokenizer_dir,
                                                                                    tmp_path):
    out = export_builds["math"]
    dest = tmp_path / "openrlhf"
    export_version(str(out), "openrlhf", dest=str(dest))
    report = run_check("axolotl", "openrlhf_check.py", dest, tokenizer_dir)  # OpenRLHF lives in .venv-axolotl
    assert set(report) == {"sft", "preference", "rl"}
    for kind, view in (("sft", "sft"), ("preference", "preference"), ("rl", "rlvr")):
        assert report[kind]["unknown_flags"] == [], kind  # every written flag is one its CLI defines
        assert report[kind]["rows"] == view_rows(out, view), kind
    assert {"input_key", "output_key", "apply_chat_template"} <= set(report["sft"]["keys"])
    assert {"prompt_key", "chosen_key", "rejected_key"} <= set(report["preference"]["keys"])
    rlvr = read_view(str(out / "0.1.0"), "rlvr").row(0, named=True)
    assert report["rl"]["first"]["label"] == rlvr["solution"]
    assert rlvr["prompt"][-1]["content"] in report["rl"]["first"]["prompt"]
    sft = read_view(str(out / "0.1.0"), "sft").row(0, named=True)
    assert report["sft"]["first"]["response"].startswith(f"<think>\n{sft['reasoning']}\n</think>")
