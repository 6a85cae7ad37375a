#!/usr/bin/env bash
# The README's test command: set up everything the tests need, check style
# and types (shellcheck on every shell file, ruff, mypy), then run every test
# (fixture tests, then real Docker, Chroma and SSH tests). Extra arguments go
# to pytest, which then runs them in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/test-env.sh
export PATH="$PWD/.venv/bin:$PATH"
shellcheck .ci/run files/*.sh scripts/*.sh tests/harness/*.sh
ruff check .
ruff format --check .
mypy
if [ "$#" -gt 0 ]; then
  exec pytest "$@"
fi
# The whole suite in two steps: two test files at a time (pytest-xdist, a file per
# process, so a file's module fixtures stay in one process), then, alone, the
# tests marked serial: they stop the engine, compare all of it before and after,
# or must win a race that a busy machine would lose.
pytest -n 2 --dist loadfile -m "not serial"
exec pytest -m serial
