"""A sandbox for candidate programs: a subprocess with hard limits, no network, a throw-away working directory.

Layers, each one holding on its own where it can:
- Resource limits (setrlimit, inherited by every child): CPU seconds, address space (memory), number of processes,
  file size (stdout/stderr go to files, so this also caps output), open files; a wall-clock limit after which the whole
  process group is killed.
- A throw-away user id whenever the verifier runs as root (root ignores RLIMIT_NPROC, so this is not optional):
  RLIMIT_NPROC then counts only the sandbox's processes (a fork bomb stops at `max_processes`), file permissions keep
  it out of everything it does not own (the verifier's files, /root, /proc/<pid>/environ of other users; world-
  writable places such as /tmp are left to the audit hook), and after the run every process of that uid is killed,
  including any that escaped the process group with setsid(). Not root: RLIMIT_NPROC is the user's current process
  count plus `max_processes`.
- No network: a fresh network namespace (the unshare(2) syscall with CLONE_NEWNET, i.e. `unshare -n`) when the
  kernel allows it, so only an unconnected loopback exists; and always an audit hook (PEP 578) in the harness that
  refuses socket creation, subprocesses/exec, ctypes, writes outside the working directory and reading other
  processes' environments.
- A scrubbed environment (PATH, LANG, HOME=workdir only): HF_TOKEN, API keys and the like never reach the program.

The audit hook alone is not a security boundary (a C extension could bypass it); the namespace, the uid and the
rlimits are. `SandboxResult.network` says which network guard was active.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache

from cotforge.schemas.config_verify import SandboxConfig

_CLONE_NEWNET = 0x40000000
_SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
             "PYTHONHASHSEED": "0"}

# Runs first inside the sandbox: installs the audit hook, then the program as __main__.
_GUARD = r'''
import os, sys
_ROOT = os.path.realpath(os.getcwd())
_BLOCKED_PREFIXES = ("socket.", "subprocess.", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "ctypes.",
                     "os.startfile", "pty.")
_PATH_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod", "os.chown",
                "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move", "os.removexattr",
                "os.setxattr"}

def _inside(path):
    try:
        real = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return real == _ROOT or real.startswith(_ROOT + os.sep)

def _deny(what):
    raise PermissionError("sandbox: " + what + " blocked")

def _hook(event, args):
    if event.startswith(_BLOCKED_PREFIXES):
        _deny(event)
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int):
            return
        text = os.fsdecode(path)
        writing = any(c in (mode or "") for c in "wax+") or (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT
                                                                             | os.O_APPEND | os.O_TRUNC)
        if writing and not _inside(text):
            _deny("writing outside the working directory: " + text)
        parts = text.split("/")
        if len(parts) >= 4 and parts[1] == "proc" and parts[-1] == "environ" and parts[2] not in ("self", str(os.getpid())):
            _deny("reading another process's environment")
    elif event in _PATH_EVENTS:
        for arg in args[:2]:
            if isinstance(arg, (str, bytes, os.PathLike)) and not _inside(arg):
                _deny(event + " outside the working directory")

sys.addaudithook(_hook)
del _hook
import runpy
runpy.run_path("main.py", run_name="__main__")
'''


@dataclass(frozen=True)
class SandboxResult:
    """How a program run ended. `status`: ok, tests_failed, error, syntax_error, timeout, cpu_limit, memory_limit,
    output_limit, process_limit, blocked, sandbox_error."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    network: str  # "namespace+audit_hook" or "audit_hook"
    user: str  # "isolated_uid:<n>" or "same_user"

    @property
    def passed(self) -> bool:
        return self.status == "ok"


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _unshare_network() -> None:
    if _libc().unshare(_CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")


@lru_cache(maxsize=1)
def network_namespace_available() -> bool:
    """Whether this process may create network namespaces (root or CAP_SYS_ADMIN, no seccomp veto)."""
    try:
        return subprocess.run(["/bin/true"], preexec_fn=_unshare_network, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _user_process_count(uid: int) -> int:
    """Live (not zombie) processes whose real uid is `uid`."""
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/status") as f:
                    status = f.read()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            count += int(fields.get("Uid", "-1 ").split()[0]) == uid and not fields.get("State", "").strip(
                ).startswith(("Z", "X"))
    return count


def _sandbox_uid(pid: int | None = None) -> int | None:
    """A uid no one else uses, derived from the verifier process's pid (unique among live verifier processes)."""
    return 200_000 + (pid or os.getpid()) if os.geteuid() == 0 else None


def _dir_prefix(pid: int) -> str:
    return f"cotforge-sandbox-{pid}-"


def clean_up_after(pid: int) -> None:
    """Kill what a dead verifier process left running in its sandbox, and remove its working directories.

    The worker pool calls this after killing a worker that overran its hard deadline mid-run."""
    uid = _sandbox_uid(pid)
    if uid is not None:
        _kill_user_processes(uid)
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        if name.startswith(_dir_prefix(pid)):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


@lru_cache(maxsize=4)
def _interpreter_for(uid: int | None) -> str:
    """A Python the sandbox user can execute (the verifier's own may live under an unreadable home)."""
    candidates = [sys.executable, os.path.realpath(sys.executable), shutil.which("python3") or "", "/usr/bin/python3"]
    for candidate in [c for c in candidates if c]:
        try:
            done = subprocess.run([candidate, "-I", "-S", "-c", "pass"], preexec_fn=_drop_to(uid) if uid else None,
                                  env=_SAFE_ENV, cwd="/", capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return candidate
    raise RuntimeError("no Python interpreter the sandbox user can run")


def _drop_to(uid: int):
    def drop() -> None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return drop


def _limits_preexec(limits: SandboxConfig, uid: int | None, nproc: int, namespace: bool):
    def preexec() -> None:
        if namespace:
            _unshare_network()  # before dropping privileges: creating a namespace needs CAP_SYS_ADMIN
        os.umask(0o077)
        set_limit = resource.setrlimit
        set_limit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        set_limit(resource.RLIMIT_AS, (limits.memory_mb << 20, limits.memory_mb << 20))
        set_limit(resource.RLIMIT_FSIZE, (limits.max_output_bytes, limits.max_output_bytes))
        set_limit(resource.RLIMIT_NOFILE, (64, 64))
        set_limit(resource.RLIMIT_CORE, (0, 0))
        set_limit(resource.RLIMIT_NPROC, (nproc, nproc))
        if uid is not None:
            _drop_to(uid)()
    return preexec


def _kill_user_processes(uid: int) -> None:
    """SIGKILL every process of the sandbox uid (kill(-1) as that uid reaches exactly those), until none is left."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _user_process_count(uid) == 0:
            return
        try:
            subprocess.run([_interpreter_for(uid), "-I", "-S", "-c", "import os; os.kill(-1, 9)"],
                           preexec_fn=_drop_to(uid), env=_SAFE_ENV, cwd="/", timeout=10, capture_output=True)
        except (OSError, subprocess.SubprocessError):
            pass
        time.sleep(0.05)


def _read_capped(path: str, cap: int) -> str:
    with open(path, "rb") as f:
        return f.read(cap).decode("utf-8", "replace")


def _classify(returncode: int | None, stderr: str, timed_out: bool, output_full: bool) -> str:
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "ok"
    if returncode in (-signal.SIGXFSZ,) or output_full:
        return "output_limit"
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):  # soft CPU limit, or the hard one a second later
        return "cpu_limit"
    if "MemoryError" in stderr:
        return "memory_limit"
    if "sandbox:" in stderr and "blocked" in stderr:
        return "blocked"
    if "BlockingIOError" in stderr or "Resource temporarily unavailable" in stderr:
        return "process_limit"
    if "SyntaxError" in stderr or "IndentationError" in stderr:
        return "syntax_error"
    if "AssertionError" in stderr:
        return "tests_failed"
    return "error"


def run_program(source: str, limits: SandboxConfig = SandboxConfig(), audit_hook: bool = True) -> SandboxResult:
    """Run `source` as __main__ in a fresh sandbox; the working directory is removed afterwards.

    `audit_hook=False` leaves only the kernel-enforced layers (tests use it to check each layer on its own)."""
    namespace = limits.network != "audit" and network_namespace_available()
    if limits.network == "unshare" and not namespace:
        return SandboxResult("sandbox_error", None, "", "network namespaces unavailable", 0.0, "none", "none")
    uid = _sandbox_uid()
    nproc = limits.max_processes if uid is not None else _user_process_count(os.getuid()) + limits.max_processes
    network = "namespace+audit_hook" if namespace else "audit_hook"
    user = f"isolated_uid:{uid}" if uid is not None else "same_user"
    workdir = tempfile.mkdtemp(prefix=_dir_prefix(os.getpid()))
    outdir = tempfile.mkdtemp(prefix=_dir_prefix(os.getpid()) + "out-")  # outside the workdir: out of its reach
    try:
        with open(os.path.join(workdir, "main.py"), "w") as f:
            f.write(source)
        with open(os.path.join(workdir, "_guard.py"), "w") as f:
            f.write(_GUARD if audit_hook else 'import runpy\nrunpy.run_path("main.py", run_name="__main__")\n')
        if uid is not None:
            for name in ("", "main.py", "_guard.py"):
                os.chown(os.path.join(workdir, name), uid, uid)
        out_path, err_path = os.path.join(outdir, "stdout"), os.path.join(outdir, "stderr")
        env = dict(_SAFE_ENV, HOME=workdir, TMPDIR=workdir)
        start = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                process = subprocess.Popen(
                    [_interpreter_for(uid), "-I", "-S", "_guard.py"], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, start_new_session=True, close_fds=True,
                    preexec_fn=_limits_preexec(limits, uid, nproc, namespace))
            except (OSError, subprocess.SubprocessError, RuntimeError) as error:
                return SandboxResult("sandbox_error", None, "", f"{type(error).__name__}: {error}", 0.0, network,
                                     user)
            timed_out = False
            try:
                process.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:
                    os.killpg(process.pid, signal.SIGKILL)  # the group: children it forked die with it
                except ProcessLookupError:
                    pass
                process.wait()
                if uid is not None:
                    _kill_user_processes(uid)  # and any that left the group
        wall = time.monotonic() - start
        stdout = _read_capped(out_path, limits.max_output_bytes)
        stderr = _read_capped(err_path, limits.max_output_bytes)
        output_full = max(os.path.getsize(out_path), os.path.getsize(err_path)) >= limits.max_output_bytes
        status = _classify(process.returncode, stderr, timed_out, output_full)
        return SandboxResult(status, process.returncode, stdout, stderr[-4000:], wall, network, user)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(outdir, ignore_errors=True)


def check_program(code: str, tests: str, limits_json: str) -> tuple[bool | None, str]:
    """Pool item for the `code` verifier: the candidate program followed by the question's tests (asserts)."""
    limits = SandboxConfig.model_validate_json(limits_json)
    result = run_program(f"{code}\n\n# --- tests ---\n{tests}\n", limits)
    if result.status == "sandbox_error":
        return None, "sandbox_error"
    return result.passed, "tests_passed" if result.passed else result.status
