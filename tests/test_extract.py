"""Answer extraction and normalisation: every convention, and failures as reasons."""

from cotforge.tasks.verify.extract import (
    as_rational,
    extract_answer,
    extract_answers,
    extract_choice,
    extract_code,
    final_answer_markers,
    normalize_answer,
)


def test_boxed_wins_and_keeps_nested_braces():
    text = "Step 1: 3 + 4 = 7\nThe answer is 8.\nSo \\boxed{\\frac{1}{2}} is final."
    assert extract_answer(text) == ("\\frac{1}{2}", "boxed")
    assert normalize_answer("\\frac{1}{2}") == "1/2"


def test_answer_tag_then_answer_is_then_last_number():
    assert extract_answer("<think>2+2</think><answer> 4 </answer>") == ("4", "answer_tag")
    assert extract_answer("Adding gives 41.\nThe answer is 42 apples.") == ("42", "answer_is")
    assert extract_answer("So we get 3, then 1,250 total") == ("1,250", "last_number")


def test_failures_are_reasons():
    assert extract_answer("") == (None, "empty_output")
    assert extract_answer("no digits here at all") == (None, "no_answer_found")
    assert extract_answer("plain prose", "code") == (None, "no_code_block")
    results = extract_answers([None, "The answer is 7.", "   "], ["number", "number", "number"])
    assert [(r.answer, r.method) for r in results] == [(None, "generation_error"), ("7", "answer_is"),
                                                        (None, "empty_output")]


def test_numbers_normalise_to_exact_rationals():
    assert normalize_answer("1,000") == normalize_answer("1000.0") == normalize_answer("$1000$") == "1000"
    assert normalize_answer("-2.50") == "-5/2"
    assert as_rational("\\dfrac{3}{4}") == as_rational("0.75")
    assert as_rational("x+1") is None
    assert normalize_answer("\\text{Paris}", "text") == "paris"


def test_option_letters():
    assert extract_choice("I think it is B.\nThe answer is (C).") == ("C", "option_letter")
    assert extract_choice("Final: \\boxed{D}") == ("D", "boxed")
    assert extract_choice("Reasoning...\n(A)\n") == ("A", "option_letter")
    assert extract_choice("no letter given") == (None, "no_option_letter")
    assert normalize_answer("(b)", "choice") == "B"


def test_code_block_prefers_python_fence():
    text = "Here:\n```text\nnot code\n```\n```python\ndef f(x):\n    return x + 1\n```\nDone."
    assert extract_code(text) == "def f(x):\n    return x + 1\n"
    assert extract_answer(text, "code")[1] == "code_block"


def test_final_answer_markers_count_every_statement():
    assert final_answer_markers("The answer is 4. Actually \\boxed{5}") == ["5", "4"]
    assert final_answer_markers("Step 1: 2+2=4") == []
