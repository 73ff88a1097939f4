"""The warm scorer inside the scorer sandbox (stdlib and reasoning-gym only; the verifier never imports it, it reads
its source and runs it under bwrap as the namespace's pid 1).

    python -I -S -B scorer_zygote.py JOB_DIR

It makes itself untraceable, imports each task's scorer once, on the first request for it (the cost paid per worker),
then answers one request per line on stdin, `{"task", "module", "config", "entry", "answer", "wall_s", "cpu_s",
"memory_mb", "max_processes"}`, with one
line on stdout: `{"score": <the scorer's value>}`, `{"error": "<exception type>"}` or `{"status": "timeout" |
"cpu_limit" | "crashed"}`.

Model text never runs here: each answer is scored by a forked child that holds no fd but its own request and result
pipes, runs under rlimits (address space: what the warm process holds plus `memory_mb`), scores that one answer and
exits. The child for the next answer is forked (and sets itself up) as soon as the last verdict is cleaned up, while
the caller reads the reply: the fork, the set-up and the child's exit are off a verdict's path (measured here: 0.5-1.5
ms of it; the rest is the scoring, and its copy-on-write faults, in the child). After a verdict, every other process
in the namespace is killed and reaped (as pid 1 this process outlives `kill(-1)`, and the
init's signal protection keeps the child from killing it), so nothing of one verdict is left for the next: no
process, no file (the sandbox's one writable place, a capped tmpfs, is emptied), no System V object (the seccomp
filter refuses them), and this process's memory is out of reach (not dumpable, ptrace refused). Whatever a child
writes on its pipe speaks only for its own answer.
"""

import ctypes
import gc
import importlib
import importlib.util
import json
import os
import resource
import select
import shutil
import signal
import sys
import time
import types

_RESULT_CAP = 65536


def load_task_module(module: str):
    """Import one reasoning-gym task module without its packages' `__init__` (which import every task, matplotlib
    included): the parents become bare packages. A fork costs in proportion to the memory the warm process holds,
    so it holds the scorers it was asked for, not the whole library."""
    parts = module.split(".")
    for i in range(1, len(parts)):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            spec = importlib.util.find_spec(name)
            package = types.ModuleType(name)
            package.__path__, package.__spec__, package.__package__ = list(spec.submodule_search_locations), spec, name
            sys.modules[name] = package
            if i > 1:
                setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], package)
    return importlib.import_module(module)


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _standby_child(scorers: dict, request_r: int, result_w: int) -> None:
    """The forked child: keep only its two pipes (as fds 3 and 4), wait for one request, set the limits, score that
    one answer with the warm scorer, leave. Everything before the request is set-up the caller does not wait for."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    max_fd = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # no fd of this process is above it
    os.dup2(request_r, max_fd - 2)  # out of the way first: either pipe may be fd 3 or 4 now
    os.dup2(result_w, max_fd - 1)
    os.dup2(max_fd - 2, 3)
    os.dup2(max_fd - 1, 4)
    os.closerange(5, max_fd)  # one close_range call
    warm_size = _vm_size()
    request = b""
    while not request.endswith(b"\n"):
        chunk = os.read(3, 1 << 20)
        if not chunk:
            os._exit(0)  # the warm process dropped this standby (a new scorer to warm first)
        request += chunk
    request = json.loads(request)
    for name, value in (("RLIMIT_AS", warm_size + (request["memory_mb"] << 20)), ("RLIMIT_CPU", request["cpu_s"]),
                        ("RLIMIT_FSIZE", 0), ("RLIMIT_NOFILE", 16), ("RLIMIT_NPROC", request["max_processes"]),
                        ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))
    try:
        score = scorers[request["key"]](request["answer"], request["entry"])
        try:
            message = json.dumps({"score": score})
        except (TypeError, ValueError):
            message = json.dumps({"score": repr(score)[:60]})
    except BaseException as error:  # whatever the answer made the scorer do: this verdict's error, nothing more
        message = json.dumps({"error": type(error).__name__})
    os.write(4, (message + "\n").encode()[:_RESULT_CAP])
    os._exit(0)


class Standby:
    """The forked child that will score the next answer, with the warm process's ends of its pipes."""

    def __init__(self, scorers: dict):
        request_r, self.request_w = os.pipe()
        self.result_r, result_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            _standby_child(scorers, request_r, result_w)
        os.close(request_r)
        os.close(result_w)

    def drop(self) -> None:
        for fd in (self.request_w, self.result_r):
            os.close(fd)


def _reap_everything_else() -> None:
    """Kill every process of the namespace but this one (and reap them: orphans come to pid 1)."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _wipe(work_dir: str) -> None:
    """Empty the sandbox's tmpfs (what a child wrote there must not reach the next verdict); directories a child
    made unreadable are opened up first (they are this uid's own)."""
    for top, dirs, _ in os.walk(work_dir):
        for name in dirs:
            os.chmod(os.path.join(top, name), 0o700, follow_symlinks=False)
    for name in os.listdir(work_dir):
        path = os.path.join(work_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def _verdict(standby: Standby, request: dict) -> dict:
    """Hand one answer to the standby child and read its one line (within the wall limit). The caller replies, then
    kills and reaps everything but itself before it forks the next standby: no verdict starts while anything of the
    last one lives."""
    child = standby.pid
    try:
        os.write(standby.request_w, (json.dumps(request) + "\n").encode())
    except BrokenPipeError:  # the child is gone before it was asked: no line comes, the verdict says "crashed"
        pass
    os.close(standby.request_w)
    result_r = standby.result_r
    deadline = time.monotonic() + request["wall_s"]
    data, status = b"", None
    while b"\n" not in data and len(data) <= _RESULT_CAP:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([result_r], [], [], left)[0]:
            status = "timeout"
            break
        chunk = os.read(result_r, _RESULT_CAP)
        if not chunk:
            break
        data += chunk
    os.close(result_r)
    if status is None and b"\n" not in data:  # it ended without a whole line: how?
        try:
            _, wait_status = os.waitpid(child, 0)
        except ChildProcessError:
            wait_status = 0
        signum = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
        status = "cpu_limit" if signum in (signal.SIGXCPU, signal.SIGKILL) else "crashed"
    if status is not None:
        return {"status": status}
    try:
        message = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        return {"status": "crashed"}
    if not isinstance(message, dict) or len(message) != 1 or not ({"score", "error"} & set(message)):
        return {"status": "crashed"}
    return message


def main() -> None:
    if os.getpid() != 1:  # kill(-1) is only safe inside a pid namespace of its own
        os._exit(126)
    job_dir = sys.argv[1]
    with open(os.path.join(job_dir, "job.json")) as f:
        job = json.load(f)
    sys.path[:0] = job["paths"]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE 0: no /proc/1/mem, /proc/1/fd for the children
        os._exit(125)
    scorers: dict = {}
    standby: Standby | None = None
    _wipe(job["work_dir"])  # what the imports cached there (matplotlib's config): every verdict starts empty
    # A write to a standby that died raises here instead of ending this process (its children restore the default);
    # a caller that is gone still ends it (the write of the reply raises).
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    gc.freeze()  # the warm heap stays shared with the children instead of being copied by their collector
    os.write(1, b'{"ready": true}\n')
    stdin = os.fdopen(0, "rb", buffering=0)
    for line in iter(stdin.readline, b""):
        request = json.loads(line)
        request["key"] = key = request["task"] + "\n" + json.dumps(request["config"], sort_keys=True)
        if key not in scorers:  # built here, from the task and config only (no model text): a warm scorer
            if standby is not None:  # it was forked without this scorer: it leaves, unasked
                standby.drop()
                _reap_everything_else()
                standby = None
            load_task_module(request["module"])  # first: the task module imports the factory in its own order
            factory = load_task_module("reasoning_gym.factory")
            scorers[key] = factory.create_dataset(request["task"], size=1, seed=0, **request["config"]).score_answer
            scorers[key](str(request["entry"].get("answer")), request["entry"])  # the gold answer warms its imports
            gc.freeze()
        os.write(1, (json.dumps(_verdict(standby or Standby(scorers), request)) + "\n").encode())
        _reap_everything_else()
        _wipe(job["work_dir"])
        standby = Standby(scorers)  # the next answer's child, set up while the caller reads this reply


if __name__ == "__main__":
    main()
