"""Graders for the sandbox tests: the verifier as its own process, run as root and as an unprivileged user.

As root, the unprivileged grader runs as the account `cotforge-test` (created here when missing, like a CI machine's
test setup would), with a Python it can execute and the repository on its path. Off root, the current user is the
unprivileged grader and the root grader is skipped. Without bwrap the tests skip, except under CI=true, where the
setup (scripts/install_services.sh) should have installed it: there they fail.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cotforge.tasks.verify.sandbox import marked_processes

ROOT = Path(__file__).resolve().parents[1]
TEST_USER = "cotforge-test"
IS_ROOT = os.geteuid() == 0
SECRET = "hf_" + "S3cr3tT0kenValue" * 2
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip, or fail under CI=true where the test setup should have provided what is missing."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: scripts/install_services.sh should have set this up)")
    pytest.skip(reason)


def require_bwrap() -> None:
    if shutil.which("bwrap") is None:
        missing("bwrap not installed (Debian package bubblewrap: scripts/install_services.sh)")


@dataclass
class Grader:
    """Runs tests/sandbox_runner.py as `uid` (None: as the current user)."""

    name: str
    python: str
    uid: int | None
    gid: int | None

    def _preexec(self):
        if self.uid is None:
            return None
        uid, gid = self.uid, self.gid

        def drop() -> None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        return drop

    def environment(self) -> dict[str, str]:
        # The repository and this interpreter's installed packages (not its standard library: the grader's Python
        # brings its own).
        packages = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
        paths = [str(ROOT), *dict.fromkeys(packages + site.getsitepackages())]
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.pathsep.join(paths),
                "HOME": pwd.getpwuid(self.uid).pw_dir if self.uid is not None else os.environ.get("HOME", "/"),
                "HF_TOKEN": SECRET, "OPENAI_API_KEY": SECRET, "LANG": "C.UTF-8"}

    def call(self, request: dict, timeout: float = 180) -> dict:
        """One request; asserts the grader process survived (exit 0 with its answer)."""
        done = subprocess.run([self.python, "-m", "tests.sandbox_runner"], input=json.dumps(request), text=True,
                              capture_output=True, env=self.environment(), cwd=ROOT, timeout=timeout,
                              preexec_fn=self._preexec())
        assert done.returncode == 0, f"the {self.name} grader died: rc={done.returncode}\n{done.stderr[-3000:]}"
        answer = json.loads(done.stdout)
        assert answer["grader_uid"] == (self.uid if self.uid is not None else os.geteuid())
        return answer

    def run(self, source: str, **limits) -> dict:
        return self.call({"op": "run", "source": source, "limits": limits})

    def check(self, code: str, tests: str, **limits) -> dict:
        return self.call({"op": "check", "code": code, "tests": tests, "limits": limits})

    def gym(self, task: str, config: dict, entry: dict, answers: list[str], guard: bool = True, **limits) -> list:
        """(score, why) for each answer, scored one after the other by this grader's one scorer sandbox."""
        return self.call({"op": "gym", "task": task, "config": config, "entry": entry, "answers": answers,
                          "guard": guard, "limits": limits})["outcomes"]

    def sentinel(self) -> subprocess.Popen:
        """A process of the grader's own user, started before the program runs: kill(-1) would reach it."""
        return subprocess.Popen(["sleep", "600"], preexec_fn=self._preexec(), start_new_session=True)

    def can_write(self, path: Path) -> bool:
        """Whether this grader's user can create `path` outside any sandbox (the control for the escape tests)."""
        probe = subprocess.run(["sh", "-c", 'touch "$1" && rm -f "$1"', "sh", str(path)], preexec_fn=self._preexec(),
                               capture_output=True)
        return probe.returncode == 0


def _test_user() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                        "/usr/sbin/nologin", TEST_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(TEST_USER)
    return entry.pw_uid, entry.pw_gid


def _python_for(uid: int, gid: int) -> str | None:
    """A Python the user can run that imports the repository's sandbox (the repository's env on its path)."""
    grader = Grader("probe", "", uid, gid)
    for python in dict.fromkeys([sys.executable, os.path.realpath(sys.executable), "/usr/bin/python3",
                                 "/usr/local/bin/python3"]):
        try:
            done = subprocess.run([python, "-c", "import cotforge.tasks.verify.program_tests"], cwd=ROOT,
                                  env=grader.environment(), preexec_fn=grader._preexec(), capture_output=True,
                                  timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return python
    return None


def make_grader(kind: str) -> Grader:
    require_bwrap()
    if kind == "root":
        if not IS_ROOT:
            pytest.skip("not running as root: the root grader is covered where the tests run as root")
        return Grader("root", sys.executable, None, None)
    if not IS_ROOT:
        return Grader("unprivileged", sys.executable, None, None)
    uid, gid = _test_user()
    python = _python_for(uid, gid)
    if python is None:
        missing(f"no Python that {TEST_USER} can run with this repository's environment")
    return Grader("unprivileged", python, uid, gid)


@pytest.fixture(scope="module", params=["root", "unprivileged"])
def grader(request) -> Grader:
    """The fixture of the sandbox tests: each test runs with the root grader and the unprivileged one."""
    return make_grader(request.param)


@pytest.fixture
def shared_dir():
    """A host directory every user can write to (like /tmp): escapes would land here."""
    path = Path(tempfile.mkdtemp(prefix="cotforge-sandbox-test-"))
    path.chmod(0o777)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def wait_until(condition, timeout_s: float = 10.0, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


def assert_nothing_left(*markers: str) -> None:
    """No live process carries any of the markers (each run's id is in every one of its processes' argv)."""
    for marker in markers:
        assert marker and marker_free(marker), f"processes carrying {marker!r} are still running"


def marker_free(marker: str) -> bool:
    return not marked_processes(marker)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
