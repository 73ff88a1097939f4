"""What the code sandbox needs from the host: the throw-away uid, an interpreter it can run, the bubblewrap command
line, and finding (and killing) the processes of a run. Kept apart from tasks/verify/sandbox.py (running and
supervising one run) to keep both short."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import lru_cache

from cotforge.schemas.config_verify import SandboxConfig

JOB_DIR = "/cotforge"  # inside the sandbox: harness, candidate and job, read-only
WORK_DIR = "/sandbox"  # inside the sandbox: the size-capped tmpfs, the only writable place
_PATH = "/usr/local/bin:/usr/bin:/bin"


def _sandbox_uid(pid: int | None = None) -> int | None:
    """A uid no one else uses, derived from the verifier process's pid (unique among live verifier processes)."""
    return 200_000 + (pid or os.getpid()) if os.geteuid() == 0 else None


def _drop_to(uid: int):
    def drop() -> None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return drop


@lru_cache(maxsize=4)
def _interpreter_for(uid: int | None) -> tuple[str, str] | None:
    """(executable, prefix) of a Python that `uid` can run, the verifier's own first; None when there is none."""
    own = os.path.realpath(sys.executable)
    if uid is None:
        return own, sys.base_prefix
    for candidate in (own, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            done = subprocess.run([candidate, "-I", "-S", "-c", "import sys; print(sys.base_prefix)"],
                                  preexec_fn=_drop_to(uid), env={"PATH": _PATH}, cwd="/", capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return os.path.realpath(candidate), done.stdout.strip()
    return None


def _system_binds() -> list[str]:
    """/usr read-only, and the top-level links into it (/lib, /bin, ...) as the host has them."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _bwrap_argv(executable: str, prefix: str, limits: SandboxConfig, data_fds: dict[str, int], info_fd: int,
                as_root: bool, seccomp_fd: int, read_only: tuple[str, ...] = ()) -> list[str]:
    """The bwrap command line up to the program; `read_only` paths are bound as they are (a scorer's packages). The
    program runs as the namespace's pid 1 (no bwrap process of the same uid in there to trace): it makes itself
    untraceable and forks the work (tasks/verify/harness.py: become_init)."""
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--as-pid-1",
            "--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv", "--seccomp", str(seccomp_fd)]
    if info_fd >= 0:
        argv += ["--info-fd", str(info_fd)]
    if as_root:  # bwrap keeps root's capabilities inside the namespace unless told not to
        argv += ["--cap-drop", "ALL"]
    argv += _system_binds()
    if not prefix.startswith("/usr/"):
        argv += ["--ro-bind", prefix, prefix]
    if not executable.startswith(("/usr/", prefix.rstrip("/") + "/")):  # a venv's copied interpreter
        argv += ["--ro-bind", executable, executable]
    for path in read_only:
        argv += ["--ro-bind", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
             "--size", str(limits.disk_mb << 20), "--tmpfs", WORK_DIR]
    for name, fd in data_fds.items():
        argv += ["--ro-bind-data", str(fd), f"{JOB_DIR}/{name}"]
    argv += ["--remount-ro", "/", "--chdir", WORK_DIR]
    for key, value in _environment(WORK_DIR).items():
        argv += ["--setenv", key, value]
    return argv


def _environment(home: str) -> dict[str, str]:
    return {"PATH": _PATH, "LANG": "C.UTF-8", "HOME": home, "TMPDIR": home, "PYTHONHASHSEED": "0"}


def _limits(limits: SandboxConfig) -> dict[str, int]:
    """The rlimits the harness sets on itself before the candidate loads (soft = hard: no raising them back)."""
    return {"RLIMIT_CPU": limits.cpu_s, "RLIMIT_AS": limits.memory_mb << 20,
            "RLIMIT_FSIZE": max(limits.max_output_bytes, limits.disk_mb << 20), "RLIMIT_NOFILE": 64,
            "RLIMIT_CORE": 0, "RLIMIT_NPROC": limits.max_processes}


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _live_processes() -> list[tuple[int, int, bytes]]:
    """(pid, uid, command line) of every live (not zombie) process."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmdline = f.read()
                uid = os.stat(f"/proc/{name}").st_uid
            except OSError:
                continue
            if state not in ("Z", "X"):
                found.append((int(name), uid, cmdline))
    return found


def marked_processes(marker: str) -> list[int]:
    """Pids of live processes whose command line contains `marker` (every process of a run carries its run id)."""
    return [pid for pid, _, cmdline in _live_processes() if marker.encode() in cmdline]


def kill_marked(marker: str | None, uid: int | None = None, patience_s: float = 5.0) -> None:
    """SIGKILL every process carrying `marker` (and, as root, every process of `uid`) until none is left."""
    deadline = time.monotonic() + patience_s
    while True:
        pids = [pid for pid, owner, cmdline in _live_processes()
                if (marker and marker.encode() in cmdline) or (uid is not None and owner == uid)]
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)


def _dir_prefix(pid: int) -> str:
    return f"cotforge-sandbox-{pid}-"


def clean_up_after(pid: int) -> None:
    """Kill what a dead verifier process left running, and remove its working directories (`isolation: none`; under
    bwrap the kernel already did: --die-with-parent, then the pid namespace). The worker pool calls this after
    killing a worker that overran its hard deadline mid-run."""
    uid = _sandbox_uid(pid)
    if uid is not None:
        kill_marked(None, uid)
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        if name.startswith(_dir_prefix(pid)):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
