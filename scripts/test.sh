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
# Step 1, three at once: the tests marked serial (they stop or restart the engine, watch
# all of it, or must win a race), mypy, and the unit tests that need no engine (fixtures,
# and real restic on local repositories: a wall-bound minute, mostly waiting on restic).
# None of the unit tests started here touches the engine (tests/unit marked docker run in
# step 2; a stand-in docker serves the others), so the serial tests may stop it; the race
# test comes last in its run (test_upgrade.py), after mypy and the unit tests are done.
# The unit tests run in one process: some import pyinfra's CLI, whose gevent
# monkey-patching pytest-xdist's workers do not survive.
# mypy's and the unit tests' output is printed after the serial tests', whole.
# DOCKER_HOST names no engine, so a unit test that needs one fails here, every time,
# instead of now and then when a serial test has stopped it.
logs=$(mktemp -d)
mypy >"$logs/mypy" 2>&1 &
typecheck=$!
DOCKER_HOST=unix:///nonexistent/no-engine-for-unit-tests.sock \
  pytest -m "not docker" tests/unit >"$logs/unit" 2>&1 &
unit=$!
trap 'kill "$typecheck" "$unit" 2>/dev/null || true; rm -rf "$logs"' EXIT
serial_status=0
pytest -m serial tests/integration || serial_status=$?
typecheck_status=0
wait "$typecheck" || typecheck_status=$?
unit_status=0
wait "$unit" || unit_status=$?
cat "$logs/mypy" "$logs/unit"
rm -rf "$logs"
trap - EXIT
for status in "$typecheck_status" "$unit_status" "$serial_status"; do
  if [ "$status" -ne 0 ]; then
    exit "$status"
  fi
done
# Step 2: the unit tests that read the real engine, then the real-engine tests two files
# at a time (pytest-xdist, a file per process, so a file's module fixtures stay in one
# process), the longest files first (tests/conftest.py FILE_SECONDS;
# --no-loadscope-reorder keeps that order), so that both processes finish together.
pytest -m docker tests/unit
exec pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not serial" tests/integration
