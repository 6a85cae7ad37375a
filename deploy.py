"""Converge a persistent Chroma stack on @local or on the hosts of inventory.py.

Reads the host's ``chroma_*`` data (defaults and rules: declaration/settings.py),
checks it before anything changes, then declares the engine, the image, the
project and data dirs, the .gitignore lines and the compose file, and brings
the stack up only when something differs. A second run changes nothing.
"""

import sys
from pathlib import Path

# pyinfra puts the working dir on sys.path: put this dir first, so that
# `pyinfra @local /path/to/deploy.py` finds facts/ and operations/ here from any dir, ahead of
# any other module of that name (the working dir's, PYTHONPATH's), also when this dir is
# the working dir. Not an installed package: docs/testing.md says why.
ROOT = str(Path(__file__).resolve().parent)
if sys.path[:1] != [ROOT]:  # once, though pyinfra runs this file for every host
    sys.path.insert(0, ROOT)

if __name__ == "__main__":  # `python deploy.py`: not a pyinfra run (pyinfra runs it unnamed)
    from plumbing.version import not_under_pyinfra

    not_under_pyinfra("deploy.py", sys.argv[1:])

from deploys.chroma import chroma_stack  # noqa: E402

chroma_stack()
