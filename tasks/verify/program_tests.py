"""The `code` verifier's tests: how a question's tests become sandbox jobs, and how the results are judged outside.

A question's `tests` are Python `assert` lines (the coding family writes `assert f(<input>) == <expected>`; seed
datasets write MBPP / HumanEval style tests). A top-level `assert EXPR == LITERAL` (or `LITERAL == EXPR`, or
`EXPR is None / True / False`) becomes a **value** test: only EXPR enters the sandbox, the candidate's value comes
back as plain data (the repr of builtins, parsed here with `ast.literal_eval`), and it is compared with LITERAL here,
type-strict (True is not 1, 1 is not 1.0, a tuple is not a list; a first line `# cotforge: equality=numeric` lets
ints and floats compare by value). Every other assert is an **assert** test: it runs alone, in a sandboxed process
of its own that calls the candidate (in another process) through a proxy passing plain values only, and the verdict
says so (`test_mode`): the test code and its expected values never enter the candidate's process. What the proxy
cannot carry (a callback, an object of the candidate's class, a list mutated in place) fails the test. Comparisons
and truth tests still act on plain-data copies. Statements before the first assert are setup (run with the test); a
test file with other statements between its asserts, or without top-level asserts (HumanEval's `check(candidate)`),
is one assert test as a whole.
"""

from __future__ import annotations

import ast
import json
import secrets
from dataclasses import dataclass

from cotforge.schemas.config_verify import SandboxConfig
from cotforge.tasks.verify.sandbox import SandboxRun, run_job

_NUMERIC = "# cotforge: equality=numeric"


@dataclass(frozen=True)
class TestPlan:
    setup: str
    values: list[tuple[str, object]]  # (expression run in the sandbox, expected value kept here)
    asserts: list[str]  # blocks of test code, each run alone
    numeric: bool = False

    @property
    def total(self) -> int:
        return len(self.values) + len(self.asserts)

    @property
    def mode(self) -> str:
        return "+".join(m for m, tests in (("values", self.values), ("asserts", self.asserts)) if tests)

    @property
    def runs(self) -> int:
        """Sandbox runs the plan takes: one for all value tests, one per assert test."""
        return bool(self.values) + len(self.asserts)


def _value_test(node: ast.Assert, source: str) -> tuple[str, object] | None:
    test = node.test
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return None
    left, op, right = test.left, test.ops[0], test.comparators[0]
    for expr, literal in ((left, right), (right, left)):
        try:
            expected = ast.literal_eval(literal)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(op, ast.Is) and not (expected is None or isinstance(expected, bool)):
            continue
        if isinstance(op, (ast.Eq, ast.Is)) and not isinstance(expr, ast.Compare):
            segment = ast.get_source_segment(source, expr)
            if segment is not None:
                return f"({segment})", expected
    return None


class _PlainComparisons(ast.NodeTransformer):
    """Comparisons and truth tests through the harness's plain-data versions (tasks/verify/harness.py)."""

    def _truth(self, node: ast.expr) -> ast.expr:
        return ast.Call(ast.Name("__cotforge_truth__", ast.Load()), [node], [])

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        self.generic_visit(node)
        ops = ast.Tuple([ast.Constant(type(op).__name__) for op in node.ops], ast.Load())
        return ast.Call(ast.Name("__cotforge_compare__", ast.Load()), [node.left, ops, *node.comparators], [])

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.expr:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            node.operand = self._truth(node.operand)
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.expr:
        self.generic_visit(node)
        node.values = [self._truth(v) for v in node.values]
        return node

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        self.generic_visit(node)
        node.test = self._truth(node.test)
        return node


def plain_comparisons(block: str) -> str:
    """The assert test's code with its comparisons and truth tests acting on plain data."""
    return ast.unparse(ast.fix_missing_locations(_PlainComparisons().visit(ast.parse(block))))


def plan_tests(tests: str) -> TestPlan:
    """Split a test file into setup, value tests and assert tests (SyntaxError when it does not parse)."""
    module = ast.parse(tests)
    numeric = tests.lstrip().startswith(_NUMERIC)
    body = module.body
    first = next((i for i, node in enumerate(body) if isinstance(node, ast.Assert)), None)
    if first is None or any(not isinstance(node, ast.Assert) for node in body[first:]):
        return TestPlan("", [], [plain_comparisons(tests)] if body else [], numeric)
    setup = "\n".join(tests.splitlines()[:body[first].lineno - 1])  # line-wise: keeps decorators
    values, asserts = [], []
    for node in body[first:]:
        value = _value_test(node, tests)
        if value is not None:
            values.append(value)
        else:
            asserts.append(plain_comparisons(ast.get_source_segment(tests, node) or ""))
    return TestPlan(setup, values, asserts, numeric)


def typed(value, numeric: bool = False):
    """A hashable form of plain data that keeps every type: equal forms mean type-strict equal values."""
    kind = type(value)
    if kind in (list, tuple):
        return kind.__name__, tuple(typed(v, numeric) for v in value)
    if kind in (set, frozenset):
        return kind.__name__, frozenset(typed(v, numeric) for v in value)
    if kind is dict:
        return "dict", frozenset((typed(k, numeric), typed(v, numeric)) for k, v in value.items())
    if numeric and kind in (int, float):
        return "number", value
    return kind.__name__, value


def strict_equal(got, expected, numeric: bool = False) -> bool:
    return typed(got, numeric) == typed(expected, numeric)


def _parse_value(text: object) -> tuple[bool, object]:
    if not isinstance(text, str) or len(text) > 1_000_000:
        return False, None
    try:
        return True, ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _messages(run: SandboxRun, total: int) -> tuple[dict[int, list[dict]], bool]:
    """Result lines by test index, and whether any line was malformed (not a result of a known test)."""
    by_index: dict[int, list[dict]] = {}
    malformed = False
    for line in run.results:
        try:
            message = json.loads(line)
        except ValueError:
            malformed = True
            continue
        if isinstance(message, dict) and ("load" in message or "setup" in message or "loaded" in message):
            continue  # the harness saying why nothing ran: the tests count as missing
        index = message.get("i") if isinstance(message, dict) else None
        if type(index) is not int or not 0 <= index < total:
            malformed = True
            continue
        by_index.setdefault(index, []).append(message)
    return by_index, malformed


def _missing(run: SandboxRun) -> str:
    return "missing_result" if run.status == "ok" else run.status


def judge_values(run: SandboxRun, values: list[tuple[str, object]], numeric: bool) -> list[str]:
    """One outcome per value test: "passed" or why not."""
    by_index, malformed = _messages(run, len(values))
    outcomes = []
    for i, (_, expected) in enumerate(values):
        messages = by_index.get(i, [])
        if malformed:
            outcomes.append("malformed_result")
        elif len(messages) > 1:
            outcomes.append("extra_result")
        elif not messages:
            outcomes.append(_missing(run))
        elif "error" in messages[0]:
            outcomes.append(f"exception:{str(messages[0]['error'])[:60]}")
        else:
            ok, got = _parse_value(messages[0].get("value"))
            if not ok:
                outcomes.append("malformed_result")
            elif strict_equal(got, expected, numeric):
                outcomes.append("passed")
            else:
                same_value = False
                try:
                    same_value = bool(got == expected)
                except Exception:
                    pass
                outcomes.append("wrong_type" if same_value else "wrong_answer")
    return outcomes


def judge_assert(run: SandboxRun, nonce: str) -> str:
    """The outcome of one assert test (run alone): passed only with exactly one `passed` line carrying the nonce the
    harness received after the candidate loaded, and a clean exit."""
    by_index, malformed = _messages(run, 1)
    messages = by_index.get(0, [])
    if malformed:
        return "malformed_result"
    if len(messages) > 1:
        return "extra_result"
    if not messages:
        return _missing(run)
    if "error" in messages[0]:
        return "assertion_failed" if messages[0]["error"] == "AssertionError" else \
            f"exception:{str(messages[0]['error'])[:60]}"
    passed = messages[0].get("passed") is True and messages[0].get("nonce") == nonce
    return "passed" if passed and run.status == "ok" else _missing(run)


def check_program(code: str, tests: str, limits_json: str) -> tuple[bool | None, str, dict]:
    """Pool item for the `code` verifier: (verdict, reason, details) where details holds `tests_passed`,
    `tests_total` and `test_mode`. The reason is "tests_passed" or the first failing test's outcome."""
    limits = SandboxConfig.model_validate_json(limits_json)
    try:
        plan = plan_tests(tests)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None, "bad_tests", {}
    if not plan.total:
        return None, "no_tests", {}
    outcomes: list[str] = []
    if plan.values:
        run = run_job(code, {"mode": "values", "setup": plan.setup, "cases": [e for e, _ in plan.values]}, limits)
        if run.status in ("no_isolation", "sandbox_error"):
            return None, run.status, {"tests_total": plan.total, "test_mode": plan.mode}
        outcomes += judge_values(run, plan.values, plan.numeric)
    for block in plan.asserts:
        nonce = secrets.token_hex(16)
        run = run_job(code, {"mode": "asserts", "setup": plan.setup, "cases": [block], "late": True, "nonce": nonce},
                      limits)
        if run.status in ("no_isolation", "sandbox_error"):
            return None, run.status, {"tests_total": plan.total, "test_mode": plan.mode}
        outcomes.append(judge_assert(run, nonce))
    passed = sum(o == "passed" for o in outcomes)
    details = {"tests_passed": passed, "tests_total": plan.total, "test_mode": plan.mode}
    if passed == plan.total:
        return True, "tests_passed", details
    return False, next(o for o in outcomes if o != "passed"), details
