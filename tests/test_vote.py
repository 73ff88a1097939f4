"""Majority vote, pseudo-labels, pass rate with k and the reference model, difficulty bins and the band kernel."""

import pyarrow as pa
import pytest

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_verify import VerifyConfig
from cotforge.schemas.records import Question, Verdict
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardStore, shard_key
from cotforge.tasks.verify.vote import difficulty_bin, majority, vote_answers, vote_shard
from tests.verify_helpers import question


def _verdicts(rows: list[tuple], untrainable: tuple[str, ...] = ()) -> pa.Table:
    """Rows (sample, question, answer, verdict); the samples named in `untrainable` answered by a fallback only."""
    return to_table([Verdict(sample_id=s, question_id=q, extracted_answer=a,
                             extraction_method=("last_number" if s in untrainable else "answer_is") if a else None,
                             verdict=v, reason="x", verifier_name="math", verifier_version="2",
                             trainable=a is not None and s not in untrainable,
                             untrainable_reason="fallback:last_number" if s in untrainable else None, recipe_hash="r",
                             build_id="b") for s, q, a, v in rows], Verdict)


QUESTIONS = to_table([question("g", "4"), question("p", None), question("w", None), question("empty", "1")], Question)
VERDICTS = _verdicts([
    ("g0", "g", "4", True), ("g1", "g", "4", True), ("g2", "g", "5", False), ("g3", "g", None, False),
    ("p0", "p", "7", None), ("p1", "p", "7", None), ("p2", "p", "7", None), ("p3", "p", "8", None),
    ("w0", "w", "1", None), ("w1", "w", "2", None), ("w2", "w", "3", None),
])


def test_votes_with_gold_pseudo_labels_and_missing_samples():
    votes = {v["question_id"]: v for v in vote_answers(VERDICTS, QUESTIONS, VerifyConfig(pseudo_label_min_share=0.6),
                                                       "simulated", "r", "b", k=4).to_pylist()}
    g = votes["g"]
    assert (g["majority_answer"], g["vote_share"], g["n_answered"], g["n_correct"]) == ("4", 2 / 3, 3, 2)
    assert (g["pass_rate"], g["pass_rate_basis"], g["pseudo_label"], g["difficulty_bin"]) == (0.5, "gold", None,
                                                                                             "medium")
    assert (g["k"], g["reference_model"], g["n_samples"]) == (4, "simulated", 4)
    p = votes["p"]  # no gold, 3 of 4 agree: the majority becomes a pseudo-label
    assert (p["pseudo_label"], p["vote_share"], p["pass_rate"], p["pass_rate_basis"]) == ("7", 0.75, 0.75,
                                                                                          "pseudo_label")
    w = votes["w"]  # no gold and no clear majority: no label, no pass rate
    assert (w["pseudo_label"], w["pass_rate"], w["difficulty_bin"]) == (None, None, "unknown")
    assert w["majority_answer"] == "1"  # ties break on the answer text: deterministic
    e = votes["empty"]
    assert (e["n_samples"], e["majority_answer"], e["pass_rate"], e["vote_share"]) == (0, None, None, 0.0)


def test_a_pseudo_label_comes_only_from_stated_final_answers():
    """Three of four samples give 7, but two of them only by the last-number fallback: no pseudo-label (an rlvr
    solution is never made from answers the model did not state)."""
    rows = [("p0", "p", "7", None), ("p1", "p", "7", None), ("p2", "p", "7", None), ("p3", "p", "8", None)]
    votes = vote_answers(_verdicts(rows, untrainable=("p1", "p2")), QUESTIONS, VerifyConfig(pseudo_label_min_share=0.6),
                         "simulated", "r", "b").to_pylist()
    p = next(v for v in votes if v["question_id"] == "p")
    assert p["majority_answer"] == "7" and p["vote_share"] == 0.75  # the vote itself still sees every answer
    assert (p["pseudo_label"], p["pass_rate"]) == (None, None)
    stated = vote_answers(_verdicts(rows), QUESTIONS, VerifyConfig(pseudo_label_min_share=0.6), "simulated", "r",
                          "b").to_pylist()
    assert next(v for v in stated if v["question_id"] == "p")["pseudo_label"] == "7"


def test_difficulty_bins_and_edges():
    assert [difficulty_bin(r) for r in (None, 0.0, 0.2, 0.5, 0.9, 1.0)] == [
        "unknown", "never", "hard", "medium", "easy", "always"]
    assert difficulty_bin(0.2, (0.1, 0.3)) == "medium"
    with pytest.raises(ValueError, match="difficulty_edges"):
        VerifyConfig(difficulty_edges=[0.7, 0.2])


def test_majority_kernel():
    assert majority([]) == (None, 0)
    assert majority(["b", "a", "b", "a"]) == ("a", 2)


def test_vote_shard_writes_and_reuses(tmp_path):
    store = ShardStore(str(tmp_path))
    v_ref = store.write("verdicts", shard_key("verdicts", "x"), VERDICTS)
    q_ref = store.write("questions", shard_key("questions", "x"), QUESTIONS)
    first = vote_shard.fn(BuildContext(store, "r"), v_ref, q_ref, VerifyConfig(), "m", 4)
    assert first.rows == 4
    assert vote_shard.fn(BuildContext(store, "r"), v_ref, q_ref, VerifyConfig(), "m", 4) == first
    assert vote_shard.fn(BuildContext(store, "r"), v_ref, q_ref, VerifyConfig(), "m", 8).key != first.key
