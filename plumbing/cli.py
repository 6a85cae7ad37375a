"""The command line of every entry point, read as pyinfra reads its own.

A ``--data KEY=VALUE`` value goes through pyinfra's own ``parse_cli_arg`` (``8001``
is an int, ``true`` True, ``["https://app.example"]`` a list), and an inventory
through pyinfra's own ``make_inventory``: ``group_data/`` of the working dir and of
the inventory file's dir, then each ``--group-data`` dir, under the ``--data``
values. deploy.py, backup.py, restore.py and prove.py are run by pyinfra, which
reads them this way itself; drift.py, rollout.py and the summary of scripts/up.sh
read them here, so the settings they check are the ones the deploy converges to
(tests/unit/test_loader.py feeds every key's example through each of them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from pyinfra.api import Config, Inventory, State
from pyinfra.context import ctx_config, ctx_inventory, ctx_state

INVENTORY_FORMS = "give an inventory file, @local, @ssh/HOST or host1,host2"


class CommandLineError(Exception):
    """Bad command-line input, found before any host is touched. The message is one line."""


class _EntryParser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting: each entry point says a
    bad argument in its own one line (its name in front) and exits with its own code."""

    def __init__(self, *args: Any, failure: Callable[[str], Exception], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._failure = failure

    def error(self, message: str) -> NoReturn:
        raise self._failure(f"{message} (see --help)")


def entry_parser(
    prog: str,
    description: str,
    epilog: str,
    failure: Callable[[str], Exception],
    *,
    limit: str | None = None,
    every_run: str = "",
) -> argparse.ArgumentParser:
    """The arguments every entry point that reads an inventory shares, spelled once:
    INVENTORY, ``--data`` and ``--group-data`` as pyinfra reads them (load_state),
    ``--limit`` when ``limit`` gives its help, and ``--version``. ``failure`` makes the
    exception a bad argument raises from its one-line message; ``every_run`` is added to
    the help of --data and --group-data (rollout.py hands them to every pyinfra run)."""
    from plumbing.version import version_line

    parser = _EntryParser(prog=prog, description=description, epilog=epilog, failure=failure)
    parser.add_argument("inventory", help="@local, inventory.py, host1,host2 or @ssh/host")
    parser.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override data, as pyinfra's --data{every_run}")  # fmt: skip
    parser.add_argument("--group-data", action="append", default=[], metavar="DIR",
                        help=f"more group data, as pyinfra's --group-data{every_run}")  # fmt: skip
    if limit is not None:
        parser.add_argument("--limit", action="append", default=[], metavar="HOST", help=limit)
    parser.add_argument("--version", action="version", version=version_line())
    return parser


def textfile_problem(path: Path | None) -> str | None:
    """Why ``--textfile PATH`` could not be written (said before any host is read, not
    after a long fleet check), or None."""
    if path is not None and path.is_dir():
        return f"--textfile {path} is a directory: name a file"
    if path is not None and not path.parent.is_dir():
        return f"--textfile {path}: {path.parent} is not a directory"
    return None


def parse_data(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each value read as pyinfra's ``--data`` reads it; the last
    pair of a key wins, as in pyinfra."""
    split = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandLineError(f"--data {pair!r} is not allowed: use KEY=VALUE")
        split.append((key, value))
    # Imported only now: importing pyinfra's CLI monkey-patches the interpreter (gevent).
    from pyinfra_cli.util import parse_cli_arg

    return {key: parse_cli_arg(value) for key, value in split}


def load_inventory(
    inventory: str,
    data: dict[str, Any],
    group_data: Sequence[str] = (),
) -> Inventory:
    """The inventory pyinfra would make of the same arguments in the same working dir.

    Needs a pyinfra state and config in context (:func:`load_state` sets them).
    """
    from pyinfra_cli.inventory import make_inventory

    cwd = os.getcwd()  # pyinfra's own: --chdir is taken before the inventory is read
    looks_like_file = inventory.endswith(".py") or os.sep in inventory
    is_host_list = inventory.startswith("@") or "," in inventory
    if looks_like_file and not is_host_list and not Path(inventory).exists():
        # pyinfra would take the name for a host to look up: say what is wrong instead.
        raise CommandLineError(f"inventory {inventory}: no such file; {INVENTORY_FORMS}")
    pyinfra_logger = logging.getLogger("pyinfra")
    level = pyinfra_logger.level
    pyinfra_logger.setLevel(logging.ERROR)  # our one line says it, not pyinfra's warning too
    try:
        loaded = make_inventory(
            inventory, override_data=data, cwd=cwd, group_data_directories=list(group_data)
        )
    except Exception as error:  # pyinfra raises several types for a bad inventory
        raise CommandLineError(f"inventory {inventory!r} could not be read: {error}") from None
    finally:
        pyinfra_logger.setLevel(level)
    if not len(loaded):  # pyinfra reads an unknown name as an empty inventory
        raise CommandLineError(f"inventory {inventory!r} has no hosts: {INVENTORY_FORMS}")
    return loaded


def load_state(
    inventory: str,
    pairs: Iterable[str],
    group_data: Sequence[str] = (),
    limit: Sequence[str] = (),
) -> State:
    """A pyinfra state of the inventory with its data, as a pyinfra run would make it
    (nothing connected yet); ``limit``: only these hosts, each one named in it."""
    state = State(check_for_changes=False)
    state.cwd = os.getcwd()
    config = Config()
    ctx_state.set(state)
    ctx_config.set(config)
    inventory_ = load_inventory(inventory, parse_data(pairs), group_data)
    names = {host.name for host in inventory_}
    unknown = [name for name in limit if name not in names]
    if unknown:
        raise CommandLineError(
            f"--limit {', '.join(unknown)} is not in the inventory: "
            f"use one of {', '.join(sorted(names))}"
        )
    ctx_inventory.set(inventory_)
    initial_limit = [host for host in inventory_ if host.name in limit] if limit else None
    state.init(inventory_, config, initial_limit=initial_limit)
    return state


@dataclass(frozen=True)
class PyinfraCommand:
    """What a ``pyinfra`` command line asks for, as pyinfra's own parser reads it."""

    inventory: str
    operations: tuple[str, ...]
    data: tuple[str, ...]
    group_data: tuple[str, ...]
    chdir: str | None
    converges: bool  # runs deploy files' operations: -y, not --dry, not a --debug-* mode


def pyinfra_command(argv: Sequence[str]) -> PyinfraCommand | None:
    """Read pyinfra's arguments with pyinfra's own command-line parser, running nothing.

    None: the line only asks for help or pyinfra's version, or pyinfra refuses it.
    """
    import click
    from pyinfra_cli.cli import cli

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # --help and --version print there
            params = cli.make_context("pyinfra", list(argv)).params
    except (click.exceptions.Exit, click.ClickException):
        return None
    operations = tuple(params["operations"])
    deploy_files = bool(operations) and all(name.endswith(".py") for name in operations)
    asks_only = params["dry"] or params["debug_facts"] or params["debug_operations"]
    return PyinfraCommand(
        inventory=params["inventory"],
        operations=operations,
        data=tuple(params["data"]),
        group_data=tuple(params["group_data"]),
        chdir=params["chdir"],
        converges=deploy_files and params["yes"] and not asks_only,
    )
