"""The code sandbox against hostile programs, with the grader running as root and as an unprivileged user.

Each attack runs through a grader process (tests/sandbox_runner.py) started as root or as the unprivileged account,
and asserts three things: the attack was contained (what it tried did not happen, checked from outside), nothing of
the run is left running (no live process carries the run's id, or the marker the program put in its own argv: the
positive control `test_sandbox_marker_scan_sees_a_running_sandbox` shows the scan finds such processes), and the
grader process is unharmed (it exits 0 with its answer; a sentinel process of the same user survives).
"""

import os
import socket
import threading
import uuid
from pathlib import Path

import pytest

from tests.sandbox_support import (
    IS_ROOT,
    SECRET,
    assert_nothing_left,
    grader,  # noqa: F401 (fixture)
    marker_free,
    require_bwrap,
    shared_dir,  # noqa: F401 (fixture)
    stop,
    wait_until,
)

LIMITS = {"cpu_s": 1, "wall_s": 4.0, "memory_mb": 256, "max_processes": 8, "max_output_bytes": 10_000, "disk_mb": 4}


def test_sandbox_runs_a_program_and_reports_isolation(grader):
    result = grader.run("print('hello from the sandbox')\n", **LIMITS)
    assert result["status"] == "ok" and result["stdout"] == "hello from the sandbox\n"
    assert result["isolation"] == "bubblewrap"
    assert result["user"] == ("uid:%d" % (200_000 + result["grader_pid"]) if grader.uid is None and IS_ROOT
                              else "same_user")
    assert_nothing_left(result["run_id"])


def test_sandbox_marker_scan_sees_a_running_sandbox(grader):
    """The positive control of every "nothing left running" check: while a run is alive, the scan finds it."""
    marker = "cotforge-marker-" + uuid.uuid4().hex
    program = ("import os, sys, time\n"
               "if os.fork() == 0:\n"
               f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n"
               "time.sleep(3)\n")
    done = {}
    thread = threading.Thread(target=lambda: done.update(grader.run(program, **dict(LIMITS, cpu_s=5, wall_s=8))))
    thread.start()
    seen = wait_until(lambda: not marker_free(marker), timeout_s=15)
    thread.join(60)
    assert seen, "the scan never saw the running sandbox process"
    assert done["status"] == "ok"
    assert_nothing_left(marker, done["run_id"])  # the child outlived its parent: pid 1's end took it down


@pytest.mark.slow
def test_sandbox_infinite_loop_hits_the_cpu_limit(grader):
    result = grader.run("while True:\n    pass\n", **LIMITS)
    # Under CPU contention from other processes the wall clock may run out before the CPU seconds do.
    assert result["status"] in ("cpu_limit", "timeout")
    assert result["wall_s"] < LIMITS["wall_s"] + 3
    assert_nothing_left(result["run_id"])


def test_sandbox_sleeping_loop_hits_the_wall_clock_limit(grader):
    result = grader.run("import time\nwhile True:\n    time.sleep(0.5)\n", **dict(LIMITS, cpu_s=5, wall_s=1.5))
    assert result["status"] == "timeout" and 1.5 <= result["wall_s"] < 5
    assert_nothing_left(result["run_id"])


@pytest.mark.slow
def test_sandbox_fork_bomb_is_stopped_by_the_process_limit(grader):
    sentinel = grader.sentinel()
    bomb = ("import os, time\n"
            "children = 0\n"
            "while True:\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            os.setsid()  # try to leave the process group too\n"
            "        else:\n"
            "            children += 1\n"
            "    except BlockingIOError:\n"
            "        print('fork refused after', children, flush=True)\n"
            "        time.sleep(30)\n")
    try:
        result = grader.run(bomb, **LIMITS)
        assert result["status"] in ("timeout", "process_limit", "cpu_limit")
        assert "fork refused" in result["stdout"]  # the limit, not luck, stopped it
        assert_nothing_left(result["run_id"])  # the setsid children died with the namespace
        assert sentinel.poll() is None  # the grader's user could still start processes: its other ones live
    finally:
        stop(sentinel)


def test_sandbox_memory_hog_is_refused(grader):
    result = grader.run("chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 2**20))\n", **LIMITS)
    assert result["status"] == "memory_limit" and "MemoryError" in result["stderr"]
    assert_nothing_left(result["run_id"])


def test_sandbox_huge_output_is_capped(grader):
    result = grader.run("while True:\n    print('x' * 1000)\n", **LIMITS)
    assert result["status"] == "output_limit"
    assert len(result["stdout"]) <= LIMITS["max_output_bytes"]
    assert_nothing_left(result["run_id"])


@pytest.fixture
def listener():
    """A real TCP server on 127.0.0.1 that records whatever reaches it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    got: list[bytes] = []
    stop_event = threading.Event()

    def accept():
        while not stop_event.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            got.append(conn.recv(100))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], got
    stop_event.set()
    thread.join(2)
    server.close()


def test_sandbox_network_is_unreachable(grader, listener):
    port, got = listener
    program = ("import socket\n"
               "for label, kind in (('tcp', socket.SOCK_STREAM), ('udp', socket.SOCK_DGRAM)):\n"
               "    try:\n"
               "        s = socket.socket(socket.AF_INET, kind)\n"
               "        s.settimeout(2)\n"
               f"        s.connect(('127.0.0.1', {port}))\n"
               "        s.sendall(b'leaked')\n"
               "        print('sent', label)\n"
               "    except OSError as e:\n"
               "        print('refused', label, type(e).__name__)\n")
    result = grader.run(program, **LIMITS)
    assert result["status"] == "ok" and "refused tcp" in result["stdout"]
    assert got == []  # (a UDP datagram may leave, into the sandbox's own unconnected loopback)
    assert_nothing_left(result["run_id"])
    # The control: from outside the sandbox the listener is reachable, so the test would have seen a leak.
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"control")
    assert wait_until(lambda: got == [b"control"], timeout_s=3)


def test_sandbox_cannot_write_outside(grader, shared_dir):
    name = "escape-" + uuid.uuid4().hex
    targets = [shared_dir / f"{name}-plain", Path("/tmp") / f"{name}-tmp", shared_dir / f"{name}-dirfd",
               shared_dir / f"{name}-symlink"]
    assert all(grader.can_write(t) for t in targets)  # the control: outside a sandbox this user could
    program = ("import os\n"
               "open('inside.txt', 'w').write('fine')\n"
               "print('inside', open('inside.txt').read())\n"
               "def attempt(label, action):\n"
               "    try:\n"
               "        action()\n"
               "        print('WROTE', label)\n"
               "    except OSError as e:\n"
               "        print('refused', label, type(e).__name__)\n"
               f"attempt('plain', lambda: open({str(targets[0])!r}, 'w').write('x'))\n"
               f"attempt('tmp', lambda: open({str(targets[1])!r}, 'w').write('x'))\n"
               "def dirfd():\n"
               "    root = os.open('/', os.O_RDONLY | os.O_DIRECTORY)\n"
               f"    os.close(os.open({str(targets[2])[1:]!r}, os.O_CREAT | os.O_WRONLY, dir_fd=root))\n"
               "attempt('dir_fd', dirfd)\n"
               "def dirfd_up():\n"
               "    here = os.open('.', os.O_RDONLY | os.O_DIRECTORY)\n"
               f"    os.close(os.open('../../..' + {str(targets[2])!r}, os.O_CREAT | os.O_WRONLY, dir_fd=here))\n"
               "attempt('dir_fd_up', dirfd_up)\n"
               "def link():\n"
               f"    os.symlink({str(targets[3])!r}, 'link')\n"
               "    open('link', 'w').write('x')\n"
               "attempt('symlink', link)\n"
               "attempt('root', lambda: open('/escape', 'w').write('x'))\n"
               "attempt('usr', lambda: open('/usr/escape', 'w').write('x'))\n")
    result = grader.run(program, **LIMITS)
    assert result["status"] == "ok", result["stderr"]
    assert "inside fine" in result["stdout"]  # its own directory is writable
    assert "WROTE" not in result["stdout"] and result["stdout"].count("refused") == 7
    assert not any(t.exists() for t in targets)
    assert not Path("/usr/escape").exists() and not Path("/escape").exists()
    assert_nothing_left(result["run_id"])


def test_sandbox_cannot_read_secrets(grader, shared_dir):
    token_file = shared_dir / "token"
    token_file.write_text(SECRET)
    token_file.chmod(0o644)  # readable by the grader's user outside the sandbox: the control
    program = ("import os\n"
               "found = [repr(dict(os.environ))]\n"
               f"paths = [{str(token_file)!r}, os.path.expanduser('~/.cache/huggingface/token'),\n"
               "         '/root/.cache/huggingface/token', '/proc/self/environ']\n"
               "paths += [f'/proc/{p}/environ' for p in os.listdir('/proc') if p.isdigit()]\n"
               f"paths += ['/proc/{os.getpid()}/environ', '/proc/%d/environ' % os.getppid()]\n"
               "for path in paths:\n"
               "    try:\n"
               "        found.append(open(path, 'rb').read().decode('latin-1'))\n"
               "    except OSError as e:\n"
               "        found.append('refused ' + path)\n"
               "print('\\n'.join(found))\n")
    result = grader.run(program, **LIMITS)
    assert result["status"] == "ok", result["stderr"]
    assert "refused" in result["stdout"]
    for text in (result["stdout"], result["stderr"]):
        assert SECRET not in text and "HF_TOKEN" not in text and "OPENAI_API_KEY" not in text
    assert_nothing_left(result["run_id"])


def test_sandbox_cannot_kill_other_processes(grader):
    sentinel = grader.sentinel()
    try:
        program = ("import os, signal\n"
                   "def attempt(label, action):\n"
                   "    try:\n"
                   "        action()\n"
                   "        print('sent', label)\n"
                   "    except OSError as e:\n"
                   "        print('refused', label, type(e).__name__)\n"
                   f"attempt('sentinel', lambda: os.kill({sentinel.pid}, 9))\n"
                   f"attempt('sentinel group', lambda: os.killpg({sentinel.pid}, 9))\n"
                   f"attempt('test process', lambda: os.kill({os.getpid()}, 9))\n"
                   "attempt('parent', lambda: os.kill(os.getppid(), 9))\n"
                   "attempt('everyone', lambda: os.kill(-1, 9))\n"
                   "print('still here', flush=True)\n"
                   "os.killpg(0, 9)\n")
        result = grader.run(program, **LIMITS)
        assert "still here" in result["stdout"]  # kill(-1, 9) spares the caller; the namespace held no one else
        assert "sent sentinel" not in result["stdout"] and "sent test process" not in result["stdout"]
        assert sentinel.poll() is None  # the host process of the same user survived kill(-1, 9)
        assert_nothing_left(result["run_id"])
    finally:
        stop(sentinel)


def test_sandbox_setsid_orphans_die_with_the_run(grader, shared_dir):
    """The old escape: a setsid child outlives the run and rewrites things later. Here it dies with the run."""
    marker = "cotforge-orphan-" + uuid.uuid4().hex
    late = shared_dir / "late-write"
    child = f"import time\ntime.sleep(2)\nopen({str(late)!r}, 'w').write('late')\ntime.sleep(60)\n"
    program = ("import os, sys\n"
               "if os.fork() == 0:\n"
               "    os.setsid()\n"
               "    if os.fork() == 0:\n"
               f"        os.execv(sys.executable, [sys.executable, '-c', {child!r}, {marker!r}])\n"
               "    os._exit(0)\n"
               "print('parent leaves')\n")
    result = grader.run(program, **LIMITS)
    assert result["status"] == "ok"
    assert_nothing_left(marker, result["run_id"])
    honest = grader.check("def f(x):\n    return x + 1\n", "assert f(1) == 3\n", **LIMITS)
    assert (honest["verdict"], honest["reason"]) == (False, "wrong_answer")  # the next run is judged on its own
    threading.Event().wait(2.5)
    assert not late.exists()


def test_sandbox_disk_is_capped(grader):
    program = ("written = 0\n"
               "try:\n"
               "    with open('fill.bin', 'wb') as f:\n"
               "        for _ in range(64):\n"
               "            f.write(b'x' * 2**20)\n"
               "            f.flush()\n"
               "            written += 2**20\n"
               "except OSError as e:\n"
               "    print('stopped', type(e).__name__)\n"
               "for path in ('/dev/shm/fill', '/dev/fill', '/fill'):\n"
               "    try:\n"
               "        open(path, 'wb').write(b'x')\n"
               "        print('WROTE', path)\n"
               "    except OSError as e:\n"
               "        print('refused', path)\n"
               "print('written', written)\n")
    result = grader.run(program, **LIMITS)
    assert result["status"] == "ok", result["stderr"]
    assert "stopped" in result["stdout"] and "WROTE" not in result["stdout"]
    written = int(result["stdout"].split("written ")[1])
    assert written <= LIMITS["disk_mb"] << 20  # the tmpfs is full; the rest of the machine saw none of it
    assert_nothing_left(result["run_id"])


def test_sandbox_refuses_to_run_without_isolation(monkeypatch, tmp_path, shared_dir):
    """No bwrap, or a bwrap that cannot create namespaces: nothing runs, and the verdict says why."""
    from cotforge.schemas.config_verify import SandboxConfig
    from cotforge.tasks.verify import sandbox
    from cotforge.tasks.verify.program_tests import check_program

    flag = tmp_path / "ran"
    program = f"open({str(flag)!r}, 'w').write('ran')\ndef f(x):\n    return x\n"
    limits = SandboxConfig(**LIMITS).model_dump_json()
    fake = shared_dir  # a bwrap the throw-away uid (as root) can run, that cannot create namespaces
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    for path, problem in (("/nonexistent", "bwrap not installed"), (str(fake), "No permissions")):
        monkeypatch.setenv("PATH", path)
        sandbox.isolation_problem.cache_clear()
        try:
            assert check_program(program, "assert f(1) == 1\n", limits)[:2] == (None, "no_isolation")
            run = sandbox.run_program(program, SandboxConfig(**LIMITS))
            assert run.status == "no_isolation" and problem in run.stderr
        finally:
            sandbox.isolation_problem.cache_clear()
    assert not flag.exists()


def test_sandbox_opt_out_runs_without_isolation_and_says_so(monkeypatch):
    from cotforge.schemas.config_verify import SandboxConfig
    from cotforge.tasks.verify import sandbox
    from cotforge.tasks.verify.program_tests import check_program

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # whether or not bwrap is there
    limits = SandboxConfig(**LIMITS, isolation="none")
    run = sandbox.run_program("print('plain subprocess')\n", limits)
    assert (run.status, run.isolation, run.stdout) == ("ok", "none", "plain subprocess\n")
    assert check_program("def f(x):\n    return x\n", "assert f(2) == 2\n", limits.model_dump_json())[:2] == (
        True, "tests_passed")
    assert_nothing_left(run.run_id)


@pytest.mark.slow
def test_sandbox_program_outliving_a_killed_pool_worker_is_cleaned_up():
    """The pool's hard deadline kills a worker mid-run; the sandboxed program it started dies with it."""
    from cotforge.schemas.config_verify import SandboxConfig
    from cotforge.tasks.verify.pool import VerifierPool

    require_bwrap()
    marker = "cotforge-pool-" + uuid.uuid4().hex
    patient = SandboxConfig(cpu_s=5, wall_s=60.0)  # the sandbox itself would wait a minute
    program = ("import os, sys\n"
               f"os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(120)', {marker!r}])\n")
    with VerifierPool(1, preload=()) as pool:
        results = pool.run([("cotforge.tasks.verify.program_tests:check_program",
                             (program, "assert f(1) == 1\n", patient.model_dump_json()))], 3.0)
    assert results == [(None, "timeout")]
    assert wait_until(lambda: marker_free(marker), timeout_s=10)


@pytest.mark.skipif(not IS_ROOT, reason="the fallback exists only for a verifier running as root")
def test_sandbox_as_root_without_a_python_for_the_throwaway_uid_drops_every_capability(monkeypatch):
    """Root, and no interpreter the throw-away uid can run: bwrap then runs as root, so it must drop the
    capabilities it would otherwise keep inside the namespace (checked from inside: CapEff and a mount attempt)."""
    from cotforge.schemas.config_verify import SandboxConfig
    from cotforge.tasks.verify import sandbox

    require_bwrap()
    real = sandbox._interpreter_for
    monkeypatch.setattr(sandbox, "_interpreter_for", lambda uid: None if uid is not None else real(None))
    program = ("import ctypes, os\n"
               "caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]\n"
               "libc = ctypes.CDLL(None, use_errno=True)\n"
               "remount = libc.mount(b'none', b'/usr', None, 0x20 | 0x1000, None)  # MS_REMOUNT | MS_BIND, rw\n"
               "print('caps', caps, 'remount', remount, ctypes.get_errno())\n")
    run = sandbox.run_program(program, SandboxConfig(**LIMITS))
    assert run.status == "ok" and run.user == "userns_root", run.stderr
    caps, remount = run.stdout.split()[1], run.stdout.split()[3]
    assert int(caps, 16) == 0 and remount == "-1"
    assert_nothing_left(run.run_id)


def _syscall_numbers(names) -> dict[str, int]:
    import pyseccomp

    return {name: pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) for name in names}


def test_sandbox_seccomp_refuses_tracing_memory_and_mount_calls(grader):
    """Each refused call is made for real (raw syscall numbers, so no library wrapper decides) and must fail with
    EPERM; the control, `getpid`, must succeed through the same path."""
    from cotforge.tasks.verify.syscall_filter import DENIED_SYSCALLS

    probed = ("ptrace", "process_vm_readv", "process_vm_writev", "bpf", "keyctl", "add_key", "request_key",
              "perf_event_open", "userfaultfd", "mount", "umount2", "pivot_root", "move_mount", "open_tree",
              "fsmount", "fsopen", "memfd_create", "shmget", "msgget", "io_uring_setup", "unshare", "setns",
              "pidfd_getfd")
    assert set(probed) <= set(DENIED_SYSCALLS)
    numbers = _syscall_numbers(probed + ("getpid",))
    program = ("import ctypes\n"
               "libc = ctypes.CDLL(None, use_errno=True)\n"
               "libc.syscall.restype = ctypes.c_long\n"
               f"for name, number in {numbers!r}.items():\n"
               "    ctypes.set_errno(0)\n"
               "    args = (16, 1, 0, 0) if name == 'ptrace' else (0, 0, 0, 0)  # PTRACE_ATTACH to pid 1\n"
               "    r = libc.syscall(number, *[ctypes.c_long(a) for a in args])\n"
               "    print(name, r, ctypes.get_errno())\n")
    result = grader.run(program, **LIMITS)
    assert result["status"] == "ok", result["stderr"]
    seen = {line.split()[0]: (int(line.split()[1]), int(line.split()[2])) for line in result["stdout"].splitlines()}
    assert seen.pop("getpid")[0] > 0  # the control: an allowed call goes through
    assert seen == {name: (-1, 1) for name in probed}  # every one refused with EPERM
    assert_nothing_left(result["run_id"])


def test_sandbox_pid1_is_not_traceable(grader):
    """The namespace's pid 1 holds the run together: the program can neither trace it, read or write its memory,
    nor reach its file descriptors (it is not dumpable); the run still ends normally."""
    program = ("import os\n"
               "print('pid', os.getpid(), 'parent', os.getppid())\n"
               "for path in ('/proc/1/mem', '/proc/1/maps', '/proc/1/environ', '/proc/1/fd', '/proc/1/fd/0',\n"
               "             '/proc/1/root/cotforge/job.json', '/proc/1/cwd'):\n"
               "    try:\n"
               "        fd = os.open(path, os.O_RDONLY)\n"
               "        print('OPENED', path, len(os.read(fd, 4096)) if not path.endswith(('fd', 'cwd')) else 0)\n"
               "    except OSError as e:\n"
               "        print('refused', path, e.errno)\n")
    result = grader.run(program, **LIMITS)
    assert result["status"] == "ok", result["stderr"]
    assert "pid 2 parent 1" in result["stdout"]  # the program is pid 1's child: pid 1 is the harness's init
    assert "OPENED" not in result["stdout"] and result["stdout"].count("refused") == 7
    assert_nothing_left(result["run_id"])


def test_sandbox_memfd_and_shared_memory_cannot_hold_memory_past_the_limit(grader):
    """The 880 MB memfd probe (an fd's pages are not in RLIMIT_AS), and the other ways to park memory outside the
    address space: POSIX shm in /dev/shm, System V segments, the tmpfs (capped by disk_mb). None holds more than
    the limits allow. The control: outside the sandbox the same memfd write holds the memory."""
    import ctypes

    probe_mb = 880
    program = ("import ctypes, mmap, os\n"
               "held = 0\n"
               "def fill(fd, mb):\n"
               "    global held\n"
               "    chunk = b'x' * 2**20\n"
               "    for _ in range(mb):\n"
               "        os.write(fd, chunk)\n"
               "        held += 2**20\n"
               "try:\n"
               f"    fill(os.memfd_create('probe'), {probe_mb})\n"
               "except OSError as e:\n"
               "    print('memfd refused', e.errno)\n"
               "try:\n"
               "    fill(os.open('/dev/shm/probe', os.O_CREAT | os.O_RDWR), 64)\n"
               "except OSError as e:\n"
               "    print('shm refused', e.errno)\n"
               "libc = ctypes.CDLL(None, use_errno=True)\n"
               f"segment = libc.shmget(0, {probe_mb} << 20, 0o1600)  # IPC_PRIVATE, IPC_CREAT\n"
               "print('sysv', segment, ctypes.get_errno())\n"
               "try:\n"
               "    fill(os.open('tmpfs-probe', os.O_CREAT | os.O_RDWR), 64)\n"
               "except OSError as e:\n"
               "    print('tmpfs full', e.errno)\n"
               "print('held', held)\n")
    result = grader.run(program, **LIMITS)
    assert result["status"] == "ok", result["stderr"]
    out = result["stdout"]
    assert "memfd refused 1" in out and "shm refused" in out and "sysv -1 1" in out and "tmpfs full" in out
    assert int(out.split("held ")[1]) <= LIMITS["disk_mb"] << 20  # only the capped tmpfs took any
    assert_nothing_left(result["run_id"])
    # The control, outside any sandbox: the probe's first step works here, so "refused" above is the filter's doing.
    fd = os.memfd_create("control")
    try:
        os.ftruncate(fd, 1 << 20)
        assert os.fstat(fd).st_size == 1 << 20
    finally:
        os.close(fd)
    assert ctypes.CDLL(None).getpid() == os.getpid()
