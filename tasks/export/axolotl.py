"""The axolotl export: JSON lines per view and a YAML snippet (the `datasets:` / `rl:` block) for each.

SFT rows use `type: chat_template` with the rationale in the assistant turn's `reasoning_content` (rendered by
reasoning chat templates, e.g. `chat_template: qwen3`); preference rows `chat_template.default` (DPO), unpaired rows
`chatml.argilla_chat` (KTO: the conversation in `completion`, the verdict in `label`), and the PRM view
`stepwise_supervised` (`prompt`, `completions`, `labels`).
"""

from __future__ import annotations

import polars as pl
import yaml

from cotforge.tasks.export.bundle import Export, ExportFile, reasoning_turn, think_turn


def axolotl_sft_rows(sft: pl.DataFrame) -> list[dict]:
    return [{"messages": [dict(m, reasoning_content=None) for m in r["prompt"]]
             + [reasoning_turn(m) for m in r["completion"]], "question_id": r["question_id"]}
            for r in sft.iter_rows(named=True)]


def axolotl_dpo_rows(preference: pl.DataFrame) -> list[dict]:
    return [{"messages": r["prompt"], "chosen": [think_turn(r["chosen"][-1])],
             "rejected": [think_turn(r["rejected"][-1])], "question_id": r["question_id"]}
            for r in preference.iter_rows(named=True)]


def axolotl_kto_rows(unpaired: pl.DataFrame) -> list[dict]:
    return [{"completion": r["prompt"] + [think_turn(m) for m in r["completion"]], "label": bool(r["label"]),
             "question_id": r["question_id"]} for r in unpaired.iter_rows(named=True)]


def axolotl_prm_rows(prm: pl.DataFrame) -> list[dict]:
    return [{"prompt": r["prompt"], "completions": r["completions"], "labels": [bool(x) for x in r["labels"]],
             "question_id": r["question_id"]} for r in prm.iter_rows(named=True)]


def dataset_block(name: str, kind: str) -> dict:
    """axolotl's config keys for one exported file (`path` relative to the export folder: `{dest}` in commands)."""
    base = {"path": f"{{dest}}/{name}", "ds_type": "json", "split": "train"}
    if kind == "sft":
        return {"chat_template": "qwen3", "datasets": [base | {
            "type": "chat_template", "field_messages": "messages", "field_thinking": "reasoning_content",
            "roles_to_train": ["assistant"]}]}
    if kind == "dpo":
        return {"rl": "dpo", "chat_template": "qwen3", "datasets": [base | {
            "type": "chat_template.default", "field_messages": "messages", "field_chosen": "chosen",
            "field_rejected": "rejected"}]}
    if kind == "kto":
        # axolotl's config check: KTO needs the label column through to the trainer
        return {"rl": "kto", "remove_unused_columns": False, "datasets": [base | {"type": "chatml.argilla_chat"}]}
    return {"process_reward_model": True, "datasets": [base | {
        "type": "stepwise_supervised", "step_separator": "\n", "train_on_last_step_only": False}]}


def export_axolotl(views: dict[str, pl.DataFrame]) -> Export:
    """`sft.jsonl`, `dpo.jsonl`, `kto.jsonl`, `prm.jsonl` (from the views present), each with `<kind>.yaml`."""
    export = Export("axolotl")
    for kind, view, rows_of in (("sft", "sft", axolotl_sft_rows), ("dpo", "preference", axolotl_dpo_rows),
                                ("kto", "unpaired", axolotl_kto_rows), ("prm", "prm", axolotl_prm_rows)):
        if view not in views:
            continue
        export.files += [ExportFile(f"{kind}.jsonl", rows_of(views[view]), view=view),
                         ExportFile(f"{kind}.yaml", text=yaml.safe_dump(dataset_block(f"{kind}.jsonl", kind),
                                                                         sort_keys=False))]
        export.commands[f"{kind}.jsonl"] = (f"axolotl train BASE.yaml  # BASE.yaml: your model and training "
                                            f"settings plus the keys of {{dest}}/{kind}.yaml")
    return export
