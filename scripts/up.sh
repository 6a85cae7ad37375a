#!/usr/bin/env bash
# The README's main command: a converged, healthy, persistent Chroma stack on
# this machine. Installs what is missing (Python deps; the deploy itself
# installs Docker Engine and Compose v2), then runs `pyinfra @local deploy.py`.
# With no container registry reachable, the image is built from the chromadb
# wheel (chroma_image_source=auto). Extra arguments go to pyinfra, e.g.
#   scripts/up.sh --data chroma_project_dir=/srv/my-chroma
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
exec pyinfra -y @local deploy.py --data chroma_image_source=auto "$@"
