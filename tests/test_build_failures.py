"""A build whose backend fails most requests stops before publishing, exits non-zero, keeps its shards, and a rerun
once the backend recovers asks only the failed requests again and publishes the same rows an error-free build does."""

import hashlib
import json
import threading

import polars as pl
import pytest
import yaml

from cotforge.flows.cli import main as cli
from cotforge.tasks.core.context import BuildFailed
from cotforge.tasks.generate.accounting import check_generation, error_summary
from tests.fake_openai import OpenAIShapedServer, chat_completion


class FlakyServer(OpenAIShapedServer):
    """OpenAI-shaped: while `broken`, answers 503 to about 3 of every 4 questions (chosen by the question's text, so the
    same ones fail on every retry); otherwise a short rationale whose answer depends on the seed."""

    def __init__(self):
        self.broken = True
        self.asked: list[str] = []  # user message of every POST
        self.lock = threading.Lock()
        super().__init__(self._answer)

    def _answer(self, body: dict) -> tuple[int, dict]:
        question = body["messages"][-1]["content"]
        with self.lock:
            self.asked.append(question)
        if self.broken and hashlib.sha256(question.encode()).digest()[0] % 4:
            return 503, {"error": "overloaded"}
        texts = [f"Step 1: think.\nThe answer is {body['seed'] % 7 + i}." for i in range(body["n"])]
        return 200, chat_completion(texts)


def _recipe(tmp_path, url: str, name: str = "flaky") -> str:
    recipe = {"name": name, "seed": 5, "shard_size": 8,
              "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 20, "difficulty": 1}]},
              "generation": {"backend": "openai", "samples_per_question": 2,
                             "openai": {"base_url": url, "model": "m", "max_retries": 1, "backoff_s": 0.01,
                                        "backoff_max_s": 0.02, "timeout_s": 5}},
              "views": {"prm": {"enabled": False}}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.mark.slow
def test_failing_backend_stops_the_build_and_a_rerun_completes(tmp_path, capsys):
    out = tmp_path / "out"
    with FlakyServer() as server:
        recipe = _recipe(tmp_path, server.url)
        assert cli(["build", recipe, "--out", str(out), "--version", "0.1.0"]) == 3
        said = capsys.readouterr().err
        assert "build failed" in said and "HTTP 503" in said and "max_error_rate" in said
        assert not (out / "0.1.0").exists() and not (out / "latest").exists()  # nothing published
        assert list((out / "_work" / "samples").glob("*.parquet"))  # the shards are kept for the rerun
        failed_questions = {q for q in server.asked}  # (asked once plus one retry each)
        first_run = len(server.asked)
        good = sum(1 for q in set(server.asked) if hashlib.sha256(q.encode()).digest()[0] % 4 == 0)
        assert 0 < good < 20 and first_run == good + 2 * (20 - good)

        server.broken = False
        assert cli(["build", recipe, "--out", str(out), "--version", "0.1.0"]) == 0
        rerun = server.asked[first_run:]
        # only the questions that had failed are asked again, once each
        assert len(rerun) == 20 - good and len(set(rerun)) == len(rerun) and set(rerun) <= failed_questions
    report = json.loads((out / "0.1.0" / "report" / "report.json").read_text())
    assert report["generation"]["errors"]["total"] == 0
    assert report["generation"]["errors"]["requests retried this run"] == 20 - good
    sft = pl.read_parquet(out / "0.1.0" / "sft")
    assert sft.height > 0

    # The same rows as a build that never saw an error: same seeds, same texts, same verdicts.
    with FlakyServer() as healthy:
        healthy.broken = False
        clean = tmp_path / "clean"
        assert cli(["build", _recipe(tmp_path, healthy.url), "--out", str(clean), "--version", "0.1.0"]) == 0
    for view in ("sft", "preference", "rlvr"):
        a, b = pl.read_parquet(out / "0.1.0" / view), pl.read_parquet(clean / "0.1.0" / view)
        assert a.height == b.height and a.equals(b), view


def test_generation_errors_are_counted_by_kind():
    samples = pl.DataFrame({"sample_id": list("abcde"),
                            "error": ["HTTP 503: overloaded", "HTTP 503: busy", None, "ReadTimeout: 5 s", None]})
    summary = error_summary(samples)
    assert summary["total"] == 3 and summary["rate"] == 0.6
    assert summary["kinds"] == [{"kind": "HTTP 503", "count": 2, "example": "HTTP 503: overloaded"},
                                {"kind": "ReadTimeout", "count": 1, "example": "ReadTimeout: 5 s"}]
    check_generation(samples, 3, 0.6, "openai")  # at the threshold: goes on
    with pytest.raises(BuildFailed, match=r"3 of 5 samples \(60%\) failed on the openai backend.*HTTP 503"):
        check_generation(samples, 3, 0.5, "openai", "/tmp/engine.log")
    with pytest.raises(BuildFailed, match="no samples for 4 questions"):
        check_generation(samples.head(0), 4, 0.5, "vllm")


def test_a_recipe_whose_sources_give_no_questions_fails(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"question": "What is 2+2?", "answer": "four, no marker"}) + "\n")
    recipe = {"name": "empty", "questions": {"sources": [{"kind": "seed", "name": "s", "path": str(seeds),
                                                          "answer_format": "gsm8k"}]},
              "generation": {"backend": "simulated"}}
    path = tmp_path / "empty.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(BuildFailed, match="gave no questions.*no_gsm8k_marker"):
        from cotforge.flows.build import run_build
        from cotforge.schemas.recipe import load_recipe

        run_build(load_recipe(path), out=str(tmp_path / "out"))
    assert not (tmp_path / "out" / "0.1.0").exists()


def test_one_source_that_gives_nothing_stops_the_build_naming_it(tmp_path):
    """An empty seed file beside a good source: the build stops before sampling, naming the source and why, instead
    of publishing a mix the source silently vanished from."""
    from cotforge.schemas.config_questions import QuestionsConfig
    from cotforge.tasks.core.context import BuildContext
    from cotforge.tasks.core.shards import ShardStore
    from cotforge.tasks.questions.stage import questions_shards

    empty, latin1 = tmp_path / "empty.jsonl", tmp_path / "latin1.jsonl"
    empty.write_text("")
    latin1.write_bytes(b'{"question": "Combien fait 2+2 \xe0 la fin?", "answer": "4"}\n')
    family = {"kind": "family", "family": "arithmetic", "n": 3}
    ctx = BuildContext(ShardStore(str(tmp_path / "out")), "r")
    for path, why in ((empty, r"no rows at all"), (latin1, r"all 1 rows rejected \(not_utf8: 1\)")):
        config = QuestionsConfig(sources=[family, {"kind": "seed", "name": "s", "path": str(path), "n": 3}])
        with pytest.raises(BuildFailed, match=rf"questions.sources\[1\], seed source 's' \(.*{path.name}\): {why}"):
            questions_shards.fn(ctx, config, 8)
