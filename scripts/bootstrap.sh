#!/usr/bin/env bash
# Create .venv with the pinned requirements (requirements.lock). Quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."
lock_sum=$(sha256sum requirements.lock | cut -d' ' -f1)
if [ -f .venv/.lock-sum ] && [ "$(cat .venv/.lock-sum)" = "$lock_sum" ]; then
  exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip
fi
python3 -m venv .venv
# The machine's pip config may name local indexes that do not exist: hide that noise.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock 2>&1 \
  | { grep -v "^WARNING: Location 'file:" || true; } >&2
echo "$lock_sum" > .venv/.lock-sum
echo "bootstrap: .venv ready ($(.venv/bin/pyinfra --version))" >&2
