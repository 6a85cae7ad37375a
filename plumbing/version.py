"""chroma-deploy's version, and what an entry file says when run without pyinfra.

The version has one source, ``[project] version`` in pyproject.toml (or the installed
distribution's metadata, when the project was installed without its source tree);
every entry point's ``--version`` prints it with pyinfra's, since both decide what a run
does. ``pyinfra --version`` prints pyinfra's only.

Nothing here imports pyinfra's CLI: ``python backup.py --version`` answers at once.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import NoReturn

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def version() -> str:
    """``[project] version`` from pyproject.toml."""
    try:
        with PYPROJECT.open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except FileNotFoundError:
        return metadata.version("chroma-deploy")


def version_line() -> str:
    """``chroma-deploy 0.1.0 (pyinfra 3.10.0)``."""
    return f"chroma-deploy {version()} (pyinfra {metadata.version('pyinfra')})"


def not_under_pyinfra(entry: str, argv: list[str]) -> NoReturn:
    """``python backup.py``: a deploy file runs under pyinfra; say how, or print the version.

    Without this, the file would run its first line outside a pyinfra run and end in a
    traceback (no host in context).
    """
    if argv == ["--version"]:
        print(version_line())
        sys.exit(0)
    print(
        f"{entry} is a pyinfra deploy file: run it with `pyinfra -y INVENTORY {entry}` "
        f"(README.md); `python {entry} --version` prints chroma-deploy's version",
        file=sys.stderr,
    )
    sys.exit(2)
