"""The program that runs inside the code sandbox (stdlib only; the verifier never imports it, it reads its source).

    python -I -S harness.py JOB_DIR RESULT_FD RUN_ID

It sets the job's rlimits, loads the candidate (JOB_DIR/solution.py) as the module `solution` (never `__main__`),
then runs the job (JOB_DIR/job.json) and writes one JSON line per test to RESULT_FD:

- mode "values": each case is an expression; its value is sent back as the repr of plain builtins only
  (`{"i": 0, "value": "[1, 2]"}`), or the exception it raised (`{"i": 0, "error": "ValueError"}`). The expected
  values never come here: the verifier compares outside.
- mode "asserts": one case (a block of test code) per run; `{"i": 0, "passed": true, "nonce": ...}`. The test code
  runs in this process and the candidate in a forked process of its own (forked before the case and the nonce come
  on stdin), called through a proxy (JOB_DIR/assert_proxy.py): plain values over a pipe. Patching names, builtins,
  `json`, walking frames or hunting with `gc` in the candidate's process reaches nothing of the test; the test
  process is not dumpable, so the candidate cannot read its memory or fds either.
- mode "load": only load the candidate (the sandbox tests' hostile programs).

Before every case, the hooks a candidate could leave behind are reset (trace and profile functions, exit hooks,
`sys.excepthook`, signal handlers and timers). Nothing here is trusted by the verifier: the candidate runs in this
process (values, load) or its own (asserts) and may rewrite any of it there; the verifier treats whatever arrives on
RESULT_FD as untrusted data.
"""

import atexit
import builtins
import importlib.util
import json
import operator
import os
import resource
import signal
import sys

# Imported and bound before the candidate loads (it could swap modules in sys.modules or rebind names later); `ast`
# is bound in main() when the job needs it (assert tests), to keep the start of a run short.
_write, _read, _exit, _type, _repr, _dumps = os.write, os.read, os._exit, type, repr, json.dumps
_literal_eval = None
_PLAIN = (int, float, complex, str, bytes, bool, type(None))
_CONTAINERS = (list, tuple, set, frozenset)


def plain_repr(value, depth=0):
    """repr of a value made of exact builtin types (no subclasses, no objects whose repr could lie)."""
    if depth > 50:
        raise ValueError("nested too deeply")
    kind = _type(value)
    if any(kind is t for t in _PLAIN):  # identity: a metaclass could make `==` on types lie
        return _repr(value)
    if any(kind is t for t in _CONTAINERS):
        for item in value:
            plain_repr(item, depth + 1)
        return _repr(value)
    if kind is dict:
        for key, item in value.items():
            plain_repr(key, depth + 1)
            plain_repr(item, depth + 1)
        return _repr(value)
    raise TypeError("not plain data: " + kind.__name__)


_OPERATORS = {"Eq": operator.eq, "NotEq": operator.ne, "Lt": operator.lt, "LtE": operator.le, "Gt": operator.gt,
              "GtE": operator.ge, "In": lambda a, b: a in b, "NotIn": lambda a, b: a not in b, "Is": operator.is_,
              "IsNot": operator.is_not}


def plain(value):
    """A copy of `value` made of builtins only (TypeError for anything else): its `==` and truth cannot lie."""
    return _literal_eval(plain_repr(value))


def compare(left, ops, *rights):
    """A chained comparison on plain copies of its operands (identity tests on the operands themselves)."""
    for op, right in zip(ops, rights):
        identity = op in ("Is", "IsNot")
        if not _OPERATORS[op](*((left, right) if identity else (plain(left), plain(right)))):
            return False
        left = right
    return True


def truth(value):
    return bool(plain(value))


def set_limits(limits):
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def reset_hooks():
    sys.settrace(None)
    sys.setprofile(None)
    threading = sys.modules.get("threading")
    if threading is not None:
        threading.settrace(None)
        threading.setprofile(None)
    sys.excepthook, sys.displayhook, sys.breakpointhook = sys.__excepthook__, sys.__displayhook__, \
        sys.__breakpointhook__
    atexit._clear()
    for timer in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF):
        signal.setitimer(timer, 0)
    for sig in (signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN if sig == signal.SIGPIPE else signal.SIG_DFL)


def become_init():
    """As the sandbox's pid 1 (`bwrap --as-pid-1`): make this process untraceable (not dumpable: no /proc/1/mem,
    /proc/1/fd for the candidate, a process of the same uid), fork the job's process, hold no fd of the run, reap
    whatever is orphaned, and leave with the job's status (128 + N when a signal N ended it, as bwrap reports). The
    namespace, and everything left in it, ends with this process."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE, 0; inherited by the job's processes across fork
        _exit(125)
    job = os.fork()
    if job == 0:
        return
    os.closerange(0, 1 << 16)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            _exit(125)
        if pid == job:
            _exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def load_candidate(job_dir, emit):
    """Load the candidate as the module `solution` in this process; its namespace (the process ends on an error)."""
    spec = importlib.util.spec_from_file_location("solution", os.path.join(job_dir, "solution.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["solution"] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit:
        pass  # an exit at the end of the module (`sys.exit(main())`): the functions it defined are still tested
    except BaseException as error:
        emit({"load": "error", "error": _type(error).__name__})
        import traceback  # for whoever reads stderr; nothing depends on it

        traceback.print_exc()
        finish(1)
    return module.__dict__


def receive_late(emit):
    """Say the candidate is loaded, then read (cases, nonce) from stdin: they were on no disk while it loaded."""
    emit({"loaded": True})
    chunks = []
    while True:
        chunk = _read(0, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    late = json.loads(b"".join(chunks))
    return late["cases"], late["nonce"]


def main():
    if os.getpid() == 1:
        become_init()
    job_dir, result_fd = sys.argv[1], int(sys.argv[2])
    with open(os.path.join(job_dir, "job.json")) as f:
        job = json.load(f)
    set_limits(job["limits"])
    if job["mode"] == "asserts":
        global _literal_eval
        import ast

        _literal_eval = ast.literal_eval

    def emit(message):
        _write(result_fd, (_dumps(message) + "\n").encode())

    if job["mode"] == "asserts":  # the test and the candidate in two processes: JOB_DIR/assert_proxy.py
        spec = importlib.util.spec_from_file_location("assert_proxy", os.path.join(job_dir, "assert_proxy.py"))
        proxy = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(proxy)
        proxy.run_asserts(job, job_dir, result_fd, emit)
    namespace = load_candidate(job_dir, emit)
    namespace["__cotforge_compare__"], namespace["__cotforge_truth__"] = compare, truth  # for assert tests
    if job["mode"] == "load":
        finish(0)
    try:
        reset_hooks()
        exec(compile(job.get("setup", ""), "<test setup>", "exec"), namespace)
    except BaseException as error:
        emit({"setup": "error", "error": _type(error).__name__})
        finish(1)
    cases = receive_late(emit)[0] if job.get("late") else job["cases"]
    for i, case in enumerate(cases):
        reset_hooks()
        try:
            value = eval(compile(case, f"<test {i}>", "eval"), namespace)
            reset_hooks()
            emit({"i": i, "value": plain_repr(value)})
        except BaseException as error:
            emit({"i": i, "error": _type(error).__name__})
    finish(0)


def finish(status):
    """Flush what the program printed, then leave without exit hooks or waiting for threads it started."""
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass
    _exit(status)  # no exit hooks, no waiting for threads the candidate started


if __name__ == "__main__":
    main()
