"""Run a fact's own command on this machine the way pyinfra does, and read it with the fact."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any

from pyinfra.api import FactBase


@dataclass
class FactRun:
    returncode: int
    lines: list[str]
    value: Any


def run_fact(
    fact_cls: type[FactBase[Any]], env: dict[str, str] | None = None, **kwargs: Any
) -> FactRun:
    """``sh -c`` the command (pyinfra's default shell); lines split at "\\n" only, as pyinfra."""
    fact = fact_cls()
    command = str(fact.command(**kwargs))
    completed = subprocess.run(
        ["sh", "-c", command], capture_output=True, timeout=120, env=env, check=False
    )
    text = completed.stdout.decode()
    lines = text.split("\n") if text else []
    if text.endswith("\n"):
        lines.pop()
    # pyinfra gives default() without calling process() when nothing was printed.
    value = fact.process(lines) if lines else fact_cls.default()
    return FactRun(completed.returncode, lines, value)
