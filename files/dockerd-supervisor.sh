#!/bin/sh
# Keeps Docker Engine running on a host without a service manager (containers,
# minimal VMs): it restarts dockerd if it ever exits. Only one copy runs: a
# second start finds the lock held and exits.
#
#   chroma-deploy-dockerd start   check, then run the loop detached (what the deploy runs)
#   chroma-deploy-dockerd         run the loop in the foreground
#
# It refuses to start, and says why, when dockerd is not installed: a docker
# CLI alone (some images ship one) is not an engine, and a loop on a missing
# binary would only fill the log.
set -u
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
LOG=/var/log/dockerd.log
PID_FILE=/var/run/docker.pid

require_dockerd() {
  command -v dockerd >/dev/null 2>&1 && return 0
  reason="chroma-deploy-dockerd: no dockerd on this host, so Docker Engine is not installed"
  reason="$reason (a docker CLI alone is not an engine): install it, e.g. apt-get install docker.io"
  echo "$reason" >&2
  echo "$(date -u +%FT%TZ) $reason; not starting" >>"$LOG"
  exit 1
}

# A pid file left by a dockerd that is gone: when its pid now belongs to
# another process, dockerd refuses to start. One naming a live dockerd stays.
remove_stale_pid_file() {
  pid=
  { read -r pid <"$PID_FILE"; } 2>/dev/null || return 0
  name=
  case "$pid" in
    "" | *[!0-9]*) ;;
    *) { read -r name <"/proc/$pid/comm"; } 2>/dev/null ;;
  esac
  [ "$name" = dockerd ] || rm -f "$PID_FILE"
}

case "${1:-}" in
  start)
    require_dockerd
    setsid -f "$0" </dev/null >/dev/null 2>&1
    exit 0
    ;;
  "") ;;
  *)
    echo "usage: $0 [start]" >&2
    exit 2
    ;;
esac

exec 9>/run/chroma-deploy-dockerd.lock
flock -n 9 || exit 0
while :; do
  require_dockerd
  remove_stale_pid_file
  dockerd >>"$LOG" 2>&1
  sleep 2
done
