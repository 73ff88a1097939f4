"""Content-addressed inputs: a question shard's key is its rows (seed file bytes, the Hub commit, synthesis), and a
stage's key covers the code it runs, with no number to bump by hand."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from cotforge.schemas.config_generation import GenerationConfig
from cotforge.schemas.config_questions import QuestionsConfig
from cotforge.tasks.core.code import code_hash, code_modules
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardStore
from cotforge.tasks.generate.sample import sample_shard
from cotforge.tasks.generate.simulated import SimulatedGenerator
from cotforge.tasks.questions.stage import questions_shards, rejects_ref

ROOT = Path(__file__).resolve().parents[1]
SEED_ROWS = [json.loads(line) for line in (ROOT / "data/seeds/gsm8k_train_200.jsonl").read_text().splitlines()[:12]]
GENERATION = GenerationConfig(backend="simulated", samples_per_question=2)


class CountingGenerator:
    """The simulated solver, recording which questions it was asked to answer."""

    def __init__(self):
        self.inner = SimulatedGenerator()
        self.backend, self.model, self.revision = self.inner.backend, self.inner.model, self.inner.revision
        self.asked: list[str] = []

    def generate(self, requests):
        self.asked += [r.request_id for r in requests]
        return self.inner.generate(requests)

    def close(self):
        pass


def _write_seed(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _build(store: ShardStore, config: QuestionsConfig, recipe_hash: str = "recipe") -> tuple[list, list, list[str]]:
    """The questions stage and the sampling stage over its shards: (question refs, sample refs, questions asked)."""
    ctx = BuildContext(store, recipe_hash, seed=3)
    generator = CountingGenerator()
    questions = questions_shards.fn(ctx, config, 4)
    samples = [sample_shard.fn(ctx, q, generator, GENERATION) for q in questions]
    return questions, samples, generator.asked


def _ids(store: ShardStore, ref) -> list[str]:
    return store.read(ref).column("question_id").to_pylist()


def test_edited_seed_file_rebuilds_exactly_the_shards_it_changes(tmp_path):
    seed = _write_seed(tmp_path / "seed.jsonl", SEED_ROWS)
    config = QuestionsConfig(sources=[{"kind": "family", "family": "arithmetic", "n": 6, "difficulty": 2},
                                      {"kind": "seed", "name": "gsm8k", "path": seed, "answer_format": "gsm8k"}])
    store = ShardStore(str(tmp_path / "out"))
    questions, samples, asked = _build(store, config)
    assert [r.rows for r in questions] == [4, 2, 4, 4, 4]  # family: 2 shards; seed file: 3 shards
    assert len(asked) == 18

    # The same recipe again: every shard reused, nothing sampled.
    again_q, _, asked_again = _build(store, config)
    assert [r.key for r in again_q] == [r.key for r in questions] and asked_again == []

    # Fix a typo in row 5 of the seed file (the second seed shard): that shard alone changes, and only its four
    # questions are sampled again; the family's shards and the other seed shards keep their keys and samples.
    edited = [dict(r) for r in SEED_ROWS]
    edited[5]["question"] = edited[5]["question"].replace("?", " exactly?")
    _write_seed(tmp_path / "seed.jsonl", edited)
    new_q, new_s, asked_new = _build(store, config)
    changed = [i for i, (a, b) in enumerate(zip(questions, new_q)) if a.key != b.key]
    assert changed == [3]
    assert [i for i, (a, b) in enumerate(zip(samples, new_s)) if a.key != b.key] == [3]
    assert sorted(asked_new) == sorted(_ids(store, new_q[3]))
    assert len(asked_new) == 4 and set(asked_new) != set(_ids(store, questions[3]))
    new_text = store.read(new_q[3]).column("text").to_pylist()
    assert any(t.endswith(" exactly?") for t in new_text)

    # A row that stops parsing shifts the rows after it: the seed file's later shards change, the family's never do.
    broken = [dict(r) for r in edited]
    broken[1]["answer"] = broken[1]["answer"].replace("####", "answer:")
    _write_seed(tmp_path / "seed.jsonl", broken)
    broken_q, _, asked_broken = _build(store, config)
    assert [r.key for r in broken_q[:2]] == [r.key for r in questions[:2]]
    assert [r.rows for r in broken_q] == [4, 2, 4, 4, 3]
    assert asked_broken and not set(asked_broken) & set(_ids(store, questions[0]) + _ids(store, questions[1]))
    rejects = store.read(rejects_ref(BuildContext(store, "recipe", seed=3), config)).to_pylist()
    assert [(r["source"], r["row"], r["reason"]) for r in rejects] == [("seed:gsm8k", 1, "no_gsm8k_marker")]


def test_new_build_of_the_same_questions_reuses_their_shards(tmp_path):
    """A question shard's key is its content, not the recipe hash or the version: another recipe (say, a changed
    verifier) or a new version with the same questions samples nothing again."""
    config = QuestionsConfig(sources=[{"kind": "family", "family": "arithmetic", "n": 5, "difficulty": 2}])
    store = ShardStore(str(tmp_path / "out"))
    first, _, asked = _build(store, config, "recipe-a")
    second, _, asked_again = _build(store, config, "recipe-b")
    assert asked and asked_again == [] and [r.key for r in first] == [r.key for r in second]


def test_moving_hub_dataset_rebuilds_its_shards_and_rows_name_the_commit(hub_server, tmp_path):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from huggingface_hub import CommitOperationAdd, HfApi

    from cotforge.tasks.questions.stage import question_mix

    def parquet(rows):
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        return buffer.getvalue()

    api = HfApi()
    repo = "cotforge-test/moving"
    api.create_repo(repo, repo_type="dataset")
    first = api.create_commit(repo, [CommitOperationAdd("data/train-00000.parquet", parquet(SEED_ROWS[:6]))],
                              commit_message="v1", repo_type="dataset").oid
    hub = {"kind": "seed", "name": "hub", "hub": {"repo": repo}, "answer_format": "gsm8k"}
    config = QuestionsConfig(sources=[{"kind": "family", "family": "arithmetic", "n": 4, "difficulty": 2}, hub])
    pinned = QuestionsConfig(sources=[config.sources[0], {**hub, "hub": {"repo": repo, "revision": first}}])
    store = ShardStore(str(tmp_path / "out"))
    before, _, _ = _build(store, config)
    rows = pl.from_arrow(store.read_all(before))
    assert set(rows.filter(pl.col("source") == "seed:hub")["source_revision"]) == {f"{repo}@{first}"}
    assert rows.filter(pl.col("source") != "seed:hub")["source_revision"].null_count() == 4
    mix = {m["source"]: m for m in question_mix(rows, None)}
    assert mix["seed:hub"]["revision"] == f"{repo}@{first}" and mix["family:arithmetic"]["revision"] is None

    # The same rows, committed again: the dataset moved (a new commit), its content did not.
    second = api.create_commit(repo, [CommitOperationAdd("data/train-00000.parquet", parquet(SEED_ROWS[:6])),
                                      CommitOperationAdd("notes.txt", b"moved")],
                               commit_message="v2", repo_type="dataset").oid
    after, _, asked = _build(store, config)
    assert after[0].key == before[0].key  # the family shard is reused
    assert [a.key != b.key for a, b in zip(before[1:], after[1:])] == [True, True]  # the Hub shards are rebuilt
    assert len(asked) == 6
    assert set(pl.from_arrow(store.read_all(after[1:]))["source_revision"]) == {f"{repo}@{second}"}
    # Pinned to the first commit, the build reads exactly what it read before: the old shards, nothing sampled.
    pinned_refs, _, asked_pinned = _build(store, pinned)
    assert [r.key for r in pinned_refs] == [r.key for r in before] and asked_pinned == []


def test_card_names_the_hub_commit_of_a_seed_source():
    from cotforge.tasks.publish.card import card_text

    mix = [{"source": "seed:math", "questions": 3, "share": 1.0, "rejected": 0, "reject_reasons": {},
            "revision": "org/math@" + "a" * 40}]
    card = card_text("t", "0.1.0", "", "mit", "name: t", [], {}, {}, mix=mix)
    assert "| `seed:math` at `org/math@" + "a" * 40 + "` | 3 |" in card


# --- the code part of stage keys ------------------------------------------------------------------------------------


def test_stage_code_covers_the_kernels_each_stage_runs():
    tasks = "cotforge.tasks"
    expect = {
        f"{tasks}.verify.cascade": {f"{tasks}.verify.rules", f"{tasks}.verify.extract", f"{tasks}.verify.sandbox"},
        f"{tasks}.verify.vote": {"cotforge.schemas.records"},
        f"{tasks}.dedup.stage": {f"{tasks}.dedup.minhash", f"{tasks}.dedup.cluster", f"{tasks}.dedup.index"},
        f"{tasks}.generate.sample": {f"{tasks}.generate.simulated", f"{tasks}.questions.families.arithmetic"},
        f"{tasks}.questions.synth": {f"{tasks}.questions.synth_checks", f"{tasks}.verify.extract"},
        f"{tasks}.label.steps": {f"{tasks}.label.step_judge", f"{tasks}.verify.cascade"},
    }
    for module, kernels in expect.items():
        modules = code_modules(module)
        assert kernels <= modules, (module, kernels - modules)
        assert not any(m.startswith("cotforge.flows") for m in modules) and "cotforge" not in modules
        assert len(code_hash(module)) == 16
    assert f"{tasks}.verify.cascade" not in code_modules(f"{tasks}.dedup.stage")
    # Sampling without the adaptive budget or guidance runs no verifier: a verifier change never resamples.
    assert not any(m.startswith(f"{tasks}.verify") for m in code_modules(
        f"{tasks}.generate.sample", ("cotforge.tasks.verify", "cotforge.schemas.config_verify")))


def _tree_copy(tmp_path: Path) -> Path:
    """A copy of the package (cotforge/ with its stage folders) to edit."""
    root = tmp_path / "tree"
    (root / "cotforge").mkdir(parents=True)
    shutil.copy(ROOT / "cotforge" / "__init__.py", root / "cotforge" / "__init__.py")
    for folder in ("tasks", "schemas", "flows"):
        shutil.copytree(ROOT / folder, root / "cotforge" / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _hashes(root: Path, modules: list[str]) -> dict[str, str]:
    script = ("import json, sys; from cotforge.tasks.core.code import code_hash; "
              "print(json.dumps({m: code_hash(m) for m in sys.argv[1:]}))")
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", script, *modules], env=env, cwd=root, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def test_kernel_change_changes_the_keys_of_the_stages_that_run_it_and_no_others(tmp_path):
    root = _tree_copy(tmp_path)
    stages = ["cotforge.tasks.verify.cascade", "cotforge.tasks.verify.vote", "cotforge.tasks.dedup.stage",
              "cotforge.tasks.generate.sample", "cotforge.tasks.label.steps"]
    base = _hashes(root, stages)
    assert base == {m: code_hash(m) for m in stages}  # the copy hashes like the checkout

    # A docstring and a comment are not code: every key stays.
    _edit(root / "cotforge/tasks/verify/rules.py", '"""', '"""Reworded. ')
    _edit(root / "cotforge/tasks/dedup/minhash.py", "\nimport", "\n# a new comment\nimport")
    assert _hashes(root, stages) == base

    # A kernel change in the verifiers (one constant): the stages that verify change, dedup and vote do not.
    rules = root / "cotforge/tasks/verify/rules.py"
    rules.write_text(rules.read_text() + "\nSTRICTER_NUMBERS = True\n")
    after = _hashes(root, stages)
    changed = {m for m in stages if after[m] != base[m]}
    assert changed == {"cotforge.tasks.verify.cascade", "cotforge.tasks.generate.sample", "cotforge.tasks.label.steps"}

    # A change in the MinHash kernel: only dedup.
    _edit(root / "cotforge/tasks/dedup/minhash.py", "def ", "def _unused_helper():\n    return 0\n\n\ndef ")
    again = _hashes(root, stages)
    assert {m for m in stages if again[m] != after[m]} == {"cotforge.tasks.dedup.stage"}


def test_code_hash_is_cheap_after_the_first_call():
    code_hash("cotforge.tasks.verify.cascade")  # the first call reads the sources
    start = time.process_time()  # CPU time: other load on the machine does not count
    for _ in range(1000):
        code_hash("cotforge.tasks.verify.cascade")
    assert time.process_time() - start < 0.5  # cached: a shard key per shard costs nothing


@pytest.mark.parametrize("module", ["tests.test_content_keys", "__main__", "json", "cotforge.flows.build"])
def test_code_outside_the_stages_hashes_to_nothing(module):
    assert code_hash(module) == ""


@pytest.mark.slow
def test_edited_seed_file_through_the_build_flow_recomputes_only_that_shard(tmp_path):
    """The whole pipeline: after one seed row is edited, each per-shard stage (samples, verdicts, votes, step labels)
    writes exactly one new shard; the global stages (dedup, decontamination) run again, as they compare all rows."""
    from cotforge.flows.build import build
    from cotforge.schemas.recipe import parse_recipe

    seed = _write_seed(tmp_path / "seed.jsonl", SEED_ROWS)
    recipe = parse_recipe({
        "name": "edited", "seed": 4, "shard_size": 4,
        "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 6, "difficulty": 2},
                                  {"kind": "seed", "name": "gsm8k", "path": seed, "answer_format": "gsm8k"}]},
        "generation": {"backend": "simulated", "samples_per_question": 2,  # seed questions: permanent errors
                       "max_error_rate": 1.0},
        "views": {"prm": {"rollouts": 2, "max_steps": 3}},
    })
    out = tmp_path / "out"

    def markers() -> set[Path]:
        return set((out / "_work").rglob("*.done.json"))

    build(recipe, out=str(out), version="0.1.0")
    before = markers()
    edited = [dict(r) for r in SEED_ROWS]
    edited[9]["question"] = edited[9]["question"].replace("?", " in all?")
    _write_seed(tmp_path / "seed.jsonl", edited)
    build(recipe, out=str(out), version="0.1.0")
    new = {}
    for path in markers() - before:
        new[path.parent.name] = new.get(path.parent.name, 0) + 1
    assert new == {"questions": 1, "samples": 1, "samples-parts": 1, "verdicts": 1, "votes": 1, "step_labels": 1, "dedup": 1,
                   "dedup_index": 1, "sample_dedup": 1, "sample_dedup_index": 1, "decontam": 1,
                   "dedup_sketch": 2}  # the changed question shard's and sample shard's sketches; the merge reruns


def test_code_hash_reads_sources_without_importing_them():
    """Hashing a stage's code must not load what it could run (vLLM, llama.cpp, Prefect, ...)."""
    script = ("import sys; from cotforge.tasks.core.code import code_hash; before = set(sys.modules); "
              "[code_hash(m) for m in ('cotforge.tasks.generate.sample', 'cotforge.tasks.label.steps', "
              "'cotforge.tasks.questions.synth', 'cotforge.tasks.dedup.stage')]; "
              "print(sorted(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
