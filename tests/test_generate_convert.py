"""GGUF -> Hugging Face folder conversion of the shipped SmolLM2 model (cached; real transformers)."""

import json
import os

import pytest

from tests.conftest import require_module

pytestmark = pytest.mark.slow


def test_smollm2_hf_dir_is_a_loadable_folder_with_the_chat_template():
    require_module("transformers", "the train extra")
    require_module("gguf", "the train extra")
    from transformers import AutoTokenizer

    from cotforge.tasks.generate.convert import smollm2_hf_dir

    folder = smollm2_hf_dir()
    assert smollm2_hf_dir() == folder  # cached: the second call converts nothing
    config = json.load(open(os.path.join(folder, "config.json")))
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert os.path.getsize(os.path.join(folder, "model.safetensors")) > 100e6  # dense float weights of 135M params
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
