"""The code sandbox against hostile programs: each is contained and reported, and this machine survives.

Every test runs one hostile program through `run_program` with tight limits. The fork bomb is safe to run: the
process limit (RLIMIT_NPROC on a throw-away uid when root, on the user's count otherwise) is set in the child before
the program starts, and CPU limits bound each forked process.
"""

import os
import socket
import threading

import pytest

from cotforge.schemas.config_verify import SandboxConfig
from cotforge.tasks.verify.sandbox import (
    _sandbox_uid,
    _user_process_count,
    check_program,
    network_namespace_available,
    run_program,
)

LIMITS = SandboxConfig(cpu_s=1, wall_s=4.0, memory_mb=256, max_processes=8, max_output_bytes=10_000)
IS_ROOT = os.geteuid() == 0


def _no_sandbox_processes_left():
    uid = _sandbox_uid()
    return uid is None or _user_process_count(uid) == 0


def test_sandbox_runs_a_correct_program_and_its_tests():
    assert check_program("def add(a, b):\n    return a + b\n", "assert add(2, 3) == 5\n",
                         LIMITS.model_dump_json()) == (True, "tests_passed")
    assert check_program("def add(a, b):\n    return a - b\n", "assert add(2, 3) == 5\n",
                         LIMITS.model_dump_json()) == (False, "tests_failed")
    assert check_program("def add(a, b) return", "", LIMITS.model_dump_json()) == (False, "syntax_error")


@pytest.mark.slow
def test_sandbox_infinite_loop_hits_the_cpu_limit():
    result = run_program("while True:\n    pass\n", LIMITS)
    # Under CPU contention from other processes the wall clock may run out before the CPU seconds do.
    assert result.status in ("cpu_limit", "timeout")
    assert result.wall_s < LIMITS.wall_s + 3
    assert _no_sandbox_processes_left()


@pytest.mark.slow
def test_sandbox_sleeping_loop_hits_the_wall_clock_limit():
    result = run_program("import time\nwhile True:\n    time.sleep(0.5)\n", SandboxConfig(cpu_s=5, wall_s=1.5))
    assert result.status == "timeout"
    assert 1.5 <= result.wall_s < 5
    assert _no_sandbox_processes_left()


@pytest.mark.slow
def test_sandbox_fork_bomb_is_stopped_by_the_process_limit():
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
    result = run_program(bomb, LIMITS)
    assert result.status in ("timeout", "process_limit", "cpu_limit")
    assert "fork refused" in result.stdout  # the limit, not luck, stopped it
    assert _no_sandbox_processes_left()  # escaped children (setsid) were killed too


def test_sandbox_huge_output_is_capped():
    result = run_program("while True:\n    print('x' * 1000)\n", LIMITS)
    assert result.status == "output_limit"
    assert len(result.stdout) <= LIMITS.max_output_bytes


def test_sandbox_memory_hog_is_refused():
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 2**20))\n"
    result = run_program(hog, LIMITS)
    assert result.status == "memory_limit"
    assert "MemoryError" in result.stderr


@pytest.fixture
def listener():
    """A real TCP server on 127.0.0.1 that records whether anything connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            got.append(conn.recv(100))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], got
    stop.set()
    thread.join(2)
    server.close()


NETWORK_PROGRAM = ("import socket\n"
                   "s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                   "s.sendall(b'leaked')\n"
                   "print('connected')\n")


@pytest.mark.parametrize("network", ["auto", "audit"])
def test_sandbox_network_access_is_blocked(listener, network):
    port, got = listener
    result = run_program(NETWORK_PROGRAM.format(port=port), LIMITS.model_copy(update={"network": network}))
    if network == "audit" or not network_namespace_available():
        assert result.network == "audit_hook"
    else:
        assert result.network == "namespace+audit_hook"
    assert result.status == "blocked"
    assert "socket" in result.stderr and "connected" not in result.stdout
    assert got == []
    # The same program outside the sandbox does reach the server: the test can see a leak.
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"control")
    for _ in range(50):
        if got:
            break
        threading.Event().wait(0.05)
    assert got == [b"control"]


@pytest.mark.skipif(not network_namespace_available(), reason="network namespaces need root/CAP_SYS_ADMIN")
def test_sandbox_network_namespace_holds_without_the_audit_hook(listener):
    port, got = listener
    result = run_program(NETWORK_PROGRAM.format(port=port), LIMITS, audit_hook=False)
    assert result.network == "namespace+audit_hook"
    assert result.status == "error" and "connected" not in result.stdout
    assert "Network is unreachable" in result.stderr or "Connection refused" in result.stderr
    assert got == []


def test_sandbox_writing_outside_its_directory_is_blocked(tmp_path):
    world_writable = tmp_path / "shared"
    world_writable.mkdir()
    world_writable.chmod(0o777)
    tmp_path.chmod(0o755)
    targets = [tmp_path / "escape.txt", world_writable / "escape.txt"]
    keep = world_writable / "keep.txt"
    keep.write_text("precious")
    keep.chmod(0o666)
    program = ("import os\n"
               "open('inside.txt', 'w').write('fine')\n"  # its own directory is writable
               "assert open('inside.txt').read() == 'fine'\n"
               "errors = 0\n"
               f"for path in {[str(t) for t in targets]!r}:\n"
               "    try:\n"
               "        open(path, 'w').write('escaped')\n"
               "    except PermissionError as e:\n"
               "        errors += 1\n"
               "        print('refused', e)\n"
               f"for op in (lambda: os.remove({str(keep)!r}), lambda: os.rename({str(keep)!r}, 'stolen.txt')):\n"
               "    try:\n"
               "        op()\n"
               "    except PermissionError:\n"
               "        errors += 1\n"
               "print('refused', errors)\n")
    result = run_program(program, LIMITS)
    assert result.status == "ok", result.stderr
    assert "refused 4" in result.stdout
    assert not any(t.exists() for t in targets)
    assert keep.read_text() == "precious"


@pytest.mark.skipif(not IS_ROOT, reason="the throw-away uid layer exists only when the verifier runs as root")
def test_sandbox_uid_keeps_files_out_without_the_audit_hook(tmp_path):
    target = tmp_path / "private" / "escape.txt"
    target.parent.mkdir()
    target.parent.chmod(0o700)  # owned by root, like the verifier's own files
    result = run_program(f"open({str(target)!r}, 'w').write('escaped')\n", LIMITS, audit_hook=False)
    assert result.status == "error" and "PermissionError" in result.stderr
    assert not target.exists()


def test_sandbox_cannot_read_environment_secrets(monkeypatch):
    secret = "hf_" + "S3cr3tT0kenValue" * 2
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    program = ("import os\n"
               "print(dict(os.environ))\n"
               "for pid in (os.getppid(), 1):\n"
               "    try:\n"
               "        print(open(f'/proc/{pid}/environ', 'rb').read())\n"
               "    except OSError as e:\n"
               "        print('refused', type(e).__name__)\n")
    for audit_hook in (True, False) if IS_ROOT else (True,):
        result = run_program(program, LIMITS, audit_hook=audit_hook)
        assert result.status == "ok", result.stderr
        assert secret not in result.stdout and secret not in result.stderr
        assert "HF_TOKEN" not in result.stdout
        assert result.stdout.count("refused") == 2


def test_sandbox_leaves_no_working_directory_behind():
    program = "import os\nprint(os.getcwd())\nopen('scratch.bin', 'wb').write(b'x' * 100)\n"
    result = run_program(program, LIMITS)
    workdir = result.stdout.strip()
    assert result.status == "ok" and workdir.startswith(("/tmp", os.environ.get("TMPDIR", "/tmp")))
    assert not os.path.exists(workdir)


@pytest.mark.slow
def test_sandbox_program_outliving_a_killed_pool_worker_is_cleaned_up():
    """The pool's hard deadline kills a worker mid-run; the sandboxed program it started is killed too."""
    import glob
    import tempfile

    from cotforge.tasks.verify.pool import VerifierPool

    patient = SandboxConfig(cpu_s=5, wall_s=60.0)  # the sandbox itself would wait a minute
    with VerifierPool(1, preload=()) as pool:
        # Start the worker first, so its pid (and its sandbox uid) is known before the item runs.
        pool.run([("tests.test_sandbox:worker_pid", ())], 60.0)
        pid = pool._workers[0].process.pid
        results = pool.run([("cotforge.tasks.verify.sandbox:check_program", ("import time\ntime.sleep(120)\n", "",
                                                             patient.model_dump_json()))], 3.0)
    assert results == [(None, "timeout")]
    uid = _sandbox_uid(pid)
    assert uid is None or _user_process_count(uid) == 0
    assert glob.glob(f"{tempfile.gettempdir()}/cotforge-sandbox-{pid}-*") == []


def worker_pid():
    return True, str(os.getpid())
