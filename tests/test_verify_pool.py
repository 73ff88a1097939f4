"""The verifier worker pool: a hung or crashed worker costs one verdict, never the build, and is replaced."""

import os
import signal
import time

import pytest

from cotforge.tasks.verify.pool import VerifierPool, check_math, check_regex, run_item


# Module-level item functions the spawned workers import by "tests.test_verify_pool:<name>".
def echo(value):
    return True, f"echo:{value}"


def hang(seconds):
    time.sleep(seconds)
    return True, "woke_up"


def spin():
    while True:  # CPU-bound and never yields: only killing the process stops it
        pass


def crash():
    os.kill(os.getpid(), signal.SIGKILL)


def segfault():
    import ctypes

    ctypes.string_at(0)


def boom():
    raise ValueError("verifier bug")


ECHO = "tests.test_verify_pool:echo"


def test_results_come_back_in_item_order():
    with VerifierPool(2, preload=()) as pool:
        results = pool.run([(ECHO, (i,)) for i in range(20)], 10.0)
    assert results == [(True, f"echo:{i}") for i in range(20)]


@pytest.mark.slow
def test_hung_and_crashed_workers_cost_one_verdict_each_and_are_replaced():
    items = [(ECHO, (0,)), ("tests.test_verify_pool:hang", (60,)), (ECHO, (2,)), ("tests.test_verify_pool:crash", ()),
             ("tests.test_verify_pool:spin", ()), ("tests.test_verify_pool:segfault", ()), (ECHO, (6,))]
    with VerifierPool(2, preload=()) as pool:
        start = time.monotonic()
        results = pool.run(items, 1.5)
        elapsed = time.monotonic() - start
        assert results == [(True, "echo:0"), (None, "timeout"), (True, "echo:2"), (None, "worker_crashed"),
                           (None, "timeout"), (None, "worker_crashed"), (True, "echo:6")]
        assert pool.restarts == 4
        assert elapsed < 30  # the 60 s sleeper was cut at its 1.5 s deadline
        # The pool keeps working after the restarts.
        assert pool.run([(ECHO, ("again",))], 10.0) == [(True, "echo:again")]


def test_exceptions_in_a_verifier_are_verdicts():
    assert run_item("tests.test_verify_pool:boom", ()) == (None, "error:ValueError")
    with VerifierPool(1, preload=()) as pool:
        assert pool.run([("tests.test_verify_pool:boom", ())], 10.0) == [(None, "error:ValueError")]
        assert pool.restarts == 0


def test_workers_that_cannot_start_fail_items_with_a_reason():
    with VerifierPool(1, preload=("no_such_module_for_cotforge",)) as pool:
        assert pool.run([(ECHO, (1,)), (ECHO, (2,))], 5.0) == [(None, "worker_start_failed")] * 2


def test_check_math_equivalence_and_fallback():
    assert check_math("1/2", "0.5") == (True, "math_equivalent")
    assert check_math("(x+1)^2", "x^2+2x+1") == (True, "math_equivalent")
    assert check_math("1,000", "1000") == (True, "math_equivalent")
    assert check_math("7", "8") == (False, "math_mismatch")


def test_check_regex_and_bad_patterns():
    assert check_regex("Paris", "paris|lyon") == (True, "pattern_matched")
    assert check_regex("Rome", "paris|lyon") == (False, "pattern_mismatch")
    assert check_regex("x", "(") == (None, "bad_pattern")


@pytest.mark.slow
def test_catastrophic_regex_times_out_in_the_pool():
    with VerifierPool(1, preload=()) as pool:
        results = pool.run([("cotforge.tasks.verify.pool:check_regex", ("a" * 40 + "!", "(a+)+$")),
                            ("cotforge.tasks.verify.pool:check_regex", ("ab", "a.")),], 1.0)
    assert results == [(None, "timeout"), (True, "pattern_matched")]
