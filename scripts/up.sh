#!/usr/bin/env bash
# The README's main command: a converged, healthy, persistent Chroma stack on
# this machine. Installs what is missing (Python deps; the deploy itself
# installs Docker Engine and Compose v2), then runs `pyinfra @local deploy.py`.
# With no container registry reachable, the image is built from the chromadb
# wheel (chroma_image_source=auto). At the end it prints the URL, the data dir and
# how to check drift and back up. Extra arguments go to pyinfra, e.g.
#   scripts/up.sh --data chroma_project_dir=/srv/my-chroma
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
status=0
pyinfra -y @local deploy.py --data chroma_image_source=auto "$@" || status=$?
if [ "$status" -eq 0 ]; then
  # What the user now has (URL, data dir, drift and backup commands), from the same
  # settings; on stderr, so `--json` output stays one JSON document.
  python -m plumbing.summary --data chroma_image_source=auto "$@" || true
fi
exit "$status"
