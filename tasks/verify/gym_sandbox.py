"""reasoning-gym scorers run on model answers only inside the sandbox: one warm scorer per process, a fork per answer.

Eight reasoning-gym scorers `eval` or `sympy.parse_expr` the answer they score, so a model's answer is code. Here it
runs in a bubblewrap sandbox (tasks/verify/sandbox_host.py: namespaces, the seccomp filter, a read-only file system
but for a small tmpfs emptied after every answer, no network, a scrubbed environment, as root a throw-away uid) in
which a warm process (tasks/verify/scorer_zygote.py) has imported each task's scorer once and forks a child per
answer; the child scores that one answer under rlimits and exits, and everything it left is killed before the next.
Isolation is paid once per process (about a second to start), a verdict costs a fork. In front of the scorers that
evaluate, an allow-list (`unevaluable`) lets through only the answer forms they read: the sandbox contains what
code does, the allow-list keeps code from scoring itself (a payload in the scoring child could forge its own score).

`score_in_sandbox` is what the `reasoning_gym` verifier (in a pool worker) and `gym_reward` (in a trainer) call: a
task's sandbox is started on first use in the calling process, kept while it answers, and replaced when it times out or
dies. No bwrap, or a bwrap that cannot make namespaces: nothing is scored (`no_isolation`).
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from functools import lru_cache

from cotforge.schemas.config_verify import SandboxConfig
from cotforge.tasks.questions.gym import import_gym
from cotforge.tasks.verify.sandbox import _preexec, isolation_problem
from cotforge.tasks.verify.sandbox_host import JOB_DIR, WORK_DIR, _bwrap_argv, _interpreter_for, _memfd, _sandbox_uid
from cotforge.tasks.verify.syscall_filter import filter_fd

ZYGOTE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scorer_zygote.py")
# The reasoning-gym 0.1.25 scorers that evaluate the model's answer: `eval` (a partial score for a Python list
# written answer) or `sympy.parse_expr` (Python `eval` after sympy's token rewriting). An answer reaches them only in
# the form they read (tests/test_gym_sandbox.py checks this list against the library's source).
EVALUATING_SCORERS = {"string_insertion": "literal", "binary_matrix": "literal", "spiral_matrix": "literal",
                      "n_queens": "literal", "puzzle24": "expression", "countdown": "expression",
                      "polynomial_multiplication": "expression", "simple_integration": "expression",
                      "intermediate_integration": "expression"}
_LITERAL_NODES = (ast.Expression, ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Name, ast.Load,
                  ast.UnaryOp, ast.USub, ast.UAdd)
_EXPRESSION = re.compile(r"[0-9A-Za-z\s+\-*/^().,]*")
_NAMES = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATH_NAMES = frozenset({"sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "sinh", "cosh", "tanh",
                         "exp", "log", "ln", "sqrt", "pi", "oo", "Abs"})
_START_TIMEOUT_S = 120.0
_REPLY_SLACK_S = 5.0  # beyond the child's own wall limit, for the fork, the kill and the reply
Outcome = tuple[object, str | None]  # (the scorer's value, None) or (None, why there is no value)


def _package_paths() -> list[str]:
    """The directories this interpreter imports packages from (reasoning-gym and its dependencies), read-only in the
    sandbox; none of them is the repository or a home directory's caches."""
    found = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    return list(dict.fromkeys(os.path.realpath(p) for p in found))


@lru_cache(maxsize=None)
def _task_module(task: str) -> str:
    """The module defining a task's dataset (the warm scorer imports only that one)."""
    import_gym()
    from reasoning_gym.factory import DATASETS

    return DATASETS[task][0].__module__


class ScorerSandbox:
    """One bwrap sandbox running the warm scorer, owned by the process that started it (a pool worker, a trainer)."""

    def __init__(self, limits: SandboxConfig):
        self.limits = limits
        self.run_id = "cotforge-scorer-" + secrets.token_hex(8)
        self.process: subprocess.Popen | None = None
        self.problem: str | None = None  # why it could not start
        self._stderr = tempfile.TemporaryFile()

    def start(self) -> bool:
        uid = _sandbox_uid()
        interpreter = _interpreter_for(uid)
        as_root = False
        if interpreter is None:  # root, and no Python the throw-away uid can run: namespaces only, caps dropped
            interpreter, uid, as_root = _interpreter_for(None), None, os.geteuid() == 0
        executable, prefix = interpreter
        with open(ZYGOTE_PATH, "rb") as f:
            zygote = f.read()
        job = json.dumps({"paths": _package_paths(), "work_dir": WORK_DIR}).encode()
        fds = {"scorer_zygote.py": _memfd("zygote", zygote), "job.json": _memfd("job", job)}
        seccomp = filter_fd()
        try:
            argv = _bwrap_argv(executable, prefix, self.limits, fds, -1, as_root, seccomp, tuple(_package_paths()))
            argv += [executable, "-I", "-S", "-B", f"{JOB_DIR}/scorer_zygote.py", JOB_DIR, self.run_id]
            self.process = subprocess.Popen(argv, env={}, cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=self._stderr, pass_fds=(seccomp, *fds.values()),
                                            start_new_session=True, preexec_fn=_preexec(uid, True, self.limits))
        except (OSError, subprocess.SubprocessError) as error:
            self.problem = f"{type(error).__name__}: {error}"
            return False
        finally:
            for fd in (seccomp, *fds.values()):
                os.close(fd)
        reply = self._read_line(_START_TIMEOUT_S)
        if reply != {"ready": True}:
            self._stderr.seek(0)
            self.problem = "scorer sandbox did not start: " + self._stderr.read().decode("utf-8", "replace")[-300:]
            self.close()
            return False
        return True

    def _read_line(self, timeout_s: float) -> dict | None:
        """One reply line within `timeout_s`; None on timeout, end of stream or garbage."""
        stdout = self.process.stdout
        deadline = time.monotonic() + timeout_s
        line = b""
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(stdout.fileno(), 1 << 17)
            if not chunk or len(line) > 1 << 17:
                return None
            line += chunk
        try:
            reply = json.loads(line)
        except ValueError:
            return None
        return reply if isinstance(reply, dict) else None

    def score(self, task: str, config: dict, entry: dict, answer: str) -> dict | None:
        """The warm scorer's reply for one answer, or None when the sandbox failed to answer (then it is closed)."""
        request = {"task": task, "module": _task_module(task), "config": config, "entry": entry, "answer": answer,
                   "wall_s": self.limits.wall_s,
                   "cpu_s": self.limits.cpu_s, "memory_mb": self.limits.memory_mb,
                   "max_processes": self.limits.max_processes}
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except (OSError, ValueError):
            self.close()
            return None
        reply = self._read_line(self.limits.wall_s + _REPLY_SLACK_S)
        if reply is None:
            self.close()
        return reply

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                try:
                    os.killpg(self.process.pid, 9)
                except (ProcessLookupError, PermissionError):
                    pass
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.process = None


# One warm scorer per task: a fork costs in proportion to what the forking process holds, and a text scorer forked
# from a process that also holds sympy pays for sympy (measured: 1.5 ms a verdict alone, 4-8x that beside sympy).
# The least recently used ones are stopped beyond MAX_SANDBOXES.
MAX_SANDBOXES = 8
_SANDBOXES: OrderedDict[tuple[str, str], ScorerSandbox] = OrderedDict()
_LOCK = threading.Lock()


def _sandbox(limits: SandboxConfig, task: str) -> ScorerSandbox | str:
    """This process's warm scorer sandbox for `task` under `limits` (started on first use, replaced once dead), or
    why there is none."""
    key = (limits.model_dump_json(), task)
    box = _SANDBOXES.get(key)
    if box is not None and box.alive:
        _SANDBOXES.move_to_end(key)
        return box
    problem = isolation_problem(_sandbox_uid())
    if problem is not None:
        return f"no_isolation:{problem[:120]}"
    box = ScorerSandbox(limits)
    if not box.start():
        return f"scorer_sandbox_failed:{(box.problem or '')[-120:]}"
    _SANDBOXES[key] = box
    while len(_SANDBOXES) > MAX_SANDBOXES:
        _SANDBOXES.popitem(last=False)[1].close()
    return box


def unevaluable(task: str, answer: str) -> str | None:
    """Why an answer may not reach a scorer that evaluates it (None: it may). An allow-list of the forms those
    scorers read: a Python literal (names allowed: they only fail to resolve) for `eval`, an arithmetic expression in
    numbers, one-letter symbols and named math functions for `parse_expr`. Anything else would be code."""
    kind = EVALUATING_SCORERS.get(task)
    if kind == "literal":
        try:
            tree = ast.parse(answer.strip(), mode="eval")
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return None  # eval raises SyntaxError before running anything
        if all(isinstance(node, _LITERAL_NODES) for node in ast.walk(tree)):
            return None
        return "answer_evaluates_code:not_a_literal"
    if kind == "expression":
        if _EXPRESSION.fullmatch(answer) is None or ".." in answer or re.search(r"[A-Za-z_]\s*\.", answer):
            return "answer_evaluates_code:not_an_expression"
        if any(len(n) > 1 and n not in _MATH_NAMES for n in _NAMES.findall(answer)):
            return "answer_evaluates_code:unknown_name"
    return None


def score_in_sandbox(task: str, config_json: str, entry_json: str, answers: tuple[str, ...],
                     limits: SandboxConfig | None = None, guard: bool = True) -> list[Outcome]:
    """The task's scorer on each answer, each in a child of its own inside the sandbox. With `guard`, an answer an
    evaluating scorer would run as code is refused first (`unevaluable`). Stops at the first answer without a value:
    `(None, "answer_evaluates_code:...")`, `(None, "scorer_error:<Type>")`, `(None, "scorer_timeout")`,
    `(None, "scorer_cpu_limit")`,
    `(None, "scorer_crashed")`, `(None, "no_isolation:...")`."""
    limits = limits or SandboxConfig()
    config, entry = json.loads(config_json), json.loads(entry_json)
    outcomes: list[Outcome] = []
    with _LOCK:
        box = _sandbox(limits, task)
        for answer in answers:
            refused = unevaluable(task, answer) if guard else None
            if refused is not None:
                outcomes.append((None, refused))
                break
            if isinstance(box, str):
                outcomes.append((None, box))
                break
            reply = box.score(task, config, entry, answer)
            if reply is None:
                outcomes.append((None, "scorer_timeout"))
                break
            if "score" in reply:
                outcomes.append((reply["score"], None))
                continue
            why = f"scorer_error:{reply['error']}" if "error" in reply else f"scorer_{reply.get('status')}"
            outcomes.append((None, why[:80]))
            break
    return outcomes


def close_sandboxes() -> None:
    """Stop this process's scorer sandboxes (tests and benchmarks; a process's own end takes them down anyway)."""
    with _LOCK:
        for box in _SANDBOXES.values():
            box.close()
        _SANDBOXES.clear()
