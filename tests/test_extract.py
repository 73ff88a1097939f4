"""Answer extraction and normalisation: every convention, and failures as reasons."""

from cotforge.tasks.verify.extract import (
    as_rational,
    extract_answer,
    extract_answers,
    extract_code,
    normalize_answer,
)


def test_boxed_keeps_nested_braces_and_a_restated_answer_is_one_answer():
    text = "Step 1: 3 + 4 = 7\nThe answer is 1/2.\nSo \\boxed{\\frac{1}{2}}."
    assert extract_answer(text) == ("\\boxed{\\frac{1}{2}}", "boxed")  # a box read as LaTeX
    assert normalize_answer("\\frac{1}{2}") == "1/2"
    # Another answer before the final one is a conflict, not "the last one wins".
    assert extract_answer("The answer is 8.\nSo \\boxed{\\frac{1}{2}} is final.") == (None, "conflicting_answers")


def test_answer_tag_then_answer_is_and_no_last_number_fallback():
    assert extract_answer("<think>2+2</think><answer> 4 </answer>") == ("4", "answer_tag")
    assert extract_answer("Adding gives 41.\nThe answer is 42 apples.", question="How many apples?") == (
        "42", "answer_is")
    assert extract_answer("So we get 3, then 1,250 total") == (None, "no_answer_found")  # never a guess


def test_failures_are_reasons():
    assert extract_answer("") == (None, "empty_output")
    assert extract_answer("no digits here at all") == (None, "no_answer_found")
    assert extract_answer("plain prose", "code") == (None, "no_code_block")
    results = extract_answers([None, "The answer is 7.", "   "], ["number", "number", "number"])
    assert [(r.answer, r.method) for r in results] == [(None, "generation_error"), ("7", "answer_is"),
                                                        (None, "empty_output")]


def test_numbers_normalise_to_one_spelling_decimals_stay_decimals():
    assert normalize_answer("1,000") == normalize_answer("1000.0") == normalize_answer("$1000$") == "1000"
    # A decimal stays a decimal (math-verify compares it at its precision: 0.0833333333333333 is 1/12).
    assert normalize_answer("-2.50") == "-2.5" and normalize_answer("0.0833333333333333") == "0.0833333333333333"
    assert normalize_answer("\\dfrac{6}{8}") == normalize_answer("3/4") == "3/4"
    assert as_rational("\\dfrac{3}{4}") == as_rational("0.75")
    assert as_rational("x+1") is None
    assert normalize_answer("\\text{Paris}", "text") == "paris"


def test_option_letters():
    assert extract_answer("I think it is B.\nThe answer is (C).", "choice") == ("C", "answer_is")
    assert extract_answer("Final: \\boxed{D}", "choice") == ("D", "boxed")
    assert extract_answer("Reasoning...\nAnswer: A\n", "choice") == ("A", "answer_line")
    assert extract_answer("no letter given", "choice") == (None, "no_answer_found")
    assert normalize_answer("(b)", "choice") == "B"


def test_code_block_is_the_final_block_defining_the_asked_function():
    tests = "assert f(1) == 2\n"
    text = "Here:\n```text\nnot code\n```\n```python\ndef f(x):\n    return x + 1\n```\nDone."
    assert extract_code(text, tests) == "def f(x):\n    return x + 1\n"
    assert extract_answer(text, "code", tests=tests)[1] == "code_block"
    example = text + "\nUsage:\n```python\nprint(f(3))\n```\n"
    assert extract_code(example, tests) == "def f(x):\n    return x + 1\n"  # the usage example is not tested


def test_math_statement_keeps_its_whole_expression_and_stops_at_prose():
    def answer(text):
        return extract_answers([text], ["number"], ["How many apples? How long is the side in cm?"])[0]

    assert answer(r"The answer is 4\sqrt{2} cm.").answer == r"4\sqrt{2}"
    assert answer("The answer is (2, 5).").answer == "(2, 5)"
    assert answer("The answer is 10^{6}.").answer == "10^{6}"
    # Prose after the answer is a second claim: the contract breaks, nothing is read out of it.
    assert answer("The answer is 18 apples, since 3 boxes hold 6 each.").method == "text_after_answer"
    assert answer("Final Answer: The final answer is 15 gallons * 8 pints / gallon = 120 pints").method == \
        "words_after_expression"
    assert answer("Final Answer: The largest $n$ is 34.").method == "no_expression"
    assert answer("The answer is $1,000.").answer == "1000"  # a currency sign, not math
    assert (answer("Answer: $x \\in [-2,7]$").answer, answer("Answer: $x \\in [-2,7]$").method) == (
        "x \\in [-2,7]", "answer_line")
    tagged = answer("<answer>28 percent</answer>")
    assert (tagged.answer, tagged.method) == ("28\\%", "answer_tag")


def test_math_boxes_group_as_one_answer_and_a_second_answer_is_a_conflict():
    grouped = extract_answers([r"\boxed{-2} \quad \text{and} \quad \boxed{1}"], ["number"])[0]
    assert (grouped.answer, grouped.method) == ("-2, 1", "boxed")
    far = extract_answers([r"We first get \boxed{7}." + " More work follows here." * 4 + r" So \boxed{3}."],
                          ["number"])[0]
    assert (far.answer, far.method) == (None, "conflicting_answers")
    restated = extract_answers(["The answer is 18.\nIt's 20."], ["number"])[0]
    assert (restated.answer, restated.method) == (None, "text_after_answer")


def test_math_hedges_and_thinking():
    def found(text):
        e = extract_answers([text], ["number"])[0]
        return e.answer, e.method

    assert found("I am not sure. Maybe 18") == (None, "no_answer_found")
    assert found("The answer is 18.\nActually I think it's 20.") == (None, "text_after_answer")
    assert found("The answer is 18... no wait, 20.") == (None, "text_after_answer")
    assert found("$\\frac13 $") == ("\\frac13", "bare")  # a text that is nothing but an answer
    assert found("<think>maybe 17? wait</think>The answer is 18.") == ("18", "answer_is")
    assert found("<think>The answer is 18.") == (None, "unclosed_reasoning")  # it never finished thinking


def test_one_normalisation_for_gold_and_prediction():
    from cotforge.tasks.verify.extract import math_gold
    from cotforge.tasks.verify.math_answer import normalize_math, screen_math_answer

    assert normalize_math("$-2,1$") == "-2, 1" == normalize_math("-2, 1")  # a list in LaTeX, stable when re-read
    assert normalize_math("1,22") == "1.22" and normalize_math("7,425,000") == "7425000"  # decimal comma, thousands
    assert normalize_math(r"11,\! 111,\! 100") == "11111100" and normalize_math("14{,}916") == "14916"
    assert normalize_math("204_5") == "204_5"  # an underscore is a subscript (a base), never a digit separator
    assert normalize_math(r"15\mbox{ cm}^2") == r"15\mbox{ cm}^2"  # units stay for math-verify to read
    assert normalize_math("$28$ %") == normalize_math("28 percent") == "28\\%"
    assert math_gold(r"So $\boxed{1}$ and $\boxed{2}$.") == extract_answers([r"\boxed{1}, \boxed{2}"],
                                                                            ["number"])[0].answer == "1, 2"
    assert math_gold("Solving gives $x = 3$, so the answer is $\\frac{6}{2}$.") == "3"
    assert [screen_math_answer(a) for a in ("18", "١٨", r"\phantom{1}8", "2 % 3", "1" * 2000, "10^{10^{10}}")] == [
        None, "non_ascii_digits", "latex_trick:phantom", "latex_comment", "answer_too_long", "huge_power"]
