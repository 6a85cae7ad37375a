"""What the entry points make of a command line, printed as JSON: run by the unit tests in a
subprocess, because importing pyinfra's CLI monkey-patches the interpreter (gevent), which
the other unit tests in the same process must not inherit.

    python read_command_line.py data ARGS...   each entry point's @local host data
    python read_command_line.py commands       stdin: a JSON list of pyinfra argv lists;
                                               prints for each what plumbing.cli reads
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import drift
import rollout
from plumbing import cli, summary


def entry_point_data(argv: list[str]) -> dict[str, dict]:
    command = cli.pyinfra_command(["-y", "@local", "deploy.py", *argv])
    assert command is not None
    states = {
        "drift.py": drift.load_state(drift.parse_args(["@local", *argv])),
        "rollout.py": rollout.load_state(rollout.parse_args(["@local", *argv])),
        "summary": summary.load_state(command),
    }
    return {name: next(iter(state.inventory)).data.dict() for name, state in states.items()}


def commands(argvs: list[list[str]]) -> list[dict | None]:
    read = [cli.pyinfra_command(argv) for argv in argvs]
    return [asdict(command) if command else None for command in read]


if __name__ == "__main__":
    if sys.argv[1] == "data":
        print(json.dumps(entry_point_data(sys.argv[2:])))
    else:
        print(json.dumps(commands(json.load(sys.stdin))))
