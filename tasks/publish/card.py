"""The dataset card (the build's README.md): a YAML header with one config per view, then the readable sections."""

from __future__ import annotations

import yaml

from cotforge.schemas.config_verify import VerifyConfig
from cotforge.schemas.views import FORMATS, VIEWS
from cotforge.tasks.publish.write import PublishedView
from cotforge.tasks.views.builders import OWN_WORDS_RULE, PROMPT_RULE

REPO_PLACEHOLDER = "REPO_OR_PATH"  # replaced by the Hub repo id when the card is pushed (tasks/publish/hub.py)
# What `cotforge export` writes for each trainer (tasks/export/), as the card lists it.
EXPORTS = (
    ("verl", "`rl.parquet` (verl's RL columns: `data_source`, `prompt`, `ability`, `reward_model`, `extra_info`) with "
             "`reward.py`, whose `compute_score` runs cotforge's own verifiers (so rewards are this build's "
             "verdicts; `reward.custom_reward_function.path=reward.py`), and `sft.parquet` (`messages`) for "
             "`verl.trainer.sft_trainer`"),
    ("llamafactory", "`sft.jsonl`, `preference.jsonl` (`ranking: true`), `kto.jsonl` (`kto_tag`) in ShareGPT format "
                     "with the rationale in `<think>`, registered in `dataset_info.json` (`--dataset_dir` it, "
                     "`--dataset cotforge_sft`)"),
    ("axolotl", "`sft.jsonl` (`chat_template`, rationale in `reasoning_content`), `dpo.jsonl`, `kto.jsonl` and "
                "`prm.jsonl` (`stepwise_supervised`), each with a `<kind>.yaml` snippet to paste into a config"),
    ("openrlhf", "`sft.jsonl`, `preference.jsonl`, `rl.jsonl`, each with a `<kind>.flags` file holding the "
                 "`--data.*_key` flags for `openrlhf.cli.train_sft` / `train_dpo` / `train_ppo_ray`"),
)
FUNNEL = (  # (stage, count key in the report's counts) of the card's funnel
    ("generated", "samples"),
    ("verified", "samples verified correct"),
    ("voted", "questions with a majority answer"),
    ("deduplicated", "questions kept after dedup"),
)


def card_text(name: str, version: str, description: str, license_: str, recipe_yaml: str,
              views: list[PublishedView], counts: dict[str, int], lineage: dict[str, str],
              plots: list[str] | None = None, repo: str | None = None, mix: list[dict] | None = None,
              rules: list[str] | None = None) -> str:
    """A dataset card: YAML header with one config per view (so `load_dataset(path, "sft")` works), then the schema
    versions, how to load each view, the funnel, decontamination, lineage, plots, the recipe and the license.

    Nothing secret goes in: the recipe is the validated recipe (it has no credential fields) and the lineage names
    models and parameters only."""
    repo = repo or REPO_PLACEHOLDER
    plots = ["report/pass_rate.png"] if plots is None else plots
    header = {
        "license": license_,
        "pretty_name": name,
        "tags": ["reasoning", "chain-of-thought", "synthetic", "cotforge"],
        "configs": [{"config_name": v.name, "data_files": [{"split": "train", "path": f"{v.name}/*.parquet"}]}
                    for v in views],
    }
    view_rows = "\n".join(f"| `{v.name}` | {v.schema_version} | {v.format or '-'} | {v.rows} | {v.new_rows} | "
                          f"{v.carried_rows} | {_purpose(v.name)} |" for v in views)
    funnel = [(stage, counts[key]) for stage, key in FUNNEL if key in counts]
    funnel.append(("published", sum(v.rows for v in views)))
    funnel_rows = "\n".join(f"| {stage} | {count} | {_funnel_note(stage, counts, views)} |" for stage, count in funnel)
    all_counts = "\n".join(f"| {stage} | {count} |" for stage, count in counts.items())
    contaminated = {k: v for k, v in counts.items() if k.startswith("contaminated")}
    if contaminated:
        decontam = ("Questions were checked against the evaluation sets named in the recipe (`dedup.decontam`); "
                    "matches are flagged and kept out of every view.\n\n| check | count |\n|---|---|\n"
                    + "\n".join(f"| {k} | {v} |" for k, v in contaminated.items()))
    else:
        decontam = "No evaluation set was configured for decontamination in this build (`dedup.decontam.evals`)."
    lineage_rows = "\n".join(f"- **{k}**: {v}" for k, v in lineage.items())
    # The question mix (tasks.questions.question_mix): how many questions each source gave, and what it turned down.
    # A Hub seed dataset's row names the commit its revision resolved to when the build read it.
    sources = "\n".join(f"| `{m['source']}`" + (f" at `{m['revision']}`" if m.get("revision") else "")
                        + f" | {m['questions']} | {m['share']:.1%} | {m['rejected']} |"
                        for m in mix or []) or "| (not recorded) | | | |"
    loads = "\n".join(f'{v.name} = load_dataset("{repo}", "{v.name}", split="train", revision="{version}")'
                       for v in views)
    pulls = "\n".join(f"cotforge pull {repo} --config {v.name} --version {version}" for v in views)
    plot_lines = "\n".join(f"![{p.rsplit('/', 1)[-1]}]({p})" for p in plots) or "No plots."
    export_lines = "\n".join(f"- `cotforge export OUT --to {trainer} --version {version}`: {what}"
                             for trainer, what in EXPORTS)
    rule_lines = "\n".join(f"- {rule}" for rule in rules or [PROMPT_RULE, OWN_WORDS_RULE])
    return f"""---
{yaml.safe_dump(header, sort_keys=False).strip()}
---

# {name} (version {version})

{description or "A reasoning dataset built by cotforge."}

## Views

Each view is a config of this dataset; every Parquet file carries its schema name and version in its metadata.
This version is a complete snapshot: the rows of the version before it (carried unchanged), then the rows new in
{version}; each row's `added_in` names the version that first published it.

| config | schema version | format | rows | new in {version} | carried | use |
|---|---|---|---|---|---|---|
{view_rows}

### Training format

{format_lines(views)}

## How to load

```python
from datasets import load_dataset
{loads}
```

or as a Polars frame with a schema check (and migration of older schema versions):

```bash
{pulls}
```

```python
import cotforge
frame = cotforge.pull("{repo}", "{views[0].name if views else 'sft'}", version="{version}")
```

## Train with other trainers

`cotforge export` writes this version as another trainer's files, outside the version folder (default
`OUT/_exports/{version}/<trainer>/`), after checking it against its manifest, and prints the command to train:

{export_lines}

## Question sources

| source | questions | share | rows rejected (kept in the build's `question_rejects` shards with the reason) |
|---|---|---|---|
{sources}

## How it was made (funnel)

generated → verified → voted → deduplicated → published

| stage | count | what |
|---|---|---|
{funnel_rows}

All counts of this build:

| stage | count |
|---|---|
{all_counts}

Rows rejected by a verifier or deduplication are kept in the build's stage shards with their reasons; only the views
select rows. See `report/` for per-stage counts and the verdict breakdown.

## Verification and training rules

{rule_lines}

## Decontamination

{decontam}

## Lineage

{lineage_rows}

## Plots

{plot_lines}

## Recipe

```yaml
{recipe_yaml.strip()}
```

## License

{license_}
"""


def format_lines(views: list[PublishedView]) -> str:
    """Which TRL format each chat view's rows are in (one per row, chosen by the recipe's `views.<view>.format`), and
    the loss it implies in TRL."""
    by_format: dict[str, list[str]] = {}
    for v in views:
        if v.name in VIEWS and len(VIEWS[v.name].formats) > 1 and v.format in FORMATS:
            by_format.setdefault(v.format, []).append(f"`{v.name}`")
    lines = [f"- {', '.join(names)}: **{fmt}**, {FORMATS[fmt]}." for fmt, names in by_format.items()]
    if any(v.name == "prm" for v in views):
        lines.append("- `prm` is TRL's standard stepwise supervision (`prompt`, `completions`, `labels`): PRMTrainer "
                     "puts one label on the separator token that closes each step.")
    return "\n".join(lines) or "No chat view in this version."


def _purpose(view: str) -> str:
    return VIEWS[view].purpose if view in VIEWS else ""


def _funnel_note(stage: str, counts: dict[str, int], views: list[PublishedView]) -> str:
    if stage == "generated":
        reused = counts.get("samples reused from earlier runs", 0)
        return f"samples, for {counts.get('questions generated', '?')} questions" + (
            f" ({counts.get('samples generated this run', 0)} generated by this run, {reused} reused from the "
            "shards of an earlier run)" if reused else "")
    if stage == "verified":
        return "samples a verifier judged correct"
    if stage == "voted":
        return "questions with a majority answer"
    if stage == "deduplicated":
        return f"questions kept ({counts.get('questions dropped as duplicates', 0)} dropped as duplicates)"
    return "rows over all views: " + ", ".join(f"{v.name} {v.rows}" for v in views)


_FORM_WORDS = {
    "boxed": "`\\boxed{X}`", "answer_tag": "`<answer>X</answer>`", "answer_is": '"The (final) answer is X"',
    "is_the_answer": '"So X is the answer"', "hashes": "`#### X`",
    "answer_line": '"Answer: X" (or on the next line; a "**Final Answer**" heading over the answer)',
    "bare": "an answer part that is nothing but X (a number or option letter)",
}


def answer_contract_rule(verify: VerifyConfig) -> str:
    """The card's statement of the answer contract every verdict of this build was made under."""
    contract = verify.contract
    forms = "; ".join(_FORM_WORDS[f] for f in contract.forms)
    tags = ", ".join(f"`<{t}>`" for t in contract.reasoning_tags) or "none"
    return ("Answer contract (every verifier, `verify.contract`): a verdict reads only the text after the last closed "
            f"reasoning block ({tags}; one left open means no answer). There the answer is stated in one of the "
            f"accepted forms ({forms}); every statement states the same answer; nothing follows the last one but "
            "closing punctuation or markup (Minerva's \"I hope it is correct.\" included); the stated expression is "
            "the whole answer (no second candidate, alternative, range, relation the gold lacks, or number word "
            "such as \"thousand\"; a unit after a number is allowed). A text that addresses the grader breaks it. "
            "Anything else is not verified, with the contract's reason, and never a training example. Code answers: "
            "the tested program is the final code block after the reasoning that defines the function the tests "
            "use. One answer, stated last, is what graders that read the first match (lm-eval) and the last one "
            "(verl, math-verify) agree on.")


def verification_rules(verify: VerifyConfig, counts: dict[str, int], code_questions: int) -> list[str]:
    """What the card states about prompts, rendering, the training gate and the code sandbox of this build."""
    gates = ", ".join(f"`verify.{gate}.enforce: {getattr(verify, gate).enforce}`" for gate in ("length", "format"))
    rules = [PROMPT_RULE, OWN_WORDS_RULE, answer_contract_rule(verify),
             f"Training views (sft, sft_lenient, preference chosen, unpaired desirable, prm, rlvr pseudo-labels) take "
             f"only trainable samples: not cut off at the token limit and with one stated final answer unless the "
             f"recipe says otherwise ({gates}), and never a sample whose text breaks the answer contract; "
             f"sft_lenient never takes a sample a verifier judged wrong. "
             f"{counts.get('samples kept out of training views', 0)} samples were kept out."]
    if code_questions:
        if verify.sandbox.isolation == "none":
            rules.append("**Candidate programs ran without isolation**: the recipe opted out "
                         "(`verify.sandbox.isolation: none`): a plain subprocess with resource limits and a scrubbed "
                         "environment, no namespaces.")
        else:
            rules.append("Candidate programs ran under bubblewrap (user, pid, network, ipc and mount namespaces, the "
                         "interpreter read-only, a size-capped tmpfs as the only writable place, no network, no host "
                         "files, no secrets); expected values never entered the sandbox: it returned what the "
                         "program computed and the comparison was made outside, type-strict.")
        refused = counts.get("code samples not run: no isolation", 0)
        if refused:
            rules.append(f"{refused} code samples were not run because this machine offered no isolation (bwrap "
                         "missing or namespaces refused): their verdict is null with reason `no_isolation`.")
    return rules
