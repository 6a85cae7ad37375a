"""Every operation against recorded facts, as pyinfra's own operation tests do.

Each JSON under tests/fixtures/operations/<module>.<operation>/ gives the
operation's arguments, the facts the host reports, and the commands the
operation must yield, or the no-op message when there is nothing to do. A
converged case with no commands exists for every operation.

Facts are keyed by name and then by the arguments the operation asks with,
written as pyinfra writes them (``get_kwargs_str``), as in pyinfra's own
fixtures: ``"facts": {"files.File": {"path=/x": ...}}``. A fact asked without
arguments holds its value directly. An operation that asks about another path
than the recorded one fails its case, and so does a case that records a fact
the operation never asks for.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from pyinfra.api import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.api.util import get_kwargs_str
from pyinfra.context import ctx_host
from pyinfra.operations.util import files as files_util

from declaration import acme, offsite, resources, schedule, targets
from plumbing.host_tools import TOOL_FILES, TOOLS_DIR

PROGRAM_DIR = acme.PROGRAM_PATH.rsplit("/", 1)[0]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "operations"
CASES = sorted(FIXTURES.glob("*/*.json"))


def fact_name(fact_cls: type) -> str:
    """``<module>.<Fact>``, as the fixtures name a fact (pyinfra's own and ours)."""
    module = fact_cls.__module__.removeprefix("pyinfra.facts.").removeprefix("facts.")
    return f"{module}.{fact_cls.__name__}"


class RecordedHost:
    """Stands in for pyinfra's host: answers facts from the fixture, records no-ops.

    ``asked`` lists every fact the operation asked for, in order, as
    ``(name, arguments)``; ``arguments`` is None for a fact asked without any.
    """

    name = "fixture-host"

    def __init__(self, facts: dict[str, Any]):
        self.facts = facts
        self.noops: list[str] = []
        self.asked: list[tuple[str, str | None]] = []

    def get_fact(self, fact_cls: type, *args: Any, **kwargs: Any) -> Any:
        assert not args, f"{fact_cls.__name__}: give fact arguments by name, as pyinfra keys them"
        name = fact_name(fact_cls)
        if name not in self.facts:
            raise KeyError(f"the operation read {name}, which the fixture does not give")
        if not kwargs:
            self.asked.append((name, None))
            return self.facts[name]
        arguments = get_kwargs_str(kwargs)
        recorded = self.facts[name]
        if not isinstance(recorded, dict) or arguments not in recorded:
            given = sorted(recorded) if isinstance(recorded, dict) else "no arguments"
            raise KeyError(
                f"the operation read {name} with {arguments!r}; the fixture gives it for {given}"
            )
        self.asked.append((name, arguments))
        return recorded[arguments]

    def unasked(self) -> list[str]:
        """Facts the fixture records that the operation never asked for."""
        left = []
        for name, recorded in self.facts.items():
            if (name, None) in self.asked:
                continue  # asked without arguments: the whole value was the answer
            if not isinstance(recorded, dict) or not recorded:
                left.append(name)
                continue
            left += [f"{name} with {arguments!r}" for arguments in recorded
                     if (name, arguments) not in self.asked]  # fmt: skip
        return left

    def noop(self, description: str) -> None:
        self.noops.append(description)

    def get_temp_filename(self, *args: Any, **kwargs: Any) -> str:
        return "/tmp/pyinfra-fixture"  # pyinfra's crontab operation edits a copy


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


# The typed values operations take, as a fixture names them in ``kind``.
KINDS = {
    kind.__name__: kind
    for kind in (resources.Directory, resources.File, resources.ComposeFile,
                 targets.StackTarget, targets.DataTarget, targets.HealthCheck, targets.CheckServer,
                 schedule.BackupSchedule, offsite.OffsiteTarget, acme.AcmeTarget)
}  # fmt: skip


def typed(value: Any) -> Any:
    """A JSON value as the operation takes it: an object with a ``kind`` is that typed value.

    Its lists become tuples (the frozen values hold tuples); a list of typed values is a
    tuple too (``resources``), and a typed value inside one is built too (an
    OffsiteTarget's dir and files). Anything else stays as JSON gives it.
    """
    if isinstance(value, dict) and "kind" in value:
        fields = {k: _field(v) for k, v in value.items() if k != "kind"}
        return KINDS[value["kind"]](**fields)
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, dict) and "kind" in v for v in value)
    ):
        return tuple(typed(item) for item in value)
    return value


def _field(value: Any) -> Any:
    """One field of a typed value: typed itself, else a list as a tuple."""
    built = typed(value)
    if built is not value:
        return built
    return tuple(value) if isinstance(value, list) else value


def operation_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """The fixture's arguments, with its typed values built (:func:`typed`)."""
    return {key: typed(value) for key, value in args.items()}


def run_operation(case: Path, **changed: Any) -> tuple[list[str], list[str], RecordedHost]:
    """The case's operation on its recorded facts (with ``changed`` arguments, if any)."""
    fixture = json.loads(case.read_text())
    module, name = case.parent.name.rsplit(".", 1)
    operation = getattr(importlib.import_module(f"operations.{module}"), name)
    host = RecordedHost(fixture["facts"])
    arguments = operation_arguments({**fixture["args"], **changed})
    # pyinfra's sed edits (its crontab operation) name their backup file by the time.
    with ctx_host.use(host), patch(f"{files_util.__name__}.get_timestamp", lambda: "TIMESTAMP"):
        commands = [describe(c) for c in operation.__wrapped__(**arguments)]
    return commands, host.noops, host


# CHROMA_DEPLOY_REWRITE_FIXTURES=1 .venv/bin/pytest tests/unit/test_operation_fixtures.py
# records the commands each case yields now (after a change of an operation's commands, or of
# files/chroma_safety.py or chroma_inventory.py, whose hash names the tools dir): read the diff.
REWRITE = os.environ.get("CHROMA_DEPLOY_REWRITE_FIXTURES") == "1"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_operation_yields_the_recorded_commands(case: Path):
    if REWRITE:
        # The tools dir is also a fact's argument (facts.chroma.ChromaInventory's tools_dir).
        text = re.sub(r"/usr/local/lib/chroma-deploy/[0-9a-f]{12}", TOOLS_DIR, case.read_text())
        # files/chroma-acme.sh's dir is named by its own content (declaration/acme.py).
        text = re.sub(r"/usr/local/lib/chroma-deploy/acme-[0-9a-f]{12}", PROGRAM_DIR, text)
        # And the list of the tools (facts.cron.Cron's tools), which grows with TOOL_FILES.
        tools = repr([f"{TOOLS_DIR}/{name}" for name in TOOL_FILES])
        case.write_text(re.sub(r"tools=\[[^\]]*\]", lambda _: f"tools={tools}", text))
    fixture = json.loads(case.read_text())
    commands, noops, host = run_operation(case)
    if REWRITE and commands != fixture["commands"]:
        fixture["commands"] = commands
        case.write_text(json.dumps(fixture, indent=2, sort_keys=True) + "\n")
    assert commands == fixture["commands"]
    if not fixture["commands"]:
        assert noops == [fixture["noop_description"]]
    assert host.unasked() == [], "recorded, never asked for: update the case"


def test_an_operation_that_asks_about_another_path_fails_its_case():
    """Recorded facts answer only for the arguments they were recorded with."""
    case = FIXTURES / "project.gitignore" / "converged.json"
    with pytest.raises(KeyError) as error:
        run_operation(case, project_dir="/tmp/fx/elsewhere")
    assert "project.ProjectFiles with 'project_dir=/tmp/fx/elsewhere'" in str(error.value)
    assert "the fixture gives it for ['project_dir=/tmp/fx/stack']" in str(error.value)


def test_a_case_that_records_a_fact_never_asked_for_fails(tmp_path: Path):
    """A recorded answer the operation does not read is a stale case, not a passing one."""
    case = FIXTURES / "project.gitignore" / "converged.json"
    fixture = json.loads(case.read_text())
    fixture["facts"]["project.ProjectFiles"]["project_dir=/tmp/fx/other"] = None
    fixture["facts"]["files.File"] = {"path=/tmp/fx/stack/.gitignore": None}
    stale = tmp_path / "project.gitignore" / "stale.json"
    stale.parent.mkdir()
    stale.write_text(json.dumps(fixture))
    _, _, host = run_operation(stale)
    assert host.unasked() == [
        "project.ProjectFiles with 'project_dir=/tmp/fx/other'",
        "files.File with 'path=/tmp/fx/stack/.gitignore'",
    ]


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
