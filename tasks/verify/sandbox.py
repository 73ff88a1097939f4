"""The code sandbox: a candidate program runs under bubblewrap in fresh namespaces and sends back what it computed.

Layers (`isolation: bubblewrap`, the default), each holding on its own:
- namespaces (`bwrap --unshare-all --unshare-user --disable-userns`: user, pid, network, ipc, uts, cgroup): a fresh
  /proc showing only the sandbox's processes, so `kill(-1, 9)` and /proc/<pid>/environ reach nothing of the host;
  only an unconnected loopback; when the harness ends, pid 1 of the namespace ends and the kernel kills every
  process left in it (setsid orphans included);
- the file system: an empty read-only root with the interpreter's files bound read-only (/usr, /lib*, the
  interpreter's prefix), the job's files read-only, and a size-capped tmpfs as the only writable place: no home, no
  /tmp, no caches, no tokens, no repository;
- a scrubbed environment (`--clearenv`; PATH, LANG, HOME and TMPDIR only);
- rlimits (CPU seconds, address space, processes, file size, open files, no core dumps), set by the harness before
  the candidate loads, and a wall-clock limit after which the namespace's pid 1 is killed;
- as root, a throw-away uid: bwrap starts after dropping to it, so it runs unprivileged (no capabilities to hand on)
  and, outside the namespaces, the program owns nothing of the host.

Where bwrap is missing or cannot create namespaces nothing runs: the status is `no_isolation`. A recipe may opt out
(`isolation: none`): a plain subprocess with the rlimits, a scrubbed environment, a private directory and, as root,
the uid drop, and nothing more (no pid or network namespace).
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache

from cotforge.schemas.config_verify import SandboxConfig
from cotforge.tasks.verify.syscall_filter import filter_bpf, filter_fd
from cotforge.tasks.verify.sandbox_host import (  # noqa: F401 (clean_up_after, marked_processes: used by the pool, tests)
    JOB_DIR,
    _bwrap_argv,
    _dir_prefix,
    _drop_to,
    _environment,
    _interpreter_for,
    _limits,
    _memfd,
    _sandbox_uid,
    clean_up_after,
    kill_marked,
    marked_processes,
)

HARNESS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness.py")
ASSERT_PROXY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assert_proxy.py")
_DRAIN_S = 5.0  # after the program ends, how long the output pipes may take to close


@dataclass(frozen=True)
class SandboxRun:
    """How one run ended. `status`: ok, error, syntax_error, timeout, cpu_limit, memory_limit, output_limit,
    process_limit, no_isolation, sandbox_error. `results`: the lines the harness (or whatever forged them) wrote on
    the result channel, untrusted. `run_id` appears in the command line of every process of the run."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    results: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    isolation: str = "none"  # "bubblewrap" or "none"
    user: str = "same_user"  # "uid:<n>" (root dropped to a throw-away uid), "same_user", "userns_root"
    run_id: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "ok"


@lru_cache(maxsize=2)
def isolation_problem(uid: int | None = None) -> str | None:
    """Why bubblewrap cannot isolate a program here (None: it can). Probed once per process and uid."""
    if shutil.which("bwrap") is None:
        return "bwrap not installed (Debian package bubblewrap)"
    try:
        filter_bpf()
    except RuntimeError as error:
        return str(error)
    run = _run("pass", {"mode": "load", "cases": []}, SandboxConfig(), probe=True)
    return None if run.status == "ok" else f"bwrap failed: {run.stderr.strip()[-300:]}"


def run_job(source: str, job: dict, limits: SandboxConfig = SandboxConfig()) -> SandboxRun:
    """Run the harness on `source` with `job` ({"mode", "setup", "cases"}) in a fresh sandbox. With `"late": true`
    the cases (and `"nonce"`) are not on the sandbox's disk while the candidate loads: they go to the harness's stdin
    once it says the candidate is loaded (assert tests carry their expected values)."""
    if limits.isolation == "bubblewrap":
        problem = isolation_problem(_sandbox_uid())
        if problem is not None:
            return SandboxRun("no_isolation", None, "", problem)
    return _run(source, job, limits)


def run_program(source: str, limits: SandboxConfig = SandboxConfig()) -> SandboxRun:
    """Load `source` as a module in a fresh sandbox (what a hostile program does at import is all it gets to do)."""
    return run_job(source, {"mode": "load", "cases": []}, limits)


def _run(source: str, job: dict, limits: SandboxConfig, probe: bool = False) -> SandboxRun:
    run_id = "cotforge-run-" + secrets.token_hex(8)
    uid = _sandbox_uid()
    interpreter = _interpreter_for(uid)
    user = "same_user" if uid is None else f"uid:{uid}"
    if interpreter is None:  # root, and no Python the throw-away uid can run: namespaces only, capabilities dropped
        interpreter, uid, user = _interpreter_for(None), None, "userns_root"
    executable, prefix = interpreter
    with open(HARNESS_PATH, "rb") as f:
        harness = f.read()
    with open(ASSERT_PROXY_PATH, "rb") as f:
        assert_proxy = f.read()
    late = json.dumps({"cases": job["cases"], "nonce": job.get("nonce", "")}).encode() if job.get("late") else None
    on_disk = {k: v for k, v in job.items() if k != "nonce"} | {"cases": [] if late else job["cases"]}
    payload = {"harness.py": harness, "assert_proxy.py": assert_proxy,
               "solution.py": source.encode("utf-8", "surrogatepass"),
               "job.json": json.dumps(dict(on_disk, limits=_limits(limits))).encode()}
    bwrap = limits.isolation == "bubblewrap"
    result_r, result_w = os.pipe()
    info_r, info_w = os.pipe() if bwrap else (-1, -1)
    fds: dict[str, int] = {}
    workdir = None
    try:
        if bwrap:
            fds = {name: _memfd(name, data) for name, data in payload.items()}
            fds["seccomp"] = filter_fd()
            data_fds = {name: fd for name, fd in fds.items() if name != "seccomp"}
            argv = _bwrap_argv(executable, prefix, limits, data_fds, info_w, os.geteuid() == 0 and uid is None,
                               fds["seccomp"])
            argv += [executable, "-I", "-S", "-B", f"{JOB_DIR}/harness.py", JOB_DIR, str(result_w), run_id]
            env, cwd = {}, "/"
            passed = (result_w, info_w, *fds.values())
        else:
            workdir = tempfile.mkdtemp(prefix=_dir_prefix(os.getpid()))
            for name, data in payload.items():
                with open(os.path.join(workdir, name), "wb") as f:
                    f.write(data)
            if uid is not None:
                for name in ("", *payload):
                    os.chown(os.path.join(workdir, name), uid, uid)
            argv = [executable, "-I", "-S", "-B", os.path.join(workdir, "harness.py"), workdir, str(result_w), run_id]
            env, cwd, passed = _environment(workdir), workdir, (result_w,)
        return _supervise(argv, env, cwd, passed, uid, limits, result_r, info_r, bwrap, user, run_id, probe, late)
    finally:
        for fd in (result_r, result_w, info_r, info_w, *fds.values()):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _preexec(uid: int | None, bwrap: bool, limits: SandboxConfig):
    def preexec() -> None:
        os.umask(0o077)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if not bwrap:  # no namespace to count processes in: the limit applies before the interpreter starts
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        if uid is not None:
            _drop_to(uid)()
    return preexec


def _supervise(argv: list[str], env: dict, cwd: str, pass_fds: tuple, uid: int | None, limits: SandboxConfig,
               result_r: int, info_r: int, bwrap: bool, user: str, run_id: str, probe: bool,
               late: bytes | None = None) -> SandboxRun:
    """Start the run, collect its three channels (capped), kill it at the wall-clock limit, classify the end;
    `late` goes to stdin once the harness reports the candidate loaded."""
    isolation = "bubblewrap" if bwrap else "none"
    start = time.monotonic()
    try:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE if late else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, pass_fds=pass_fds, start_new_session=True,
                                   preexec_fn=_preexec(uid, bwrap, limits))
    except (OSError, subprocess.SubprocessError) as error:
        return SandboxRun("sandbox_error", None, "", f"{type(error).__name__}: {error}", [], 0.0, isolation, user,
                          run_id)
    for fd in pass_fds:  # the child holds its own copies: the pipes end when the sandbox's processes are gone
        os.close(fd)
    caps = {"stdout": limits.max_output_bytes, "stderr": limits.max_output_bytes, "results": limits.max_output_bytes,
            "info": 65536}
    buffers = {name: bytearray() for name in caps}
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")
    selector.register(result_r, selectors.EVENT_READ, "results")
    if info_r >= 0:
        selector.register(info_r, selectors.EVENT_READ, "info")
    deadline = start + (30.0 if probe else limits.wall_s)
    timed_out = overflow = False
    pid1: dict = {}  # the namespace's pid 1, as a pidfd (a pid could be reused once it is reaped)
    while selector.get_map():
        now = time.monotonic()
        if not timed_out and now >= deadline:
            timed_out = True
            _kill(process, pid1, uid, run_id, bwrap)
            deadline = now + _DRAIN_S
        elif timed_out and now >= deadline:
            break  # a writer we cannot kill holds a pipe open: stop listening
        for key, _ in selector.select(timeout=max(0.0, deadline - now)):
            stream = key.fileobj
            chunk = os.read(stream if isinstance(stream, int) else stream.fileno(), 65536)
            if not chunk:
                selector.unregister(stream)
                continue
            buffer = buffers[key.data]
            buffer += chunk[:max(0, caps[key.data] + 1 - len(buffer))]
            if key.data == "info" and not pid1:
                _open_pid1(buffer, pid1)
            if key.data == "results" and late is not None and b'"loaded"' in buffer:
                _send_late(process, late)
                late = None
            if len(buffer) > caps[key.data] and not overflow:
                overflow = True
                _kill(process, pid1, uid, run_id, bwrap)
    selector.close()
    _kill(process, pid1, uid, run_id, bwrap)
    process.wait()
    if "fd" in pid1:
        os.close(pid1["fd"])
    if not bwrap:  # no pid namespace: sweep for what left the process group
        kill_marked(run_id, uid)
    process.stdout.close()
    process.stderr.close()
    wall = time.monotonic() - start
    stdout, stderr = (bytes(buffers[n][:caps[n]]).decode("utf-8", "replace") for n in ("stdout", "stderr"))
    results = bytes(buffers["results"][:caps["results"]]).decode("utf-8", "replace").splitlines()
    status = _classify(process.returncode, stderr, results, timed_out, overflow, bwrap)
    return SandboxRun(status, process.returncode, stdout, stderr[-4000:], results, wall, isolation, user, run_id)


def _send_late(process: subprocess.Popen, data: bytes) -> None:
    """Hand the cases over without ever blocking on a program that does not read them (the rest is dropped: the
    harness then reads malformed cases and the tests fail)."""
    try:
        os.set_blocking(process.stdin.fileno(), False)
        os.write(process.stdin.fileno(), data)
    except OSError:
        pass
    finally:
        process.stdin.close()


def _open_pid1(info: bytearray, pid1: dict) -> None:
    """bwrap's --info-fd JSON names the namespace's pid 1; hold it as a pidfd while bwrap (its parent) is alive."""
    try:
        pid1["fd"] = os.pidfd_open(int(json.loads(bytes(info))["child-pid"]))
    except (ValueError, KeyError, TypeError, OSError):
        pass  # incomplete JSON: the next chunk completes it


def _kill(process: subprocess.Popen, pid1: dict, uid: int | None, run_id: str, bwrap: bool) -> None:
    """End the run and everything it started: the namespace's pid 1 under bwrap (the kernel then kills the rest of
    the namespace before bwrap can reap it), else the process group, every process of the throw-away uid, and any
    process carrying the run id."""
    if "fd" in pid1:
        try:
            signal.pidfd_send_signal(pid1["fd"], signal.SIGKILL)
        except OSError:
            pass
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _classify(returncode: int | None, stderr: str, results: list[str], timed_out: bool, overflow: bool,
              bwrap: bool) -> str:
    # bwrap reports a program killed by signal N as exit status 128 + N
    signum = -returncode if returncode is not None and returncode < 0 else (
        returncode - 128 if bwrap and returncode is not None and returncode > 128 else None)
    if timed_out:
        return "timeout"
    if overflow or signum == signal.SIGXFSZ:
        return "output_limit"
    if returncode == 0:
        return "ok"
    if signum in (signal.SIGXCPU, signal.SIGKILL):  # soft CPU limit, or the hard one
        return "cpu_limit"
    if "MemoryError" in stderr or any('"MemoryError"' in line for line in results):
        return "memory_limit"
    if "BlockingIOError" in stderr or "Resource temporarily unavailable" in stderr:
        return "process_limit"
    if any('"load": "error"' in line and "SyntaxError" in line for line in results) or "SyntaxError" in stderr:
        return "syntax_error"
    return "error"


