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
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
echo "$lock_sum" > .venv/.lock-sum
echo "bootstrap: .venv ready ($(.venv/bin/pyinfra --version))"
