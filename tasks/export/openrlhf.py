"""The OpenRLHF export: JSON lines per view and the exact `--data.*` flags that point OpenRLHF's CLIs at their
columns (flag names from OpenRLHF 0.11.2's `openrlhf/cli/train_*.py`), written beside each file.

OpenRLHF has no KTO or PRM trainer in that release: `unpaired` and `prm` are not exported for it.
"""

from __future__ import annotations

import polars as pl

from cotforge.tasks.export.bundle import Export, ExportFile, think_turn

# (file kind, view, CLI module, its --data.* flags); --data.apply_chat_template: the columns are message lists.
FLAGS = {
    "sft": ("sft", "openrlhf.cli.train_sft",
            "--data.input_key prompt --data.output_key completion --data.apply_chat_template"),
    "preference": ("preference", "openrlhf.cli.train_dpo",
                   ("--data.prompt_key prompt --data.chosen_key chosen --data.rejected_key rejected "
                    "--data.apply_chat_template")),
    "rl": ("rlvr", "openrlhf.cli.train_ppo_ray",
           "--data.input_key prompt --data.label_key label --data.apply_chat_template"),
}


def openrlhf_rows(kind: str, frame: pl.DataFrame) -> list[dict]:
    out = []
    for r in frame.iter_rows(named=True):
        if kind == "sft":
            row = {"prompt": r["prompt"], "completion": [think_turn(m) for m in r["completion"]]}
        elif kind == "preference":
            row = {"prompt": r["prompt"], "chosen": [think_turn(r["chosen"][-1])],
                   "rejected": [think_turn(r["rejected"][-1])]}
        else:
            row = {"prompt": r["prompt"], "label": r["solution"]}
        out.append(row | {"question_id": r["question_id"]})
    return out


def export_openrlhf(views: dict[str, pl.DataFrame]) -> Export:
    """`sft.jsonl`, `preference.jsonl`, `rl.jsonl` (from the views present), each with `<kind>.flags`."""
    export = Export("openrlhf")
    for kind, (view, module, flags) in FLAGS.items():
        if view not in views:
            continue
        # train_ppo_ray names its file --data.prompt_dataset; train_sft and train_dpo --data.dataset
        data = f"--data.{'prompt_dataset' if kind == 'rl' else 'dataset'} {{dest}}/{kind}.jsonl {flags}"
        export.files += [ExportFile(f"{kind}.jsonl", openrlhf_rows(kind, views[view]), view=view),
                         ExportFile(f"{kind}.flags", text=data + "\n")]
        model = "--actor.model_name_or_path MODEL --reward.remote_url REWARD_URL" if kind == "rl" \
            else "--model.model_name_or_path MODEL"
        export.commands[f"{kind}.jsonl"] = f"python -m {module} {model} {data}"
    if "unpaired" in views or "prm" in views:
        export.notes.append("OpenRLHF 0.11.2 has no KTO or PRM trainer: unpaired and prm are not exported for it")
    return export
