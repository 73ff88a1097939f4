"""reasoning-gym tasks as a question source (optional extra `cotforge[gym]`, reasoning-gym 0.1.25).

reasoning-gym derives item i of a dataset from `Random(seed + i)`, so two datasets whose seeds differ by less than
their size share items. cotforge therefore asks for one item per dataset, with a seed of its own: a hash of (task,
effective config, recipe seed, index). Builds with other seeds, and versions that reseed, do not repeat items by
accident, and adding a source changes no other source's items.

Each question row keeps what re-scoring needs in `metadata_json["reasoning_gym"]`: task, effective config (the
curriculum level's values, then the recipe's `config`), the item's seed, the library version and the entry itself
(`question`, `answer`, `metadata`, as JSON). Items whose own gold answer the task's scorer does not accept after that
JSON round trip are rejected with their reason (their verdicts could not be trusted), never dropped silently.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from importlib import metadata as importlib_metadata
from typing import Any

from cotforge.schemas.config_questions import ReasoningGymSourceConfig
from cotforge.schemas.records import Question, normalize_text, question_id_for, stable_id
from cotforge.tasks.questions.seeds import RejectedQuestion

GYM_PACKAGE = "reasoning-gym"
MAX_TRIES_PER_ITEM = 20


def gym_version() -> str | None:
    """The installed reasoning-gym version (from the package metadata: the module's `__version__` lags behind)."""
    try:
        return importlib_metadata.version(GYM_PACKAGE)
    except importlib_metadata.PackageNotFoundError:
        return None


def import_gym():
    """The `reasoning_gym` module, or an error saying how to install it."""
    try:
        import reasoning_gym
    except ImportError as error:
        raise RuntimeError(f"reasoning-gym is not installed ({error}); pip install 'cotforge[gym]'") from None
    return reasoning_gym


def task_names() -> list[str]:
    """Every task reasoning-gym registers."""
    import_gym()  # importing the package registers the tasks
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def effective_config(task: str, config: dict[str, Any], level: int | None) -> dict[str, Any]:
    """The task's config fields: its curriculum at `level` (every attribute, capped at its top level), then the
    recipe's `config` on top. Without a level, only the recipe's `config` (the task's defaults fill the rest)."""
    gym = import_gym()
    from reasoning_gym.factory import CURRICULA, DATASETS

    if task not in DATASETS:
        raise ValueError(f"unknown reasoning-gym task {task!r} ({len(DATASETS)} known, e.g. {sorted(DATASETS)[:5]})")
    values: dict[str, Any] = {}
    if level is not None:
        if task not in CURRICULA:
            raise ValueError(f"reasoning-gym task {task!r} has no curriculum: `level` needs one; give `config`")
        curriculum = gym.factory.create_curriculum(task)
        curriculum.set_global_level(level)
        generated = curriculum.generate_configuration()
        values = {f.name: getattr(generated, f.name) for f in dataclasses.fields(generated) if f.init}
    values.update(config)
    values.pop("seed", None)
    values.pop("size", None)
    return json.loads(json.dumps(values, default=_jsonable))  # what the row stores is what regenerates the item


def item_seed(task: str, config: dict[str, Any], recipe_seed: int, index: int) -> int:
    """Item `index`'s own dataset seed: a hash, so no two items' `seed + i` ranges meet by construction."""
    key = stable_id("reasoning_gym", task, json.dumps(config, sort_keys=True), str(recipe_seed), str(index),
                    length=15)
    return int(key, 16)


@lru_cache(maxsize=64)
def _dataset(task: str, config_json: str, seed: int):
    return import_gym().create_dataset(task, size=1, seed=seed, **json.loads(config_json))


def make_entry(task: str, config: dict[str, Any], seed: int) -> dict:
    """The one item of `task` with this config and seed (what re-scoring regenerates and compares)."""
    return _dataset(task, json.dumps(config, sort_keys=True), seed)[0]


def scorer(task: str, config: dict[str, Any]):
    """The task's `score_answer`, from a dataset with the row's config (some scorers read their config)."""
    return _dataset(task, json.dumps(config, sort_keys=True), 0).score_answer


def entry_json(entry: dict) -> dict:
    """An entry as JSON data (tuples become lists, sets sorted lists, other objects their repr)."""
    return json.loads(json.dumps({"question": entry["question"], "answer": entry.get("answer"),
                                  "metadata": entry.get("metadata", {})}, default=_jsonable, sort_keys=True))


def _jsonable(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return repr(value)


def gold_accepted(task: str, config: dict[str, Any], stored: dict) -> str | None:
    """None when the task's scorer gives the entry's own answer (against the stored JSON entry) a full score; else
    why not. An entry without an answer (tasks with many valid answers) has nothing to check."""
    if stored.get("answer") is None:
        return None
    try:
        score = scorer(task, config)(str(stored["answer"]), stored)
    except Exception as error:  # a scorer that breaks on its own entry after the JSON round trip
        return f"gym_scorer_error:{type(error).__name__}"
    if not isinstance(score, (int, float)) or score != 1.0:
        return f"gym_gold_not_accepted:{score}"
    return None


def gym_questions(source: ReasoningGymSourceConfig, count: int, recipe_seed: int, recipe_hash: str,
                  build_id: str) -> tuple[list[Question], list[RejectedQuestion]]:
    """`count` distinct questions of one reasoning-gym source, and the items rejected on the way."""
    version = gym_version()
    config = effective_config(source.task, source.config, source.level)
    questions: list[Question] = []
    rejected: list[RejectedQuestion] = []
    seen: set[str] = set()
    index = 0
    while len(questions) < count and index < count * MAX_TRIES_PER_ITEM:
        seed = item_seed(source.task, config, recipe_seed, index)
        stored = entry_json(make_entry(source.task, config, seed))
        spec = {"task": source.task, "config": config, "level": source.level, "index": index, "seed": seed,
                "version": version, "entry": stored}
        index += 1
        if normalize_text(stored["question"]) in seen:
            continue  # the same question again (small task spaces): the next index, not a rejected row
        why = gold_accepted(source.task, config, stored)
        if why is not None:
            rejected.append(RejectedQuestion(source=source.tag, row=index - 1, reason=why, text=stored["question"],
                                             row_json=json.dumps(spec, sort_keys=True), recipe_hash=recipe_hash,
                                             build_id=build_id))
            continue
        seen.add(normalize_text(stored["question"]))
        gold = stored["answer"]
        questions.append(Question(
            question_id=question_id_for(stored["question"]), source=source.tag, family=None,
            difficulty=source.level, text=stored["question"], gold_answer=None if gold is None else str(gold),
            answer_type="text", verifier="reasoning_gym",
            metadata_json=json.dumps({"reasoning_gym": spec}, sort_keys=True), recipe_hash=recipe_hash,
            build_id=build_id))
    if len(questions) < count:
        raise ValueError(f"{source.tag}: only {len(questions)} distinct questions of the {count} asked for after "
                         f"{index} items; ask for fewer or change `config`/`level`")
    return questions, rejected
