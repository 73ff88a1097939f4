"""Answers built to fool the `math` verifier: hedges, conflicting answers, no stated answer, huge numbers, look-alike
digits and LaTeX tricks; since the answer contract (tasks/verify/contract.py) each hedge is refused by what it breaks
(text after the answer, a qualified or second statement, words in the answer), not by its hedge word. Each goes through the build's verify path (extraction, normalisation, the verifier in a VerifierPool)
and must come back false or null with the reason named here; the honest answers next to them must verify, so a
verifier that said no to everything fails too. `pytest -k hedge` runs them."""

import time

import pytest

from cotforge.schemas.config_verify import VerifyConfig
from cotforge.tasks.verify.cascade import verify_samples
from cotforge.tasks.verify.pool import VerifierPool
from tests.verify_helpers import question, sample, tables

LONG = " Then we check the computation once more, step by step, with the numbers of the question." * 2
# (name, model output, (verdict, reason)); the gold is 18 unless the name says otherwise.
HEDGES = [
    ("two_values_or", "The answer is 18 or 19.", (False, "alternative_in_answer")),
    ("two_values_math_spans", "The answer is $18$ or $19$.", (False, "alternative_in_answer")),
    ("two_values_text_or", r"The answer is $\boxed{\text{18}\text{ or }19}$.", (False, "alternative_in_answer")),
    ("plus_minus", r"The answer is $\pm 18$.", (False, "alternative_in_answer")),
    ("restated_bare_after", "The answer is 18.\n18", (False, "text_after_answer")),  # a second statement, unmarked
    ("adjacent_boxes", r"So \boxed{18}\boxed{19}", (False, "several_answers")),
    ("boxes_with_or", r"Either way: \boxed{18} or \boxed{19}", (False, "several_answers")),
    ("conflicting_boxes", r"First I get \boxed{19}." + LONG + r" So the total is \boxed{18}.",
     (False, "conflicting_answers")),
    ("conflicting_statements", "The answer is 19.\nLet me redo it: 6 * 3 = 18.\nThe answer is 18.",
     (False, "conflicting_answers")),
    ("box_then_other_statement", r"We get \boxed{18}." + LONG + " The answer is 20.", (False, "conflicting_answers")),
    ("retraction_after_statement", "The answer is 18.\nActually I think it's 20.", (False, "text_after_answer")),
    ("retraction_matching_gold", "The answer is 20.\nActually I think it's 18.", (False, "text_after_answer")),
    ("no_wait_in_statement", "The answer is 18... no wait, 20.", (False, "text_after_answer")),
    ("no_wait_back_to_gold", "The answer is 20... no wait, 18.", (False, "text_after_answer")),
    ("comma_or_maybe", "The answer is 18, or maybe 19.", (False, "text_after_answer")),
    ("probably", "The answer is probably 18.", (False, "no_expression")),
    ("i_think_before", "I think the answer is 18.", (False, "qualified_statement")),
    ("question_mark", "The answer is 18?", (False, "text_after_answer")),
    ("trailing_off", "The answer is 18...", (False, "text_after_answer")),
    ("not_sure_after", "The answer is 18. I am not sure, though.", (False, "text_after_answer")),
    ("tag_then_or", "<answer>18</answer> or 19", (False, "text_after_answer")),
    ("bare_value_restated_after", "The answer is 18.\n20", (False, "text_after_answer")),
    ("its_another_value_after", "The answer is 18.\nIt's 20.", (False, "text_after_answer")),
    ("maybe_fallback", "I am not sure. Maybe 18", (False, "no_answer_found")),
    ("no_wait_fallback", "18... no wait, 20", (False, "no_answer_found")),
    ("right_number_mid_text_fallback", "Each box holds 6, so 3 boxes hold 18 apples.\nSo there are 20 in all.",
     (False, "no_answer_found")),
    ("tricky_other_answer", r"First \boxed{10^{10^{10}}}." + LONG + " The answer is 18.",
     (False, "conflicting_answers")),
    ("right_number_mid_text_wrong_final_line", "Each box holds 6, so 3 boxes hold 18 apples.\nThe answer is 20.",
     (False, "math_mismatch")),
    ("answer_only_inside_unclosed_think", "<think>6 * 3 = 18. The answer is 18.", (False, "unclosed_reasoning")),
    ("huge_number", "The answer is " + "9" * 100_000 + ".", (False, "text_after_answer")),
    ("power_tower", r"The answer is $10^{10^{10}}$.", (None, "huge_power")),
    ("huge_exponent", r"The answer is $2^{99999999}$.", (None, "huge_power")),
    ("arabic_indic_digits", "The answer is ١٨.", (None, "non_ascii_digits")),
    ("fullwidth_digits", "The answer is １８.", (None, "non_ascii_digits")),
    ("devanagari_digits", "The answer is १८.", (None, "non_ascii_digits")),
    ("math_bold_digits", "The answer is 𝟏𝟖.", (None, "non_ascii_digits")),
    ("phantom", r"The answer is $\phantom{20}18$.", (None, "latex_trick:phantom")),
    ("phantom_sum", r"\boxed{\phantom{18}19}", (None, "latex_trick:phantom")),  # math-verify alone reads 37
    ("colour", r"\boxed{\color{white}{20}18}", (None, "latex_trick:color")),
    ("cancel", r"\boxed{\cancel{20} 18}", (None, "latex_trick:cancel")),
    ("overset", r"\boxed{\overset{18}{20}}", (None, "latex_trick:overset")),
    ("macro", r"\boxed{\def\x{18}\x}", (None, "latex_trick:def")),
    ("comment", r"\boxed{18 % 20}", (None, "latex_comment")),
    ("zero_width_space", "The answer is 1\u200b8.", (False, "text_after_answer")),
    ("words_not_number", r"The answer is $\boxed{\text{eighteen}}$.", (False, "math_mismatch")),
]
# Statements the old extractor read by their first number, verified against a gold that is that number.
PARTIAL_READS = [
    ("radical", r"The answer is 4\sqrt{2}.", "4"),
    ("tuple", "The answer is (2, 5).", "2"),
    ("power", "The answer is 10^{6}.", "10"),
    ("fraction", r"The answer is \frac{1}{3}.", "1"),
    ("list_with_comma", r"The answer is $-2,1$.", "-21"),
    ("base_subscript", r"The answer is $204_5$.", "2045"),
]
HONEST = [  # the same answers stated plainly: each verifies
    ("statement", "6 * 3 = 18.\nThe answer is 18.", "18"),
    ("boxed", r"So the total is $\boxed{18}$.", "18"),
    ("answer_tag", "<answer>18</answer>", "18"),
    ("box_and_statement_agree", r"We get $\boxed{18}$. Final Answer: The final answer is 18. I hope it is correct.",
     "18"),
    ("two_values_when_gold_has_two", "The answer is 18 or 19.", "18, 19"),
    ("adjacent_boxes_when_gold_has_two", r"\boxed{18}\boxed{19}", r"\{18, 19\}"),
    ("think_then_answer", "<think>maybe 17? wait, no</think>\nThe answer is 18.", "18"),
    ("units_and_currency", "She pays $18 in all.\nThe answer is $18 dollars.", "18"),
    ("fraction_as_decimal", "The answer is 0.0833333333333333.", r"\frac{1}{12}"),
    ("huge_but_honest", "The answer is $10^{100}$.", "1" + "0" * 100),
]


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(2) as p:
        yield p


def _verdicts(cases: list[tuple[str, str, str]], pool, config=VerifyConfig()) -> dict[str, dict]:
    questions = [question(name, gold) for name, _, gold in cases]
    samples = [sample(name, 0, text) for name, text, _ in cases]
    rows = verify_samples(*tables(questions, samples), "r", "b", config, pool).to_pylist()
    return {r["question_id"]: r for r in rows}


def test_hedge_corpus_is_never_verified(pool):
    start = time.perf_counter()
    rows = _verdicts([(name, text, "18") for name, text, _ in HEDGES], pool)
    seconds = time.perf_counter() - start
    for name, _, expected in HEDGES:
        print(f"{name:40s} -> {rows[name]['verdict']!s:5s} {rows[name]['reason']}")
    got = {name: (rows[name]["verdict"], rows[name]["reason"]) for name, _, _ in HEDGES}
    assert got == {name: expected for name, _, expected in HEDGES}
    assert seconds < 30  # the 100,000-digit answer and the towers are refused before any parsing


def test_hedge_controls_honest_answers_verify(pool):
    rows = _verdicts(HONEST, pool)
    assert {name: (rows[name]["verdict"], rows[name]["reason"]) for name, _, _ in HONEST} == {
        name: (True, "math_equivalent") for name, _, _ in HONEST}


def test_hedge_partial_reads_of_a_statement_are_gone(pool):
    rows = _verdicts(PARTIAL_READS, pool)
    assert {name: rows[name]["verdict"] for name, _, _ in PARTIAL_READS} == dict.fromkeys(rows, False)


def test_hedge_sympy_bomb_costs_one_timeout_not_the_worker(pool):
    """An answer that passes every screen but makes sympy compute for ever: the pool's deadline ends it."""
    start = time.perf_counter()
    rows = _verdicts([("bomb", r"The answer is $(10^{7})!$.", "18"), ("after", "The answer is 18.", "18")], pool,
                     VerifyConfig(timeout_s=2.0))
    assert (rows["bomb"]["verdict"], rows["bomb"]["reason"]) == (None, "timeout")
    assert rows["after"]["verdict"] is True and time.perf_counter() - start < 30


ADVERSARIAL_TEXTS = {  # 100,000 characters each, built to make extraction scan again and again
    "statements_on_one_line": "The answer is 5. " * 6000,
    "unclosed_boxes": "\\boxed{" * 15000,
    "unclosed_answer_tags": "<answer>" * 12500,
    "spaces_after_answer": "The answer" + " " * 100_000 + "x",
    "nested_braces": "The answer is \\frac" + "{" * 100_000,
    "or_chain": "The answer is " + "1 or " * 20000,
    "currency_signs": "$1 " * 33000,
    "open_display_math": "The answer is \\[" * 6000,
    "restated_lines": "The answer is 5.\n" + "It's 6.\n" * 12500,
    "digits": "The answer is " + "9" * 100_000,
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL_TEXTS))
def test_hedge_extraction_stays_linear_on_adversarial_texts(name):
    """Extraction runs in the build's main process, outside the pool's deadline: it must stay linear in the text."""
    from cotforge.tasks.verify.extract import extract_answers

    start = time.process_time()  # this process's CPU time: other load on the machine does not count
    extract_answers([ADVERSARIAL_TEXTS[name]], ["number"])
    extract_answers([ADVERSARIAL_TEXTS[name]], ["choice"])
    assert time.process_time() - start < 3.0  # ~0.1 s here; the quadratic versions took 5 s to minutes


def test_hedge_random_texts_never_crash_extraction_or_normalisation():
    """Texts stitched from the pieces extraction reacts to (statements, boxes, spans, currency, unicode digits and
    superscripts, brackets, think tags): every one gets an extraction and a screen, never an exception."""
    import random

    from cotforge.tasks.verify.extract import extract_answers, math_gold
    from cotforge.tasks.verify.math_answer import screen_math_answer

    pieces = ["The answer is ", "Answer: ", "Final Answer: ", "\\boxed{", "}", "{", "$", "$$", "\\[", "\\]", "\\(",
              "\\)", "\\$", "\\frac{1}{2}", "\\sqrt", "18", "-2,1", "1,000", "0.5", "²", "١٨", "１８", "𝟏", "%",
              " or ", " and ", "...", "?", ".", "\n", " ", "(", ")", "[", "]", "=", "^", "_", "<think>", "</think>",
              "<answer>", "</answer>", "maybe", "\\text{", "\\phantom{", "x", "apples", "\\", "\"", "\u200b", "€"]
    rng = random.Random(0)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        found = extract_answers([text], ["number"])[0]
        extract_answers([text], ["text"])
        math_gold(text)
        if found.answer is not None:
            screen_math_answer(found.answer)
        assert found.method  # a reason, whatever happened
