"""Run in .venv-llamafactory (LLaMA-Factory 0.9.5): load each dataset of a LLaMA-Factory export through its
`dataset_info.json` with LLaMA-Factory's own argument parser, template and `get_dataset`. Prints one JSON object.

    python llamafactory_check.py EXPORT_DIR TOKENIZER_DIR WORK_DIR

For each registered dataset: the rows the loader produced and, for the first SFT row, the text its labels train on
(the assistant turn, rationale included).
"""

import json
import sys

from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.extras.constants import IGNORE_INDEX
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer

STAGES = {"cotforge_sft": ("sft", "sft"), "cotforge_preference": ("dpo", "rm"), "cotforge_kto": ("kto", "kto")}


def main() -> None:
    dest, tokenizer_dir, work = sys.argv[1:4]
    with open(f"{dest}/dataset_info.json", encoding="utf-8") as f:
        info = json.load(f)
    report = {"datasets": {}}
    for name in info:
        stage, data_stage = STAGES[name]
        model_args, data_args, training_args, _, _ = get_train_args({
            "stage": stage, "do_train": True, "model_name_or_path": tokenizer_dir, "dataset": name,
            "dataset_dir": dest, "template": "qwen3", "enable_thinking": True, "cutoff_len": 8192,
            "output_dir": f"{work}/{name}", "overwrite_cache": True, "preprocessing_num_workers": 1,
            "finetuning_type": "lora", "report_to": "none", "use_cpu": True})
        tokenizer_module = load_tokenizer(model_args)
        tokenizer = tokenizer_module["tokenizer"]
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        module = get_dataset(template, model_args, data_args, training_args, stage=data_stage, **tokenizer_module)
        train = module["train_dataset"]
        entry = {"rows": len(train), "columns": sorted(train.column_names)}
        if data_stage == "sft":
            first = train[0]
            entry["trained_text"] = tokenizer.decode([t for t in first["labels"] if t != IGNORE_INDEX])
        if data_stage == "kto":
            entry["kto_tags"] = [bool(x) for x in train["kto_tags"]]
        report["datasets"][name] = entry
    print(json.dumps(report))


if __name__ == "__main__":
    main()
