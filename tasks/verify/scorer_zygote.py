"""The warm scorer inside the scorer sandbox (stdlib and reasoning-gym only; the verifier never imports it, it reads
its source and runs it under bwrap as the namespace's pid 1).

    python -I -S -B scorer_zygote.py JOB_DIR

It makes itself untraceable, imports each task's scorer once, on the first request for it (the cost paid per worker),
then answers one request per line on stdin, `{"task", "module", "config", "entry", "answer", "wall_s", "cpu_s",
"memory_mb", "max_processes"}`, with one
line on stdout: `{"score": <the scorer's value>}`, `{"error": "<exception type>"}` or `{"status": "timeout" |
"cpu_limit" | "crashed"}`.

Model text never runs here: each answer is scored by a forked child that holds no fd but its own result pipe, runs
under rlimits (address space: what the warm process holds plus `memory_mb`), scores that one answer and exits. After
it, every other process in the namespace is killed and reaped (as pid 1 this process outlives `kill(-1)`, and the
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


def _score_child(score_answer, request: dict, result_w: int) -> None:
    """The forked child: drop every fd but the result pipe, set the limits, score one answer, leave."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    keep = os.dup2(result_w, 3)
    for fd in map(int, os.listdir("/proc/self/fd")):  # (closerange over every possible fd costs milliseconds)
        if fd > 3:
            try:
                os.close(fd)
            except OSError:
                pass
    memory = _vm_size() + (request["memory_mb"] << 20)
    for name, value in (("RLIMIT_AS", memory), ("RLIMIT_CPU", request["cpu_s"]), ("RLIMIT_FSIZE", 0),
                        ("RLIMIT_NOFILE", 16), ("RLIMIT_NPROC", request["max_processes"]), ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))
    try:
        score = score_answer(request["answer"], request["entry"])
        try:
            message = json.dumps({"score": score})
        except (TypeError, ValueError):
            message = json.dumps({"score": repr(score)[:60]})
    except BaseException as error:  # whatever the answer made the scorer do: this verdict's error, nothing more
        message = json.dumps({"error": type(error).__name__})
    os.write(keep, (message + "\n").encode()[:_RESULT_CAP])
    os._exit(0)


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


def _verdict(score_answer, request: dict) -> dict:
    """Fork the child for one answer and read its one line (within the wall limit). The caller replies, then kills
    and reaps everything but itself before it reads the next request: no verdict starts while anything of the last
    one lives."""
    result_r, result_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(result_r)
        _score_child(score_answer, request, result_w)
    os.close(result_w)
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
    scorers = {}
    _wipe(job["work_dir"])  # what the imports cached there (matplotlib's config): every verdict starts empty
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    gc.freeze()  # the warm heap stays shared with the children instead of being copied by their collector
    os.write(1, b'{"ready": true}\n')
    stdin = os.fdopen(0, "rb", buffering=0)
    for line in iter(stdin.readline, b""):
        request = json.loads(line)
        key = (request["task"], json.dumps(request["config"], sort_keys=True))
        if key not in scorers:  # built here, from the task and config only (no model text): a warm scorer
            load_task_module(request["module"])  # first: the task module imports the factory in its own order
            factory = load_task_module("reasoning_gym.factory")
            scorers[key] = factory.create_dataset(request["task"], size=1, seed=0, **request["config"]).score_answer
            scorers[key](str(request["entry"].get("answer")), request["entry"])  # the gold answer warms its imports
            gc.freeze()
        os.write(1, (json.dumps(_verdict(scorers[key], request)) + "\n").encode())
        _reap_everything_else()
        _wipe(job["work_dir"])


if __name__ == "__main__":
    main()
