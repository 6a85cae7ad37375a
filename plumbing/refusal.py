"""A refusal found before anything changes, printed by pyinfra as one line.

pyinfra 3 prints a ``DeployError`` raised in a deploy file with the file and
line it came from (``pyinfra error in /.../preflight.py line 33: ...``): an
internal location a user cannot act on. pyinfra's CLI re-raises its own
``CliError`` untouched and prints it as ``--> pyinfra error: <message>``, and
its deploy-file loader lets every ``PyinfraError`` through: an exception that
is both is printed once, without a location, and exits 1.

``pyinfra_cli`` is not imported here: importing it monkey-patches the standard
library for gevent, which drift.py and the unit tests must not get as a side
effect. Under the CLI it is loaded already, and :func:`refusal` uses it.
"""

from __future__ import annotations

import functools
import sys

from pyinfra.api.exceptions import PyinfraError


class Refusal(PyinfraError):
    """``<host>: <key>: <what is wrong>; <what to do>``, raised before any change."""

    def __init__(self, host_name: str, message: str):
        super().__init__(f"{host_name}: {message}")


@functools.cache
def _cli_refusal(cli_error: type) -> type[Refusal]:
    return type("CliRefusal", (Refusal, cli_error), {})


def refusal(host_name: str, message: str) -> Refusal:
    """The :class:`Refusal` to raise; under pyinfra's CLI also a ``CliError``."""
    cli = sys.modules.get("pyinfra_cli.exceptions")
    if cli is None:
        return Refusal(host_name, message)
    return _cli_refusal(cli.CliError)(host_name, message)
