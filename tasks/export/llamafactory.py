"""The LLaMA-Factory export: ShareGPT-style JSON lines plus the `dataset_info.json` that registers each of them.

SFT rows are `messages` (system, user, assistant), preference rows `ranking: true` with `chosen` / `rejected`
assistant messages, unpaired rows a `kto_tag`. The assistant turn carries its rationale in `<think>` tags, which
LLaMA-Factory's reasoning templates (`qwen3`, `deepseekr1`, ...) split into the thinking block; rows without a
rationale stay as they are, so thinking and plain rows can be mixed. PRM and RL prompts have no LLaMA-Factory format.
"""

from __future__ import annotations

import json

import polars as pl

from cotforge.tasks.export.bundle import Export, ExportFile, think_turn

PREFIX = "cotforge_"
_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
         "system_tag": "system"}


def llamafactory_sft_rows(sft: pl.DataFrame) -> list[dict]:
    return [{"messages": r["prompt"] + [think_turn(m) for m in r["completion"]], "question_id": r["question_id"]}
            for r in sft.iter_rows(named=True)]


def llamafactory_preference_rows(preference: pl.DataFrame) -> list[dict]:
    return [{"messages": r["prompt"], "chosen": think_turn(r["chosen"][-1]), "rejected": think_turn(r["rejected"][-1]),
             "question_id": r["question_id"]} for r in preference.iter_rows(named=True)]


def llamafactory_kto_rows(unpaired: pl.DataFrame) -> list[dict]:
    return [{"messages": r["prompt"] + [think_turn(m) for m in r["completion"]], "label": bool(r["label"]),
             "question_id": r["question_id"]} for r in unpaired.iter_rows(named=True)]


def dataset_info(files: dict[str, str]) -> dict:
    """`dataset_info.json` entries for the written files (kind -> file name), in ShareGPT format with OpenAI roles."""
    info = {}
    for kind, name in files.items():
        entry: dict = {"file_name": name, "formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": _TAGS}
        if kind == "preference":
            entry["ranking"] = True
            entry["columns"] |= {"chosen": "chosen", "rejected": "rejected"}
        elif kind == "kto":
            entry["columns"]["kto_tag"] = "label"
        info[PREFIX + kind] = entry
    return info


_STAGE = {"sft": "sft", "preference": "dpo", "kto": "kto"}


def export_llamafactory(views: dict[str, pl.DataFrame]) -> Export:
    """`sft.jsonl`, `preference.jsonl`, `kto.jsonl` (from the views present) and `dataset_info.json`."""
    export = Export("llamafactory")
    made = {}
    for kind, view, rows_of in (("sft", "sft", llamafactory_sft_rows),
                                ("preference", "preference", llamafactory_preference_rows),
                                ("kto", "unpaired", llamafactory_kto_rows)):
        if view in views:
            rows = rows_of(views[view])
            export.files.append(ExportFile(f"{kind}.jsonl", rows, view=view))
            made[kind] = f"{kind}.jsonl"
            export.commands[f"{kind}.jsonl"] = (
                f"llamafactory-cli train --stage {_STAGE[kind]} --do_train --model_name_or_path MODEL "
                f"--template qwen3 --dataset_dir {{dest}} --dataset {PREFIX}{kind} --finetuning_type lora "
                f"--output_dir OUTPUT")
    export.files.append(ExportFile("dataset_info.json", text=json.dumps(dataset_info(made), indent=2) + "\n"))
    if "prm" in views or "rlvr" in views:
        export.notes.append("prm and rlvr have no LLaMA-Factory format (its PPO stage takes a reward model): use "
                            "the verl or axolotl export for them")
    return export
