"""The grader as a process of its own, for the sandbox tests: reads one request (JSON) on stdin, answers on stdout.

    python -m tests.sandbox_runner < request.json

Request: {"op": "run", "source": ..., "limits": {...}} (tasks/verify/sandbox.py: run_program), {"op": "check",
"code": ..., "tests": ..., "limits": {...}} (tasks/verify/program_tests.py: check_program), or {"op": "gym", "task",
"config", "entry", "answers": [...], "guard": bool} (tasks/verify/gym_sandbox.py: score_in_sandbox, one answer after
the other in this process's one scorer sandbox). The tests start it as
root or as an unprivileged user; exiting 0 with its answer is how they see that the grader survived the program.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from cotforge.schemas.config_verify import SandboxConfig
from cotforge.tasks.verify.program_tests import check_program
from cotforge.tasks.verify.sandbox import run_program


def main() -> None:
    request = json.loads(sys.stdin.read())
    limits = SandboxConfig.model_validate(request.get("limits", {}))
    if request["op"] == "run":
        answer = dataclasses.asdict(run_program(request["source"], limits))
    elif request["op"] == "gym":
        from cotforge.tasks.verify.gym_sandbox import score_in_sandbox

        config, entry = json.dumps(request["config"]), json.dumps(request["entry"])
        answer = {"outcomes": [score_in_sandbox(request["task"], config, entry, (text,), limits, request["guard"])[0]
                               for text in request["answers"]]}
    else:
        verdict, reason, details = check_program(request["code"], request["tests"], limits.model_dump_json())
        answer = {"verdict": verdict, "reason": reason, **details}
    answer |= {"grader_pid": os.getpid(), "grader_uid": os.geteuid()}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
