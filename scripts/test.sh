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
if [ "$#" -gt 0 ]; then
  mypy
  exec pytest "$@"
fi
# The fixture tests first, in one process: they take seconds, and some import
# pyinfra's CLI, whose gevent monkey-patching pytest-xdist's workers do not survive.
# mypy runs beside them (from a fresh clone it takes as long, mostly reading files);
# its verdict is waited for before any real-engine test starts.
typecheck_log=$(mktemp)
mypy >"$typecheck_log" 2>&1 &
typecheck=$!
trap 'kill "$typecheck" 2>/dev/null || true; rm -f "$typecheck_log"' EXIT
pytest tests/unit
typecheck_status=0
wait "$typecheck" || typecheck_status=$?
cat "$typecheck_log"
rm -f "$typecheck_log"
trap - EXIT
if [ "$typecheck_status" -ne 0 ]; then
  exit "$typecheck_status"
fi
# The real-engine tests two files at a time (pytest-xdist, a file per process, so
# a file's module fixtures stay in one process), the longest files first
# (tests/conftest.py FILE_SECONDS; --no-loadscope-reorder keeps that order), so that
# both processes finish together; then, alone, those marked serial: they stop the
# engine, compare all of it before and after, or must win a race that a busy
# machine would lose.
pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not serial" tests/integration
exec pytest -m serial tests/integration
