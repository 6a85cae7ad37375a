"""Every operation against recorded facts, as pyinfra's own operation tests do.

Each JSON under tests/fixtures/operations/<module>.<operation>/ gives the
operation's arguments, the facts the host reports (by fact name), and the
commands the operation must yield, or the no-op message when there is
nothing to do. A converged case with no commands exists for every operation.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.context import ctx_host

from declaration import resources

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "operations"
CASES = sorted(FIXTURES.glob("*/*.json"))


class RecordedHost:
    """Stands in for pyinfra's host: answers facts from the fixture, records no-ops."""

    name = "fixture-host"

    def __init__(self, facts: dict[str, Any]):
        self.facts = facts
        self.noops: list[str] = []

    def get_fact(self, fact_cls: type, *args: Any, **kwargs: Any) -> Any:
        module = fact_cls.__module__.removeprefix("pyinfra.facts.").removeprefix("facts.")
        key = f"{module}.{fact_cls.__name__}"
        if key not in self.facts:
            raise AssertionError(f"the operation read {key}, which the fixture does not give")
        return self.facts[key]

    def noop(self, description: str) -> None:
        self.noops.append(description)


def describe(command: Any) -> str:
    """A command as text; an upload shows its local file's name, or the content it sends."""
    if isinstance(command, FileUploadCommand):
        if isinstance(command.src, str):
            return f"upload {Path(command.src).name} to {command.dest}"
        return f"upload to {command.dest}:\n{command.src.getvalue()}"
    if isinstance(command, FunctionCommand):
        arguments = ", ".join(repr(argument) for argument in command.args)
        return f"on the control machine: {command.function.__name__}({arguments})"
    assert isinstance(command, (str, StringCommand)), command
    return str(command)


def operation_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """The fixture's arguments; declared resources are written as dicts with their ``kind``."""
    if "resources" not in args:
        return args
    return {
        **args,
        "resources": tuple(
            getattr(resources, item["kind"])(**{k: v for k, v in item.items() if k != "kind"})
            for item in args["resources"]
        ),
    }


def run_operation(case: Path) -> tuple[list[str], list[str], RecordedHost]:
    fixture = json.loads(case.read_text())
    module, name = case.parent.name.rsplit(".", 1)
    operation = getattr(importlib.import_module(f"operations.{module}"), name)
    host = RecordedHost(fixture["facts"])
    with ctx_host.use(host):
        arguments = operation_arguments(fixture["args"])
        commands = [describe(c) for c in operation.__wrapped__(**arguments)]
    return commands, host.noops, host


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_operation_yields_the_recorded_commands(case: Path):
    fixture = json.loads(case.read_text())
    commands, noops, _ = run_operation(case)
    assert commands == fixture["commands"]
    if not fixture["commands"]:
        assert noops == [fixture["noop_description"]]


def _all_operations(idempotent_only: bool = False) -> set[str]:
    """Every @operation in operations/, found by import (or only the idempotent ones)."""
    import pkgutil

    import operations

    names = set()
    for module in pkgutil.iter_modules(operations.__path__):
        loaded = importlib.import_module(f"operations.{module.name}")
        for name, attribute in vars(loaded).items():
            if (
                callable(attribute)
                and hasattr(attribute, "is_idempotent")
                and getattr(attribute, "__module__", "") == loaded.__name__
                and (attribute.is_idempotent or not idempotent_only)
            ):
                names.add(f"{module.name}.{name}")
    return names


def test_every_operation_has_cases_and_every_idempotent_one_a_converged_case():
    converged = {
        case.parent.name for case in CASES if json.loads(case.read_text())["commands"] == []
    }
    assert {case.parent.name for case in CASES} == _all_operations()
    # Actions (backup, persistence proof) always do something: no converged case.
    assert converged == _all_operations(idempotent_only=True)
