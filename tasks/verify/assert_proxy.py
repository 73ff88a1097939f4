"""Assert mode of the code sandbox's harness (stdlib only; runs inside the sandbox, loaded by harness.py from the job
directory, never imported by the verifier).

The test code runs in the harness's process and the candidate in a process forked from it before the test's cases
and nonce arrive on stdin; the test calls the candidate through `CandidateProxy`: plain values (the repr of builtins)
over a pipe, one JSON line per call. Patching names, builtins or `json`, walking frames or hunting with `gc` in the
candidate's process reaches nothing of the test, and the test process is not dumpable (its memory and fds are out of
the candidate's reach although both run as the same uid).
"""

import builtins
import json
import os

import __main__ as harness  # the running harness.py: its plain-data helpers, bound before any candidate loaded

_MAX_LINE = 1 << 22  # one message between the test process and the candidate's


def serve_candidate(job_dir, requests, replies):
    """The candidate's process (forked before the test's cases or nonce exist anywhere in the sandbox): holds no fd
    but its two pipes and the output streams, loads the candidate, names what it defined, then answers calls. Every
    value crossing the pipes is the repr of plain builtins; whatever this process says is untrusted by the test."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd > 2 and fd not in (requests, replies):
            try:
                os.close(fd)
            except OSError:
                pass
    import ast

    literal = ast.literal_eval

    def send(message):
        harness._write(replies, (harness._dumps(message) + "\n").encode())

    namespace = harness.load_candidate(job_dir, lambda message: send(message) or harness._exit(1))
    names = {}
    for name, value in list(namespace.items()):
        if not name.startswith("__"):
            if callable(value):
                names[name] = "callable"
            else:
                try:
                    names[name] = {"value": harness.plain_repr(value)}
                except (TypeError, ValueError, RecursionError):
                    pass
    send({"load": "ok", "names": names})
    reader = os.fdopen(requests, "rb")
    while True:
        harness.reset_hooks()
        line = reader.readline(_MAX_LINE)
        if not line:
            harness._exit(0)
        try:
            call = json.loads(line)
            args = [literal(a) for a in call["args"]]
            kwargs = {k: literal(v) for k, v in call["kwargs"].items()}
            reply = {"value": harness.plain_repr(namespace[call["name"]](*args, **kwargs))}
        except BaseException as error:
            reply = {"error": harness._type(error).__name__}
        harness.reset_hooks()
        send(reply)


class CandidateProxy:
    """A name the candidate defined, as the test process sees it: calling it sends plain values to the candidate's
    process and returns a plain copy of what came back (or raises the builtin exception it named)."""

    def __init__(self, channel, name):
        self._channel, self._name = channel, name

    def __call__(self, *args, **kwargs):
        return self._channel.call(self._name, args, kwargs)

    def __repr__(self):
        return f"<candidate {self._name}>"


class CandidateChannel:
    def __init__(self, requests, replies):
        self.requests, self.reader = requests, os.fdopen(replies, "rb")

    def receive(self):
        line = self.reader.readline(_MAX_LINE)
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if harness._type(message) is not dict:
            raise RuntimeError("the candidate's process sent no answer")
        return message

    def call(self, name, args, kwargs):
        request = {"name": name, "args": [harness.plain_repr(a) for a in args],
                   "kwargs": {str(k): harness.plain_repr(v) for k, v in kwargs.items()}}
        harness._write(self.requests, (harness._dumps(request) + "\n").encode())
        reply = self.receive()
        if "value" in reply and harness._type(reply["value"]) is str:
            return harness._literal_eval(reply["value"])
        error = getattr(builtins, str(reply.get("error")), None)
        if isinstance(error, type) and issubclass(error, Exception):
            raise error(f"raised by the candidate: {reply['error']}")
        raise RuntimeError(f"the candidate's process failed: {str(reply.get('error'))[:60]}")


def run_asserts(job, job_dir, result_fd, emit):
    """Assert mode: the test code runs in this process, the candidate in a forked process of its own, called
    through `CandidateProxy` (plain values only, over a pipe). The test's cases and nonce arrive on stdin once the
    candidate is loaded; they, and the expected values in them, never exist in the candidate's process."""
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    if os.fork() == 0:
        os.close(requests_w)
        os.close(replies_r)
        serve_candidate(job_dir, requests_r, replies_w)
    os.close(requests_r)
    os.close(replies_w)
    channel = CandidateChannel(requests_w, replies_r)
    try:
        loaded = channel.receive()
    except RuntimeError:
        loaded = {"load": "error", "error": "NoAnswer"}
    if loaded.get("load") != "ok" or harness._type(loaded.get("names")) is not dict:
        emit({"load": "error", "error": str(loaded.get("error"))[:60]})
        harness.finish(1)
    namespace = {"__name__": "__cotforge_test__", "__builtins__": builtins}
    for name, kind in loaded["names"].items():
        if harness._type(name) is not str or not name.isidentifier() or name.startswith("__"):
            continue
        if kind == "callable":
            namespace[name] = CandidateProxy(channel, name)
        elif harness._type(kind) is dict and harness._type(kind.get("value")) is str:
            try:
                namespace[name] = harness._literal_eval(kind["value"])
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                pass
    namespace["__cotforge_compare__"], namespace["__cotforge_truth__"] = harness.compare, harness.truth
    try:
        exec(compile(job.get("setup", ""), "<test setup>", "exec"), namespace)
    except BaseException as error:
        emit({"setup": "error", "error": harness._type(error).__name__})
        harness.finish(1)
    cases, nonce = harness.receive_late(emit)
    for i, case in enumerate(cases):
        try:
            exec(compile(case, f"<test {i}>", "exec"), namespace)
            emit({"i": i, "passed": True, "nonce": nonce})
        except BaseException as error:
            emit({"i": i, "error": harness._type(error).__name__})
    harness.finish(0)
