"""Several facts read in one command: one round trip for a host's whole state.

Every fact costs a round trip (over SSH: a channel, a shell, its start-up), and a
no-op run reads about ten of them. ``Batch`` runs their commands one after the
other in a single shell, each in a subshell of its own (an ``exit`` in one ends
only that one), and hands each fact its own output, exactly as if it had been
read alone. A fact whose command failed, or whose output it could not read, is
reported as not read: the caller reads it again on its own, and pyinfra's usual
error handling applies to it.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase, StringCommand
from pyinfra.api.exceptions import FactProcessError

from facts._shell import parse_error

# Distinct from the "@@name" markers the facts print themselves.
PART = "@@batch-part "
STATUS = "@@batch-status "


class Batch(FactBase[list[dict[str, Any]]]):
    """``[{"read": bool, "value": ...}, ...]``, one per part, in order.

    ``parts`` is a list of ``(fact class, keyword arguments)``. ``read`` False:
    that part failed or could not be processed; read it alone.
    """

    @staticmethod
    def default() -> list[dict[str, Any]]:
        return []

    # pyinfra calls command() and process() on one instance: command() keeps the
    # fact instances, whose own state (DataDirs' paths) process() needs.
    facts: list[FactBase] = []  # noqa: RUF012 (replaced per instance in command())

    def command(self, parts: list[tuple[type[FactBase], dict[str, Any]]]) -> str:
        self.facts = []
        pieces = []
        for index, (fact_class, kwargs) in enumerate(parts):
            fact = fact_class()
            self.facts.append(fact)
            command = fact.command(**kwargs)
            if isinstance(command, StringCommand):
                command = command.get_raw_value()
            pieces.append(f"echo '{PART}{index}'; ( {command}\n); echo \"{STATUS}$?\"")
        return "; ".join(pieces) if pieces else "true"

    def process(self, output: list[str]) -> list[dict[str, Any]]:
        outputs: list[list[str]] = [[] for _ in self.facts]
        statuses: list[str | None] = [None for _ in self.facts]
        current: int | None = None
        for line in output:
            if line.startswith(PART):
                current = int(line[len(PART) :])
            elif line.startswith(STATUS) and current is not None:
                statuses[current] = line[len(STATUS) :].strip()
                current = None
            elif current is not None:
                outputs[current].append(line)
        if current is not None or None in statuses:
            raise parse_error("Batch", "a part did not finish")
        results: list[dict[str, Any]] = []
        for fact, lines, status in zip(self.facts, outputs, statuses, strict=True):
            if status != "0":
                results.append({"read": False, "value": None})
                continue
            try:
                # As pyinfra reads a fact alone: no output is the fact's default.
                value = fact.process(lines) if lines else fact.default()
            except FactProcessError:
                results.append({"read": False, "value": None})
                continue
            results.append({"read": True, "value": value})
        return results
