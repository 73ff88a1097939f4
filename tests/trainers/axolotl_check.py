"""Run in .venv-axolotl (axolotl 0.19.0, OpenRLHF 0.11.2 --no-deps): prepare each axolotl export file the way
`axolotl preprocess` / `axolotl train` do, from a config made of a small base and the export's own YAML snippet.
Prints one JSON object.

    python axolotl_check.py EXPORT_DIR TOKENIZER_DIR WORK_DIR

Per kind (sft, dpo, kto, prm): the rows of the prepared dataset, its columns, and for SFT the text its labels train
on in the first row.
"""

import json
import sys
from pathlib import Path

import yaml
from axolotl.cli.config import load_cfg
from axolotl.common.datasets import load_datasets, load_preference_datasets


def main() -> None:
    dest, tokenizer_dir, work = sys.argv[1:4]
    report = {}
    for snippet in sorted(Path(dest).glob("*.yaml")):
        kind = snippet.stem
        config = {"base_model": tokenizer_dir, "tokenizer_type": "AutoTokenizer", "sequence_len": 4096,
                  "micro_batch_size": 1, "gradient_accumulation_steps": 1, "num_epochs": 1,
                  "learning_rate": 1e-5, "optimizer": "adamw_torch", "val_set_size": 0.0,
                  "output_dir": f"{work}/{kind}/out", "dataset_prepared_path": f"{work}/{kind}/prepared",
                  "dataset_processes": 1, "sample_packing": False, "special_tokens": {},
                  "shuffle_merged_datasets": False}  # rows in the file's order, to compare them one by one
        config |= yaml.safe_load(snippet.read_text())
        path = Path(work) / f"{kind}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        cfg = load_cfg(str(path))
        meta = load_preference_datasets(cfg=cfg) if cfg.rl else load_datasets(cfg=cfg)
        train = meta.train_dataset
        entry = {"rows": len(train), "columns": sorted(train.column_names)}
        if kind == "sft":
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            entry["trained_text"] = tokenizer.decode([t for t in train[0]["labels"] if t != -100])
        if kind == "prm":
            entry["labelled_steps"] = [sum(1 for t in row if t != -100) for row in train["labels"]]
        report[kind] = entry
    print(json.dumps(report))


if __name__ == "__main__":
    main()
