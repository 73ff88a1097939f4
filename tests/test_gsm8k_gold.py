"""Every GSM8K worked solution, written the way the default system prompt asks ("The answer is N."), verifies against
its gold through the build's verify path: real data keeps passing while the math verifier is hardened."""

import json
import re
import time
from pathlib import Path

import pytest

from cotforge.schemas.config_questions import SeedSourceConfig
from cotforge.schemas.config_verify import VerifyConfig
from cotforge.tasks.questions.seed_files import SeedRows
from cotforge.tasks.questions.seeds import parse_seed_rows
from cotforge.tasks.verify.cascade import verify_samples
from cotforge.tasks.verify.pool import VerifierPool
from tests.conftest import missing_component
from tests.verify_helpers import sample, tables

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"
_CALCULATOR = re.compile(r"<<[^>]*>>")
_MARKER = re.compile(r"\n?####\s*(.*)\s*$", re.S)


def as_model_output(solution: str) -> str:
    """The worked lines without calculator annotations, the `#### N` line written as "The answer is N."."""
    final = _MARKER.search(solution)
    return _CALCULATOR.sub("", solution[:final.start()]).rstrip() + f"\nThe answer is {final.group(1).strip()}."


@pytest.mark.slow
def test_every_gsm8k_gold_solution_verifies():
    if not GSM8K.is_dir():  # CI clones beside ../shared: there its absence is a broken setup, not a skip
        missing_component("the shared GSM8K copy (../shared/data/gsm8k) is not on this machine")
    rows = [json.loads(line) for split in ("train", "test") for line in (GSM8K / f"{split}.jsonl").open()]
    assert len(rows) == 7473 + 1319
    source = SeedSourceConfig(name="gsm8k", path=str(GSM8K), answer_format="gsm8k")
    questions, rejected = parse_seed_rows(source, SeedRows(list(enumerate(rows)), dataset="gsm8k"), None, 0,
                                          "r", "b")
    assert not rejected, [(r.row, r.reason) for r in rejected[:5]]  # the gold of every row parses
    samples = [sample(q.question_id, 0, as_model_output(row["answer"])) for q, row in zip(questions, rows)]
    start = time.perf_counter()
    with VerifierPool(2) as pool:  # the stage's own function and pool, all rows in one batch
        verdicts = verify_samples(*tables(questions, samples), "r", "b", VerifyConfig(), pool).to_pylist()
    seconds = time.perf_counter() - start
    failed = [(v["question_id"], v["extracted_answer"], v["reason"]) for v in verdicts if v["verdict"] is not True]
    print(f"GSM8K gold solutions verified: {len(verdicts) - len(failed)}/{len(verdicts)} in {seconds:.1f} s")
    for failure in failed:
        print("  not verified:", failure)
    assert len(verdicts) == len(rows) and not failed
