"""Run in .venv-axolotl (OpenRLHF 0.11.2 installed --no-deps: its dataset classes import without deepspeed and
flash-attn): check each `<kind>.flags` file of an OpenRLHF export against the CLI it is for, then load the file
with OpenRLHF's `blending_datasets` and the dataset class that CLI builds, configured by exactly those flags.
Prints one JSON object.

    python openrlhf_check.py EXPORT_DIR TOKENIZER_DIR
"""

import importlib.util
import json
import re
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

from openrlhf.datasets import PromptDataset, RewardDataset, SFTDataset
from openrlhf.datasets.utils import blending_datasets
from transformers import AutoTokenizer

CLI = {"sft": "openrlhf.cli.train_sft", "preference": "openrlhf.cli.train_dpo", "rl": "openrlhf.cli.train_ppo_ray"}


def parse_flags(text: str, cli: str) -> tuple[SimpleNamespace, list[str]]:
    """The flags as OpenRLHF's argparse would set them, and any flag that CLI does not define. The CLIs build their
    parsers under `__main__` (importing them needs deepspeed), so their source is read instead."""
    source = Path(importlib.util.find_spec(cli).origin).read_text()
    words, data, unknown = shlex.split(text), {}, []
    i = 0
    while i < len(words):
        flag = words[i]
        match = re.search(r'add_argument\(\s*"' + re.escape(flag) + r'"([^)]*)', source)
        if match is None:
            unknown.append(flag)
            i += 1
            continue
        if "store_true" in match.group(1):
            value, i = True, i + 1
        else:
            value, i = words[i + 1], i + 2
        data[flag.removeprefix("--data.")] = value
    return SimpleNamespace(**data), unknown


def main() -> None:
    dest, tokenizer_dir = sys.argv[1:3]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    report = {}
    for flags_file in sorted(Path(dest).glob("*.flags")):
        kind = flags_file.stem
        data, unknown = parse_flags(flags_file.read_text(), CLI[kind])
        strategy = SimpleNamespace(args=SimpleNamespace(data=data, use_ms=False), is_rank_0=lambda: True,
                                   print=lambda *a: print(*a, file=sys.stderr))
        path = data.prompt_dataset if kind == "rl" else data.dataset
        rows = blending_datasets(path, None, strategy, dataset_split="train")
        if kind == "sft":
            dataset = SFTDataset(rows, tokenizer, 4096, strategy, num_processors=1)
            first = {"prompt": dataset.prompts[0], "response": dataset.responses[0]}
        elif kind == "preference":
            dataset = RewardDataset(rows, tokenizer, 4096, strategy, is_dpo=True, num_processors=1)
            first = {"prompt": dataset.prompts[0], "chosen": dataset.chosens[0]}
        else:
            dataset = PromptDataset(rows, tokenizer, strategy)
            first = {"prompt": dataset.prompts[0], "label": dataset.labels[0]}
        report[kind] = {"rows": len(dataset), "unknown_flags": unknown, "keys": sorted(vars(data)), "first": first}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
