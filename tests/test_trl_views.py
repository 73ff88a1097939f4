"""Each view through the data preparation of the TRL trainer meant for it, with the SmolLM2 tokenizer on CPU.

The trainers are built for real (a one-layer random model of SmolLM2's vocabulary: no training, no download), and
the tokenized rows they prepare are checked against our columns: SFT's completion mask, DPO's chosen/rejected ids,
KTO's labels, and PRM token labels at the step separators.
"""

import os

import polars as pl
import pytest

from cotforge.schemas.config_views import PreferenceViewConfig, PrmViewConfig, SftViewConfig, UnpairedViewConfig
from cotforge.tasks.generate.simulated import SimulatedGenerator
from cotforge.tasks.label.steps import label_steps
from cotforge.tasks.views.builders import build_preference, build_prm, build_sft, build_unpaired
from tests.views_support import simulated_joined

pytestmark = pytest.mark.slow  # loading the GGUF tokenizer and building trainers takes ~30 s in all


def _smollm2_tokenizer():
    """The SmolLM2 tokenizer: from the generation engineer's converted HF folder when present, else the GGUF."""
    from transformers import AutoTokenizer

    try:
        from cotforge.tasks.generate.convert import smollm2_hf_dir

        return AutoTokenizer.from_pretrained(smollm2_hf_dir())
    except ImportError:
        from cotforge.tasks.generate.llamacpp import default_model_path

        path = default_model_path()
        return AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))


@pytest.fixture(scope="module")
def tokenizer():
    return _smollm2_tokenizer()


@pytest.fixture(scope="module")
def joined():
    return simulated_joined(n=8, difficulty=2, samples=4, seed=13)


def _tiny_model(tokenizer):
    """A one-layer random Llama over SmolLM2's vocabulary: trainers need a model, the data prep never runs it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config)


def _dataset(table):
    """The published rows as they are, every column: what a user loads with `load_dataset(repo, view)`."""
    from datasets import Dataset

    return Dataset.from_list(pl.from_arrow(table).to_dicts())


def _common_args(tmp_path):
    return {"output_dir": str(tmp_path), "report_to": "none", "use_cpu": True, "per_device_train_batch_size": 2}


def test_trl_sft_completion_mask_covers_the_assistant_turn(tokenizer, joined, tmp_path):
    from trl import SFTConfig, SFTTrainer

    frame, _ = joined
    table = build_sft(frame, SftViewConfig())
    rows = pl.from_arrow(table).to_dicts()
    trainer = SFTTrainer(model=_tiny_model(tokenizer), args=SFTConfig(**_common_args(tmp_path)),
                         train_dataset=_dataset(table), processing_class=tokenizer)
    prepared = trainer.train_dataset
    assert len(prepared) == len(rows) > 0
    for row, example in zip(rows, prepared):
        ids, labels = example["input_ids"], example["labels"]
        trained = [t for t, lab in zip(ids, labels) if lab != -100]
        masked = ids[:len(ids) - len(trained)]
        assert all(lab == -100 for lab in labels[:len(masked)])  # the prompt is masked, then only the completion
        assert tokenizer.decode(trained).strip() == row["completion"][0]["content"] + "<|im_end|>"
        assert tokenizer.decode(masked).endswith("<|im_start|>assistant\n")
        assert row["prompt"][0]["content"] in tokenizer.decode(masked)
        assert "<think>" in tokenizer.decode(trained) and row["final_answer"] in tokenizer.decode(trained)


def test_trl_dpo_chosen_and_rejected_ids(tokenizer, joined, tmp_path):
    from trl import DPOConfig, DPOTrainer

    frame, _ = joined
    table = build_preference(frame, PreferenceViewConfig())
    rows = pl.from_arrow(table).to_dicts()
    trainer = DPOTrainer(model=_tiny_model(tokenizer), ref_model=_tiny_model(tokenizer),
                         args=DPOConfig(**_common_args(tmp_path)),
                         train_dataset=_dataset(table), processing_class=tokenizer)
    prepared = trainer.train_dataset
    assert len(prepared) == len(rows) > 0
    for row, example in zip(rows, prepared):
        assert tokenizer.decode(example["prompt_ids"]).endswith(
            f"<|im_start|>user\n{row['prompt'][0]['content']}<|im_end|>\n<|im_start|>assistant\n")
        assert tokenizer.decode(example["chosen_ids"]).startswith(row["chosen"][0]["content"] + "<|im_end|>")
        assert tokenizer.decode(example["rejected_ids"]).startswith(row["rejected"][0]["content"] + "<|im_end|>")
        assert example["chosen_ids"] != example["rejected_ids"]


def test_trl_kto_labels_follow_the_verdicts(tokenizer, joined, tmp_path):
    from trl import KTOConfig, KTOTrainer

    frame, _ = joined
    table = build_unpaired(frame, UnpairedViewConfig())
    rows = pl.from_arrow(table).to_dicts()
    assert {r["label"] for r in rows} == {True, False}
    trainer = KTOTrainer(model=_tiny_model(tokenizer), ref_model=_tiny_model(tokenizer),
                         args=KTOConfig(**_common_args(tmp_path)),
                         train_dataset=_dataset(table), processing_class=tokenizer)
    prepared = trainer.train_dataset
    assert len(prepared) == len(rows)
    assert [bool(x) for x in prepared["label"]] == [r["label"] for r in rows]
    first = prepared[0]
    ids_key = "completion_ids" if "completion_ids" in first else "completion_input_ids"
    assert tokenizer.decode(first[ids_key]).startswith(rows[0]["completion"][0]["content"])


def test_trl_prm_token_labels_sit_on_step_separators(tokenizer, joined):
    from trl.experimental.prm import PRMTrainer

    frame, generation = joined
    labels = label_steps(frame, SimulatedGenerator(0.15, 0.05), PrmViewConfig(rollouts=4), generation, 13, "r", "b")
    rows = pl.from_arrow(build_prm(frame, pl.from_arrow(labels))).to_dicts()
    assert rows and any(not all(r["labels"]) for r in rows) and any(all(r["labels"]) for r in rows)
    separator_id = tokenizer("\n", add_special_tokens=False)["input_ids"][-1]
    for row in rows:
        out = PRMTrainer.tokenize_row({"prompt": row["prompt"], "completions": row["completions"],
                                       "labels": row["labels"]}, tokenizer, "\n", None, None, False, False)
        ids, token_labels = out["input_ids"], out["labels"]
        labelled = [i for i, lab in enumerate(token_labels) if lab != -100]
        assert [token_labels[i] for i in labelled] == [int(x) for x in row["labels"]]
        assert all(ids[i] == separator_id for i in labelled)  # each label on the separator closing its step
        # TRL puts the tokenizer's BOS first and the steps right after the prompt, each closed by the separator.
        assert tokenizer.decode(ids, skip_special_tokens=True) == row["prompt"] + "".join(
            f"{step}\n" for step in row["completions"])
