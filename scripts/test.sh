#!/usr/bin/env bash
# The README's test command: set up everything the tests need, check style
# and types (shellcheck on every shell file, ruff, mypy), then run every test
# (fixture tests, then real Docker, Chroma and SSH tests). Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/test-env.sh
export PATH="$PWD/.venv/bin:$PATH"
shellcheck .ci/run files/*.sh scripts/*.sh tests/harness/*.sh
ruff check .
ruff format --check .
mypy
exec pytest "$@"
