"""TRL training end to end on CPU: a real build's views, loaded with `datasets.load_dataset(OUT/<version>, view)` and
handed to TRL's trainers as they are (no conversion code), each training a few steps (pytest -k trl).

The model is a tiny random Llama (SmolLM2's architecture) over SmolLM2's tokenizer and chat template: big enough to
run the real forward/backward passes, small enough for seconds on two cores. Each test prints its losses.
"""

from __future__ import annotations

import math
import os

import pytest

from cotforge.flows.build import build
from cotforge.schemas.recipe import parse_recipe
from tests.conftest import require_module
from tests.test_trl_views import _smollm2_tokenizer

pytestmark = pytest.mark.slow

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
RECIPE = {
    "name": "trltrain", "seed": 13, "shard_size": 16,
    "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 16, "difficulty": 2}]},
    "generation": {"backend": "simulated", "samples_per_question": 4},
    "views": {"prm": {"rollouts": 2}},
}
STEPS = 3


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """A real build's version folder: the path a user passes to `load_dataset`."""
    root = tmp_path_factory.mktemp("trl-build") / "out"
    result = build(parse_recipe(RECIPE), out=str(root), version="0.1.0")
    return result.folder


@pytest.fixture(scope="module")
def tokenizer():
    return _smollm2_tokenizer()


def _load(out: str, view: str):
    from datasets import load_dataset

    dataset = load_dataset(out, view, split="train")
    assert dataset.num_rows > 0, f"{view} is empty: the build gave the trainer nothing"
    return dataset


def _tiny_llama_config(tokenizer, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                       bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True, **extra)


def _causal_lm(tokenizer):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(_tiny_llama_config(tokenizer))


def _args(tmp_path, **extra) -> dict:
    return {"output_dir": str(tmp_path), "report_to": "none", "use_cpu": True, "max_steps": STEPS,
            "logging_steps": 1, "per_device_train_batch_size": 2, "save_strategy": "no", "learning_rate": 1e-3,
            "dataloader_num_workers": 0, "seed": 0, **extra}


def _losses(trainer, name: str) -> list[float]:
    """The training losses the trainer logged; all finite, one per step."""
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(f"{name} losses: {[round(x, 4) for x in losses]}")
    assert len(losses) == STEPS, trainer.state.log_history
    assert all(math.isfinite(x) for x in losses), losses
    assert trainer.state.global_step == STEPS
    return losses


def test_trl_sft_trains_on_the_sft_view(out, tokenizer, tmp_path):
    from trl import SFTConfig, SFTTrainer

    dataset = _load(out, "sft")
    trainer = SFTTrainer(model=_causal_lm(tokenizer), args=SFTConfig(**_args(tmp_path, max_length=512)),
                         train_dataset=dataset, processing_class=tokenizer)
    # Conversational prompt-completion: TRL masks the prompt, the loss falls on the assistant turn only.
    example = trainer.train_dataset[0]
    trained = sum(label != -100 for label in example["labels"])
    assert 0 < trained < len(example["input_ids"])
    trainer.train()
    _losses(trainer, "SFTTrainer/sft")


def test_trl_dpo_trains_on_the_preference_view(out, tokenizer, tmp_path):
    from trl import DPOConfig, DPOTrainer

    dataset = _load(out, "preference")
    trainer = DPOTrainer(model=_causal_lm(tokenizer), ref_model=_causal_lm(tokenizer),
                         args=DPOConfig(**_args(tmp_path, max_length=512)), train_dataset=dataset,
                         processing_class=tokenizer)
    trainer.train()
    losses = _losses(trainer, "DPOTrainer/preference")
    # The first step's policy equals the reference (same seed): the DPO loss is exactly log 2 there.
    assert losses[0] == pytest.approx(math.log(2), abs=1e-3)


def test_trl_kto_trains_on_the_unpaired_view(out, tokenizer, tmp_path):
    from trl import KTOConfig, KTOTrainer

    dataset = _load(out, "unpaired")
    assert set(dataset["label"]) == {True, False}  # desirable and undesirable rows both reach the trainer
    trainer = KTOTrainer(model=_causal_lm(tokenizer), ref_model=_causal_lm(tokenizer),
                         args=KTOConfig(**_args(tmp_path, max_length=512, per_device_train_batch_size=4)),
                         train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    _losses(trainer, "KTOTrainer/unpaired")


def test_trl_prm_trains_on_the_prm_view_with_labels_on_the_separators(out, tokenizer, tmp_path):
    import torch
    from transformers import LlamaForTokenClassification
    from trl.experimental.prm import PRMConfig, PRMTrainer

    dataset = _load(out, "prm")
    assert any(not all(r) for r in dataset["labels"]) and any(all(r) for r in dataset["labels"])
    torch.manual_seed(0)
    model = LlamaForTokenClassification(_tiny_llama_config(tokenizer, num_labels=2))
    trainer = PRMTrainer(model=model, args=PRMConfig(**_args(tmp_path, max_length=512)), train_dataset=dataset,
                         processing_class=tokenizer)
    # The tokenized rows the trainer trains on: each step's label sits on the separator token closing that step.
    separator_id = tokenizer("\n", add_special_tokens=False)["input_ids"][-1]
    assert trainer.args.step_separator == "\n"
    for row, example in zip(dataset, trainer.train_dataset):
        ids, token_labels = example["input_ids"], example["labels"]
        labelled = [i for i, lab in enumerate(token_labels) if lab != -100]
        separators = [i for i, t in enumerate(ids) if t == separator_id]
        assert labelled == separators[-len(row["completions"]):]  # the separators after the prompt, one per step
        assert len(labelled) == len(row["completions"])
        assert [token_labels[i] for i in labelled] == [int(x) for x in row["labels"]]
    trainer.train()
    _losses(trainer, "PRMTrainer/prm")


def test_trl_grpo_trains_on_the_rlvr_view(out, tokenizer, tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    dataset = _load(out, "rlvr")
    seen = []

    def gold_answer_reward(completions, solution, **_):
        """1 when the completion states the view's gold `solution` (TRL passes every dataset column by name), plus a
        tiny length term: a random model never states the answer, and GRPO needs rewards that differ to learn."""
        seen.extend(solution)
        return [float(gold in c[0]["content"]) + 1e-3 * len(c[0]["content"]) for c, gold in zip(completions, solution)]

    trainer = GRPOTrainer(model=_causal_lm(tokenizer), reward_funcs=gold_answer_reward, train_dataset=dataset,
                          args=GRPOConfig(**_args(tmp_path, num_generations=2, max_completion_length=8,
                                                  generation_batch_size=2)),
                          processing_class=tokenizer)
    trainer.train()
    _losses(trainer, "GRPOTrainer/rlvr")
    # GRPO's loss is ~0 on-policy by construction; the gradient shows that the rewards gave the model a signal.
    assert any(entry.get("grad_norm", 0) > 0 for entry in trainer.state.log_history)
    assert seen and set(seen) <= set(dataset["solution"])  # the reward saw the view's gold answers


def test_trl_grpo_trains_with_the_reasoning_gym_reward_on_a_gym_rlvr_view(tokenizer, tmp_path):
    """A reasoning-gym build's `rlvr` view and `gym_reward` (the tasks' own scorers over `verifier_spec`) go to
    GRPOTrainer as they are: TRL hands the reward the column by name, and the reward scores what the model wrote."""
    require_module("reasoning_gym", "the extra cotforge[gym]")
    from datasets import load_dataset
    from trl import GRPOConfig, GRPOTrainer

    from cotforge.tasks.verify.gym_check import gym_reward

    recipe = parse_recipe({
        "name": "trlgym", "seed": 5, "shard_size": 8,
        "questions": {"total": 12, "sources": [{"kind": "reasoning_gym", "task": "chain_sum", "weight": 1, "level": 0},
                                               {"kind": "reasoning_gym", "task": "leg_counting", "weight": 1}]},
        "generation": {"backend": "simulated", "samples_per_question": 4, "simulated": {"step_error_rate": 0.3}},
        "views": {"prm": {"enabled": False}},
    })
    folder = build(recipe, out=str(tmp_path / "out"), version="0.1.0").folder
    dataset = load_dataset(folder, "rlvr", split="train")
    assert dataset.num_rows > 0 and all(dataset["verifier_spec"])
    scored = []

    def recorded_gym_reward(completions, verifier_spec, **kwargs):
        rewards = gym_reward(completions, verifier_spec, **kwargs)
        scored.extend(rewards)
        return rewards

    def length_term(completions, **_):
        """A random model never states an answer; GRPO needs rewards that differ to learn."""
        return [1e-3 * len(c[0]["content"]) for c in completions]

    trainer = GRPOTrainer(model=_causal_lm(tokenizer), reward_funcs=[recorded_gym_reward, length_term],
                          train_dataset=dataset,
                          args=GRPOConfig(**_args(tmp_path / "grpo", num_generations=2, max_completion_length=8,
                                                  generation_batch_size=2)),
                          processing_class=tokenizer)
    trainer.train()
    _losses(trainer, "GRPOTrainer/rlvr (reasoning-gym reward)")
    assert scored and set(scored) <= {0.0, 1.0}  # every completion scored by its task's scorer


@pytest.mark.parametrize("format_", ["conversational", "messages", "standard"])
def test_trl_sft_format_decides_where_the_loss_falls(tokenizer, tmp_path, format_):
    """What the card says each format implies: conversational and standard rows put the loss on the completion only
    (with and without the chat template), `messages` rows on the whole conversation."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from cotforge.schemas.config_views import SftViewConfig
    from cotforge.tasks.views.builders import build_sft
    from tests.views_support import simulated_joined

    frame, _ = simulated_joined(n=4, difficulty=2, samples=2, seed=3)
    table = build_sft(frame, SftViewConfig(format=format_), "Be brief.")
    trainer = SFTTrainer(model=_causal_lm(tokenizer), args=SFTConfig(**_args(tmp_path, max_length=512)),
                         train_dataset=Dataset.from_list(table.to_pylist()), processing_class=tokenizer)
    for row, example in zip(table.to_pylist(), trainer.train_dataset):
        ids, labels = example["input_ids"], example["labels"]
        trained = tokenizer.decode([t for t, label in zip(ids, labels) if label != -100])
        text = tokenizer.decode(ids)
        if format_ == "messages":
            assert all(label != -100 for label in labels) and "<|im_start|>user" in trained
            continue
        assert labels[0] == -100 and trained.startswith(row["completion"][0]["content"] if format_ ==
                                                        "conversational" else row["completion"])
        assert ("<|im_start|>" in text) is (format_ == "conversational")  # standard: no chat template
        assert text.startswith(tokenizer.decode([t for t, label in zip(ids, labels) if label == -100]))
