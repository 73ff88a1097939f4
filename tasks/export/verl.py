"""The verl export: RL prompts as verl's RL parquet, a reward function file, and SFT rows for verl's SFT trainer.

RL rows (from the `rlvr` view) have verl's columns: `data_source`, `prompt` (messages), `ability`, `reward_model`
`{style: rule, ground_truth}` and `extra_info` `{split, index, question_id, verifier_spec}`, where `verifier_spec` is
what cotforge's verify cascade needs besides the ground truth (the question's verifier, answer type, tests and
reasoning-gym entry, as JSON). `compute_score` is verl's reward-function signature over those rows: it runs the
build's own cascade (tasks/verify/reward.py) on the response, so a reward is the verdict the build would give it.
"""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa

from cotforge.schemas.config_verify import VerifyConfig
from cotforge.tasks.export.bundle import Export, ExportFile
from cotforge.tasks.verify.reward import completion_reward, question_spec

DATA_SOURCE_PREFIX = "cotforge/"
ABILITY = {"math": "math", "code": "code", "reasoning_gym": "reasoning", "choice": "choice", "exact": "text",
           "regex": "text", "abstain": "abstain", "judge": "judge"}
_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
RL_SCHEMA = pa.schema([
    ("data_source", pa.string()), ("prompt", _MESSAGES), ("ability", pa.string()),
    ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
    ("extra_info", pa.struct([("split", pa.string()), ("index", pa.int64()), ("question_id", pa.string()),
                              ("verifier_spec", pa.string()), ("solution_kind", pa.string())])),
])
SFT_SCHEMA = pa.schema([("messages", _MESSAGES), ("enable_thinking", pa.bool_()), ("question_id", pa.string()),
                        ("sample_id", pa.string())])
REWARD_FILE = '''"""cotforge's verifiers as a verl reward function, for the RL parquet beside this file.

    reward.custom_reward_function.path=<this file> reward.custom_reward_function.name=compute_score

Needs cotforge (with the `gym` extra for reasoning-gym rows) installed in verl's environment. Rows whose
`data_source` does not start with "cotforge/" go to verl's default_compute_score, so datasets can be mixed.
"""

from cotforge.tasks.export.verl import compute_score  # noqa: F401
'''


def rl_spec(row: dict, verify_config: dict | None = None) -> str:
    """The `verifier_spec` of an RL row: the question spec without the gold answer (that is `ground_truth`), and
    the build's verify config (timeouts, structure checks that veto) when known, so the reward decides as it did."""
    asked = [m["content"] for m in row.get("prompt") or [] if m["role"] == "user"]
    spec = question_spec(row["solution"], row["verifier"], row.get("answer_type"), row.get("tests"),
                         row.get("verifier_spec"), question=asked[-1] if asked else "")
    spec = {k: v for k, v in spec.items() if k != "gold"}
    if verify_config is not None:
        spec["verify_config"] = verify_config
    return json.dumps(spec, sort_keys=True)


def verl_rl_table(rlvr: pl.DataFrame, split: str = "train", verify_config: dict | None = None) -> pa.Table:
    """The `rlvr` view (conversational) as verl's RL parquet rows, one per prompt, in the view's order;
    `verify_config` is the build's (`VerifyConfig` as JSON), carried in each row's `verifier_spec`."""
    rows = [{
        "data_source": DATA_SOURCE_PREFIX + (r["source"] or "unknown"), "prompt": r["prompt"],
        "ability": ABILITY.get(r["verifier"], r["verifier"]),
        "reward_model": {"style": "rule", "ground_truth": r["solution"]},
        "extra_info": {"split": split, "index": i, "question_id": r["question_id"],
                       "verifier_spec": rl_spec(r, verify_config),
                       "solution_kind": r["solution_kind"]},
    } for i, r in enumerate(rlvr.iter_rows(named=True))]
    return pa.Table.from_pylist(rows, schema=RL_SCHEMA)


def verl_sft_table(sft: pl.DataFrame) -> pa.Table:
    """The `sft` view (conversational) as verl's multi-turn SFT rows: one `messages` list per row (loss on the
    assistant turns), `enable_thinking` where the turn carries a rationale."""
    rows = [{"messages": r["prompt"] + r["completion"], "enable_thinking": bool(r.get("reasoning")),
             "question_id": r["question_id"], "sample_id": r["sample_id"]} for r in sft.iter_rows(named=True)]
    return pa.Table.from_pylist(rows, schema=SFT_SCHEMA)


def compute_score(data_source: str, solution_str: str, ground_truth: str | None, extra_info: dict | None = None,
                  **kwargs) -> float:
    """verl's reward function: 1.0 where cotforge's cascade verifies the response against the row's question
    (`ground_truth` and `extra_info["verifier_spec"]`), else 0.0. Rows of other datasets go to verl's own
    `default_compute_score`."""
    if not str(data_source).startswith(DATA_SOURCE_PREFIX):
        from verl.utils.reward_score import default_compute_score

        return default_compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs)
    spec_json = (extra_info or {}).get("verifier_spec")
    if not spec_json:
        raise ValueError(f"a {data_source} row without extra_info.verifier_spec: not written by `cotforge export`")
    spec = json.loads(spec_json)
    config = spec.pop("verify_config", None)
    return completion_reward(solution_str, {**spec, "gold": ground_truth},
                             None if config is None else VerifyConfig.model_validate(config))


def export_verl(views: dict[str, pl.DataFrame], verify_config: dict | None = None) -> Export:
    """verl's files from the views present: `rl.parquet` + `reward.py` (from `rlvr`), `sft.parquet` (from `sft`)."""
    export = Export("verl")
    if "rlvr" in views:
        export.files += [ExportFile("rl.parquet", verl_rl_table(views["rlvr"], verify_config=verify_config),
                                    view="rlvr"),
                         ExportFile("reward.py", text=REWARD_FILE)]
        export.commands["rl.parquet"] = (
            "python -m verl.trainer.main_ppo algorithm.adv_estimator=grpo data.train_files={dest}/rl.parquet "
            "data.val_files={dest}/rl.parquet data.prompt_key=prompt "
            "reward.custom_reward_function.path={dest}/reward.py reward.custom_reward_function.name=compute_score "
            "actor_rollout_ref.model.path=MODEL")
    if "sft" in views:
        export.files.append(ExportFile("sft.parquet", verl_sft_table(views["sft"]), view="sft"))
        export.commands["sft.parquet"] = (
            "torchrun --nproc_per_node=GPUS -m verl.trainer.sft_trainer data.train_files={dest}/sft.parquet "
            "data.messages_key=messages data.enable_thinking_key=enable_thinking model.path=MODEL")
    return export
