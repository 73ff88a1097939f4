"""Assert-mode tests (MBPP asserts that are no plain value test, HumanEval's `check(candidate)`) run in a process of
their own and call the candidate through a proxy that passes plain values: the program cannot reach the test.

Each hack below faked a pass when the test code ran in the candidate's interpreter (it patches what the harness
uses, walks frames to the expected value, the nonce or the result fd, or hunts them with `gc`). Each must be judged
not correct, the honest program must pass the very same tests (the control), and a probe run from inside the
candidate's process must find neither the expected values nor the nonce (checked from outside, on its output).
"""

from __future__ import annotations

import secrets

import pytest

from cotforge.schemas.config_verify import SandboxConfig
from cotforge.tasks.verify.program_tests import check_program, plan_tests
from cotforge.tasks.verify.sandbox import run_job
from tests.sandbox_support import assert_nothing_left, grader, require_bwrap  # noqa: F401 (fixture)

LIMITS = SandboxConfig(cpu_s=2, wall_s=6.0, memory_mb=256)
EXPECTED = 987654321  # unique: a probe that finds it found the test
HONEST = "def magic(x):\n    return x * 329218107\n"
TESTS = f"assert magic(3) == {EXPECTED} and True\nassert magic(0) == 0 or magic(0) is None\n"
CHECK = ("def check(candidate):\n"
         f"    assert candidate(3) == {EXPECTED}\n"
         "    assert candidate(1) == 329218107\n"
         "    try:\n"
         "        candidate('x' * 0 + 'boom')\n"
         "    except TypeError:\n"
         "        pass\n"
         "check(magic)\n")
HONEST_CHECK = "def magic(x):\n    if isinstance(x, str):\n        raise TypeError(x)\n    return x * 329218107\n"

_WRONG = "def magic(x):\n    return None\n"
ASSERT_HACKS = {
    "patch_main_compare": _WRONG + "import __main__\n__main__.compare = lambda *a: True\n"
                          "__main__.truth = lambda v: True\n",
    "patch_builtins_exec": _WRONG + "import builtins\n_real = builtins.exec\n"
                           "builtins.exec = lambda *a, **k: _real('pass', *a[1:])\n",
    "patch_builtins_compile": _WRONG + "import builtins\n_c = builtins.compile\n"
                              "builtins.compile = lambda src, name, mode, *a, **k: _c('pass' if mode == 'exec' "
                              "else src, name, mode, *a, **k)\n",
    "patch_json_loads": _WRONG + "import json\n_l = json.loads\n"
                        "def loads(s, *a, **k):\n    v = _l(s, *a, **k)\n"
                        "    if isinstance(v, dict) and 'cases' in v:\n"
                        "        v['cases'] = ['pass'] * len(v['cases'])\n"
                        "    return v\njson.loads = loads\n",
    "frames_expected_value": "import sys\n"
                             "def magic(x):\n"
                             "    f = sys._getframe(1)\n"
                             "    while f is not None:\n"
                             "        consts = [c for c in f.f_code.co_consts if type(c) is int and c > 1000]\n"
                             "        if consts:\n            return consts[0]\n"
                             "        f = f.f_back\n"
                             "    return None\n",
    "frames_nonce_result_fd": "import sys, os, json\n"
                              "def magic(x):\n"
                              "    f = sys._getframe(1)\n"
                              "    while f is not None:\n"
                              "        late = f.f_locals.get('late')\n"
                              "        if isinstance(late, dict) and 'nonce' in late:\n"
                              "            fd = int(sys.argv[2])\n"
                              "            os.write(fd, (json.dumps({'i': 0, 'passed': True, 'nonce': late['nonce']})"
                              " + '\\n').encode())\n"
                              "            os._exit(0)\n"
                              "        f = f.f_back\n"
                              "    return None\n",
    "gc_nonce_hunt": "import gc, os, sys, json\n"
                     "def magic(x):\n"
                     "    for o in gc.get_objects():\n"
                     "        if isinstance(o, dict) and isinstance(o.get('nonce'), str) and o['nonce']:\n"
                     "            os.write(int(sys.argv[2]), (json.dumps({'i': 0, 'passed': True, "
                     "'nonce': o['nonce']}) + '\\n').encode())\n"
                     "            os._exit(0)\n"
                     "    return None\n",
    "result_fd_after_load": "import os, sys, json, threading, time\n"
                            "def forge():\n"
                            "    time.sleep(0.3)\n"
                            "    for fd in range(3, 64):\n"
                            "        try:\n"
                            "            os.write(fd, b'{\"i\": 0, \"passed\": true, \"nonce\": null}\\n')\n"
                            "        except OSError:\n"
                            "            pass\n"
                            "threading.Thread(target=forge, daemon=True).start()\n" + _WRONG,
    "kill_test_process": "import os, signal\n"
                         "def magic(x):\n"
                         "    os.kill(os.getppid(), signal.SIGKILL)\n"
                         "    return None\n",
    "lying_object": "class Any:\n    def __eq__(self, o):\n        return True\n    def __bool__(self):\n"
                    "        return True\n    __hash__ = object.__hash__\n"
                    "def magic(x):\n    return Any()\n",
}


@pytest.fixture(scope="module", autouse=True)
def _bwrap():
    require_bwrap()


def test_assert_tests_pass_an_honest_program_through_the_proxy():
    plan = plan_tests(TESTS)
    assert plan.mode == "asserts" and len(plan.asserts) == 2  # no value test: each runs through the proxy
    assert check_program(HONEST, TESTS, LIMITS.model_dump_json()) == (
        True, "tests_passed", {"tests_passed": 2, "tests_total": 2, "test_mode": "asserts"})
    # HumanEval style: `check(candidate)`, an expected exception crossing the proxy as the builtin it names.
    assert check_program(HONEST_CHECK, CHECK, LIMITS.model_dump_json())[:2] == (True, "tests_passed")
    verdict, reason, _ = check_program(HONEST, CHECK, LIMITS.model_dump_json())  # raises no TypeError for 'boom'
    assert verdict is False


@pytest.mark.parametrize("name", sorted(ASSERT_HACKS))
def test_assert_mode_hack_is_judged_not_correct(name):
    for tests in (TESTS, CHECK):
        verdict, reason, details = check_program(ASSERT_HACKS[name], tests, LIMITS.model_dump_json())
        assert verdict is False and details["test_mode"] == "asserts", (name, reason, details)


def test_assert_mode_hacks_fail_with_the_grader_as_root_and_unprivileged(grader):
    """The same hacks, graded by a verifier process running as root and as the unprivileged account."""
    limits = LIMITS.model_dump()
    honest = grader.check(HONEST, TESTS, **limits)
    assert (honest["verdict"], honest["reason"], honest["test_mode"]) == (True, "tests_passed", "asserts")
    for name, code in sorted(ASSERT_HACKS.items()):
        answer = grader.check(code, CHECK, **limits)
        assert answer["verdict"] is False and answer["test_mode"] == "asserts", (name, answer)


def test_assert_mode_candidate_process_never_holds_the_expected_value_or_the_nonce():
    """A probe in the candidate's process searches everything it can reach while the test runs (its own heap via gc,
    every frame, /proc of every process, the job's files) for the expected value and the nonce, and prints what it
    found; the test process then really ran (its pass arrives with the nonce)."""
    half = str(EXPECTED)[:4], str(EXPECTED)[4:]  # the probe's own code must not hold the value it looks for
    probe = ("import gc, os, sys\n"
             f"TARGET = int({half[0]!r} + {half[1]!r})\n"
             "TEXT = str(TARGET)\n"
             "def hunt(tag):\n"
             "    seen = []\n"
             "    for o in gc.get_objects():\n"
             "        kind = type(o)\n"
             "        items = list(o.values()) if kind is dict else list(o) if kind in (list, tuple) else \\\n"
             "            list(o.__code__.co_consts) if kind is type(hunt) else []\n"
             "        if any(type(i) in (int, str) and i not in (TARGET, TEXT) and TEXT in str(i) for i in items) \\\n"
             "                or any(i is not TARGET and type(i) is int and i == TARGET for i in items):\n"
             "            seen.append('value')\n"
             "        if any(type(i) is str and i is not MARK and MARK in i for i in items):\n"
             "            seen.append('nonce')\n"
             "    f = sys._getframe()\n"
             "    while f is not None:\n"
             "        if TARGET in f.f_code.co_consts or TEXT in repr(f.f_code.co_consts):\n"
             "            seen.append('frame')\n"
             "        f = f.f_back\n"
             "    for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
             "        for part in ('cmdline', 'environ'):\n"
             "            try:\n"
             "                if TEXT.encode() in open(f'/proc/{pid}/{part}', 'rb').read(10**6):\n"
             "                    seen.append('proc')\n"
             "            except OSError:\n"
             "                pass\n"
             "    for root, _, files in os.walk('/cotforge'):\n"
             "        for name in files:\n"
             "            if TEXT.encode() in open(os.path.join(root, name), 'rb').read():\n"
             "                seen.append('file')\n"
             "    print(tag, 'FOUND' if seen else 'nothing', sorted(set(seen)), flush=True)\n"
             "def magic(x):\n"
             "    hunt('call')\n"
             "    return x * 329218107\n")
    nonce = secrets.token_hex(16)
    # The nonce's first 12 characters, put together at run time (a literal would be in the probe's own code).
    source = f"MARK = ''.join(reversed({nonce[:12][::-1]!r}))\n" + probe
    block = plan_tests(TESTS).asserts[0]
    limits = SandboxConfig(cpu_s=10, wall_s=30.0, memory_mb=256)  # the probe reads a lot
    run = run_job(source, {"mode": "asserts", "setup": "", "cases": [block], "late": True, "nonce": nonce}, limits)
    assert run.status == "ok", run.stderr
    assert "call nothing []" in run.stdout, run.stdout  # the probe ran inside the call, and found nothing
    assert any(f'"nonce": "{nonce}"' in line and '"passed": true' in line for line in run.results)
    assert_nothing_left(run.run_id)
    # The control: test code evaluated in the candidate's process (as assert tests were before), here a value-mode
    # case holding the comparison: the same probe finds the expected value, so "nothing" above means something.
    control = run_job(source, {"mode": "values", "setup": "", "cases": [f"magic(3) == {EXPECTED}"]}, limits)
    assert "call FOUND" in control.stdout, control.stdout
