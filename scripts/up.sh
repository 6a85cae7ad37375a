#!/usr/bin/env bash
# The README's main command: a converged, healthy, persistent Chroma stack on
# this machine. Installs what is missing (Python deps; the deploy itself
# installs Docker Engine and Compose v2), then runs `pyinfra @local deploy.py`.
# With no container registry reachable, the image is built from the chromadb
# wheel (chroma_image_source=auto). At the end, once the heartbeat answers, it prints
# the URL, the data dir and how to check drift and back up (exit 1 if it does not). Extra arguments go to pyinfra, e.g.
#   scripts/up.sh --data chroma_project_dir=/srv/my-chroma
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
run=(-y @local deploy.py --data chroma_image_source=auto "$@")
status=0
pyinfra "${run[@]}" || status=$?
if [ "$status" -eq 0 ]; then
  # What the user now has (URL, data dir, drift and backup commands), read from the
  # same arguments, after a heartbeat through that URL; nothing after --dry or --help.
  # On stderr, so `--json` output stays one JSON document.
  python -m plumbing.summary "${run[@]}" || status=$?
fi
exit "$status"
