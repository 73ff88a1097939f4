"""Run in .venv-verl (verl 0.9.1 and cotforge): load a verl export with verl's own data code and score generations
with verl's reward manager and the export's reward.py. Prints one JSON object.

    python verl_check.py EXPORT_DIR TOKENIZER_DIR GENERATIONS_JSON

GENERATIONS_JSON: {question_id: [text, ...]}. Output: rows per dataset, per question the rewards verl's `naive`
reward manager gave each text (the responses tokenized and decoded as a rollout would be), and what verl's own
`default_compute_score` does with a cotforge row.
"""

import asyncio
import json
import sys
import tempfile

import numpy as np
import torch
from omegaconf import OmegaConf
from transformers import AutoTokenizer
from verl import DataProto
from verl.trainer.ppo.reward import load_reward_manager
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn
from verl.utils.reward_score import default_compute_score


def main() -> None:
    dest, tokenizer_dir, generations_path = sys.argv[1:4]
    with open(generations_path, encoding="utf-8") as f:
        generations = json.load(f)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    cache = tempfile.mkdtemp()
    rl = RLHFDataset(data_files=[f"{dest}/rl.parquet"], tokenizer=tokenizer,
                     config=OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 4096,
                                              "filter_overlong_prompts": True, "cache_dir": cache}))
    sft = MultiTurnSFTDataset([f"{dest}/sft.parquet"], tokenizer,
                              OmegaConf.create({"messages_key": "messages", "max_length": 8192,
                                                "truncation": "error", "pad_mode": "right"}))
    sft_trained = [int(sft[i]["loss_mask"].sum()) for i in range(len(sft))]
    config = OmegaConf.create({"reward": {
        "custom_reward_function": {"path": f"{dest}/reward.py", "name": "compute_score", "reward_kwargs": {}},
        "reward_manager": {"source": "register", "name": "naive"}}})
    manager = load_reward_manager(config, tokenizer)
    rewards, lossy, routed = {}, 0, None
    for i in range(len(rl)):
        item = rl[i]
        question_id = item["extra_info"]["question_id"]
        texts = generations.get(question_id, [])
        if routed is None:  # verl's own router has no scorer for cotforge rows: only reward.py scores them
            try:
                routed = repr(default_compute_score(item["data_source"], texts[0] if texts else "",
                                                    item["reward_model"]["ground_truth"], item["extra_info"]))
            except NotImplementedError as error:
                routed = f"NotImplementedError: {error}"
        scores = []
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            lossy += tokenizer.decode(ids, skip_special_tokens=True) != text
            batch = collate_fn([item])
            batch["responses"] = torch.tensor([ids])
            batch["prompts"] = torch.zeros((1, 1), dtype=torch.long)
            batch["attention_mask"] = torch.ones((1, len(ids) + 1), dtype=torch.long)
            data = DataProto.from_single_dict({k: v for k, v in batch.items()
                                               if isinstance(v, (torch.Tensor, np.ndarray))})
            result = manager.loop.run_until_complete(manager.run_single(data)) if manager.loop else \
                asyncio.run(manager.run_single(data))
            scores.append(float(result["reward_score"]))
        rewards[question_id] = scores
    print(json.dumps({"rl_rows": len(rl), "sft_rows": len(sft), "sft_trained_tokens": sft_trained,
                      "rewards": rewards, "lossy_decodes": lossy, "default_compute_score": routed,
                      "data_sources": sorted({rl[i]["data_source"] for i in range(len(rl))})}))


if __name__ == "__main__":
    main()
