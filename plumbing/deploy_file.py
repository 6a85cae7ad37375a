"""What a deploy file of your own declares for the stack, for ``drift.py --deploy FILE``.

A deploy file that includes the stack with ``chroma_stack(overrides={...})`` converges
to other values than deploy.py's. drift checks that declaration by loading the file the
way pyinfra loads a deploy file (for each host, with that host in context, the file's
other operations declared but never run: drift's state does not check for changes, so
they read nothing) with ``chroma_stack`` standing in as a recorder of its overrides.

The declaration comes from the file the user gives on this machine, never from a
record on the host: a record could be tampered with, or left by another run, along with
the very state it should be checked against (docs/drift.md).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pyinfra import host, state
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_config

# Per host name, the overrides of each chroma_stack() call the file made for it.
_CALLS: dict[str, list[dict[str, Any]]] = {}


def _record(overrides: dict[str, Any] | None = None, *_args: Any, **_global_args: Any) -> None:
    """Stands in for chroma_stack() while a deploy file loads: records, declares nothing.

    Global arguments (``_sudo=True``) are the connection's: drift reads with the host's.
    """
    _CALLS.setdefault(host.name, []).append(dict(overrides or {}))


def stack_overrides(filename: str) -> list[dict[str, Any]]:
    """The overrides of every chroma_stack() call ``filename`` makes for the current host.

    Raises PyinfraError with one line when the file fails to load or declares no stack
    for this host (there would be nothing to compare with).
    """
    from pyinfra_cli.util import exec_file

    import deploys.chroma  # only with --deploy: drift's own path does not need it

    deploys.chroma.chroma_stack = _record  # type: ignore[assignment]  # drift never deploys
    if os.getcwd() not in sys.path:  # as pyinfra's CLI: the file may import from the cwd
        sys.path.append(os.getcwd())
    _CALLS.pop(host.name, None)
    try:
        with ctx_config.use(state.config.copy()):  # as pyinfra: the file's config stays its own
            exec_file(filename, is_deploy_code=True)
    except Exception as error:  # the user's code may raise anything; drift reports one line
        cause = getattr(error, "exception", error)  # pyinfra wraps errors in user code
        first = (str(cause).splitlines() or [""])[0]
        raise PyinfraError(
            f"--deploy {filename} could not be loaded: {type(cause).__name__}: {first}"
        ) from None
    calls = _CALLS.pop(host.name, [])
    if not calls:
        raise PyinfraError(
            f"--deploy {filename} declares no chroma_stack() for this host: nothing to check"
        )
    return calls
