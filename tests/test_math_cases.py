"""Math-Verify's own test cases through cotforge's real path (seed gold parsing, extraction, normalisation, the `math`
verifier in a VerifierPool), three ways: the bare prediction as the model's whole output, a text ending in
`\\boxed{PRED}`, and a text ending in "The answer is PRED.". Agreement with the outcome Math-Verify's authors expect
is printed per form with every disagreement; cases cotforge cannot express are listed and skipped:
- options it has no setting for (Math-Verify's `match_types`: cotforge always reads LaTeX and plain expressions),
  where they change Math-Verify's own result;
- bare predictions that state no final answer (no box, no answer statement, not an answer alone): no answer
  (`no_answer_found`, false; there is no last-number guess);
- the boxed and "answer is" forms of predictions that are whole solution texts, not answers;
- texts that break the answer contract (tasks/verify/contract.py: words after the final answer such as "I hope it
  is correct. <|im_start|>user", a second candidate, a relation like `x \\approx 11` where the gold is a value): they
  are refused with the contract's reason, listed, and never accepted.
A wrong acceptance (cotforge True where Math-Verify expects False) fails the test in any form.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from pathlib import Path

import pytest

from cotforge.schemas.config_verify import VerifyConfig
from cotforge.tasks.questions.seeds import RowError, parse_boxed
from cotforge.tasks.verify.cascade import verify_samples
from cotforge.tasks.verify.contract import CONTRACT_REASONS
from cotforge.tasks.verify.pool import VerifierPool
from tests.conftest import missing_component
from tests.verify_helpers import question, sample, tables

try:
    from cotforge.schemas.config_verify import MathConfig
except ImportError:  # a checkout from before the math options (for before/after measurements)
    MathConfig = None

pytestmark = pytest.mark.slow  # 810 verifications and Math-Verify's own verdicts: about half a minute

CASES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "math-verify-cases" / "cases.jsonl"
FORMS = ("bare", "boxed", "answer_is")
REFUSALS = CONTRACT_REASONS  # the contract's reasons (alternatives and relations: decided beside the gold)
PREFIX = "Working through the problem step by step gives the result.\n"
_SPAN = re.compile(r"^\s*(?:\$\$(.*)\$\$|\$(.*)\$|\\\((.*)\\\)|\\\[(.*)\\\])\s*$", re.S)
_PROSE_WORD = re.compile(r"(?<![\\\w])[A-Za-z]{3,}(?![\w{])")
_KINDS = {  # answer kinds of the before/after table: a case counts in every kind its gold or prediction shows
    "sets": r"\\\{|\\boxed\{[^}]*\}[^\\]{0,60}\\boxed|\band\b|\bor\b|^\$?-?\d+\s*,\s*-?\d+\$?$",
    "fractions and radicals": r"\\[dtc]?frac|\\sqrt|\d\s*/\s*\d",
    "intervals": r"\\cup|\\infty|[\[(]\s*-?[\w\\{}.]+\s*,\s*[\w\\{}.+-]+\s*[)\]]",
    "tuples": r"\(\s*-?[\w\\{}.]+\s*[,;]\s*-?[\w\\{}.]+(?:\s*[,;]\s*-?[\w\\{}.]+)*\s*\)",
    "matrices": r"matrix|\\begin\{array",
    "units": r"\\text\{\s*[a-z]|\\mbox|\\textnormal|\^\\circ|%|percent|pct|m²|€|\\\$|yuan",
    "decimals": r"\d\.\d|(?<![\d,])\d+,\d{1,2}(?![\d,])",
}


def load_cases() -> list[dict]:
    return [json.loads(line) for line in CASES.open()]


def answer_kinds(case: dict) -> list[str]:
    text = case["gold"] + "\n" + case["pred"]
    return [kind for kind, pattern in _KINDS.items() if re.search(pattern, text, re.M)] or ["other"]


def is_solution_text(pred: str) -> bool:
    """A prediction that is a worked solution (prose), not an answer: it cannot go inside a box or a statement."""
    outside_math = re.sub(r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+\{[^{}]*\}", " ", pred, flags=re.S)
    words = [w for w in _PROSE_WORD.findall(outside_math) if w.lower() not in ("and", "percent", "percentage", "pct")]
    return bool(words) or "\n" in pred.strip()


def form_text(pred: str, form: str) -> str:
    if form == "bare":
        return pred
    if form == "boxed":
        span = _SPAN.match(pred)
        inner = next((g for g in span.groups() if g is not None), pred) if span else pred
        return PREFIX + "\\boxed{" + inner.strip() + "}"
    return PREFIX + "The answer is " + pred.strip().rstrip(".") + "."


def gold_answer(gold: str) -> str:
    """The gold as a seed source stores it: boxed solutions through the `boxed` answer format, others (and a box the
    seed parser rejects, as `answer_format: text` keeps it) as given."""
    try:
        return parse_boxed(gold).gold if re.search(r"\\(?:boxed|fbox)\s*\{", gold) else gold
    except RowError:
        return gold


def math_verify_alone(case: dict, match_types: list[str]) -> bool:
    """Math-Verify's own verdict on the case with these extraction targets (and the case's other options)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    targets = [LatexExtractionConfig(boxed_match_priority=0)] if "latex" in match_types else []
    targets += [ExprExtractionConfig()] if "expr" in match_types else []
    gold, pred = (parse(case[k], targets, parsing_timeout=None) for k in ("gold", "pred"))
    return bool(verify(gold, pred, float_rounding=case["precision"], strict=case["strict"],
                       allow_set_relation_comp=case["allow_set_relation_comp"], timeout_seconds=None))


def unexpressible(case: dict) -> str | None:
    """Why cotforge cannot run the case with its options, or None when it can."""
    if sorted(case["match_types"]) != ["expr", "latex"] and \
            math_verify_alone(case, case["match_types"]) != math_verify_alone(case, ["latex", "expr"]):
        return f"match_types {case['match_types']}: cotforge always reads both LaTeX and expressions"
    return None


def run_cases(cases: list[dict], pool: VerifierPool) -> dict[tuple[int, str], dict]:
    """Every case in every form through `verify_samples`: {(case id, form): verdict row}."""
    by_options: dict[tuple, list[dict]] = defaultdict(list)
    for case in cases:
        by_options[(case["precision"], case["strict"], case["allow_set_relation_comp"])].append(case)
    rows = {}
    for (precision, strict, relations), group in by_options.items():
        config = VerifyConfig(math=MathConfig(precision=precision, strict=strict, allow_set_relation_comp=relations)
                              ) if MathConfig is not None else VerifyConfig()
        questions = [question(str(c["id"]), gold_answer(c["gold"])) for c in group]
        samples = [sample(str(c["id"]), i, form_text(c["pred"], form)) for c in group for i, form in enumerate(FORMS)]
        for row in verify_samples(*tables(questions, samples), "r", "b", config, pool).to_pylist():
            case_id, index = row["sample_id"].rsplit("-", 1)
            rows[(int(case_id), FORMS[int(index)])] = row
    return rows


def judge_cases(cases: list[dict], rows: dict) -> dict[str, dict]:
    """Per form: agreement over the cases cotforge can express, disagreements, wrong acceptances, and the skips."""
    out = {}
    skipped = {c["id"]: why for c in cases if (why := unexpressible(c))}
    for form in FORMS:
        report = {"agree": [], "disagree": [], "wrong_accept": [], "skipped": dict(skipped), "refused": []}
        for case in cases:
            row = rows[(case["id"], form)]
            if case["id"] in skipped:
                continue
            if form != "bare" and is_solution_text(case["pred"]):
                report["skipped"][case["id"]] = "the prediction is a solution text, not an answer"
                continue
            if row["verdict"] is not True and row["reason"] in REFUSALS:
                report["refused"].append((case["id"], row["reason"]))
                continue
            entry = (case["id"], case["expected"], row["verdict"], row["reason"], row["extracted_answer"])
            report["agree" if (row["verdict"] is True) == bool(case["expected"]) else "disagree"].append(entry)
            if row["verdict"] is True and not case["expected"]:
                report["wrong_accept"].append(entry)
        out[form] = report
    return out


def agreement_by_kind(cases: list[dict], verdicts: dict[str, dict]) -> dict[str, dict[str, tuple[int, int]]]:
    """{kind: {form: (agreeing, judged)}} over the judged cases of each form."""
    kinds = {c["id"]: answer_kinds(c) for c in cases}
    table: dict[str, dict[str, list[int]]] = defaultdict(lambda: {f: [0, 0] for f in FORMS})
    for form, r in verdicts.items():
        for outcome in ("agree", "disagree"):
            for entry in r[outcome]:
                for kind in kinds[entry[0]]:
                    table[kind][form][0] += outcome == "agree"
                    table[kind][form][1] += 1
    return {kind: {f: tuple(v) for f, v in forms.items()} for kind, forms in sorted(table.items())}


def print_report(cases: list[dict], verdicts: dict[str, dict]) -> None:
    by_id = {c["id"]: c for c in cases}
    for form, r in verdicts.items():
        n = len(r["agree"]) + len(r["disagree"])
        print(f"\nform {form}: agreement {len(r['agree'])}/{n} = {len(r['agree']) / n:.1%}, "
              f"{len(r['wrong_accept'])} wrong acceptances, {len(r['skipped'])} skipped, "
              f"{len(r['refused'])} refused (no stated final answer)")
        for case_id, expected, verdict, reason, answer in r["disagree"]:
            case = by_id[case_id]
            alone = math_verify_alone({**case, "pred": form_text(case["pred"], form)}, case["match_types"])
            print(f"  disagree #{case_id}: expected {expected}, cotforge {verdict} ({reason}), math-verify alone on "
                  f"this text {int(alone)}; answer {answer!r:.60}; pred {case['pred'][-70:]!r}")
        for case_id, why in sorted(r["skipped"].items()):
            print(f"  skipped #{case_id}: {why}")
        print(f"  refused: {sorted(r['refused'])}")
    print("\nagreement per answer kind (agreeing/judged): " + ", ".join(FORMS))
    for kind, forms in agreement_by_kind(cases, verdicts).items():
        print(f"  {kind:24s} " + "  ".join(f"{a}/{n}" for a, n in forms.values()))


@pytest.fixture(scope="module")
def case_verdicts():
    if not CASES.is_file():
        missing_component("the shared Math-Verify cases (../shared/data/math-verify-cases) are not on this machine")
    cases = load_cases()
    with VerifierPool(2) as pool:
        rows = run_cases(cases, pool)
    return cases, rows, judge_cases(cases, rows)


def test_math_verify_cases_agree_in_every_form(case_verdicts):
    cases, rows, verdicts = case_verdicts
    print_report(cases, verdicts)
    for form, r in verdicts.items():
        n = len(r["agree"]) + len(r["disagree"])
        assert n >= 150, f"{form}: too few cases judged ({n}): the harness skipped what it should run"
        assert not r["wrong_accept"], f"{form}: wrong acceptances {r['wrong_accept']}"
        assert len(r["agree"]) / n >= 0.99, f"{form}: agreement {len(r['agree'])}/{n}"


def test_predictions_that_break_the_contract_are_refused_never_accepted(case_verdicts):
    """The predictions that state no single final answer last (a last number in prose, text after the box): each
    verdict is False with the contract's reason, never True; the forms built as answers are rarely refused."""
    cases, rows, verdicts = case_verdicts
    refused = verdicts["bare"]["refused"]
    assert refused  # the cases hold such predictions ("the number is not 10 which is 1,000.99€")
    for form in FORMS:
        assert all(rows[(case_id, form)]["verdict"] is False for case_id, _ in verdicts[form]["refused"])
    for form in ("boxed", "answer_is"):  # built as answers: refused only for a relation or words in the answer
        assert {reason for _, reason in verdicts[form]["refused"]} <= {
            "relation_in_answer", "alternative_in_answer", "words_in_answer", "no_expression"}, verdicts[form]
