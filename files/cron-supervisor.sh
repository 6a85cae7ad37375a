#!/bin/sh
# Keeps the cron daemon running on a host without a service manager (containers,
# minimal VMs), so that the scheduled off-host backups run when nobody runs
# pyinfra: it restarts cron if it ever exits. Only one copy runs: a second start
# finds the lock held and exits. The same pattern as chroma-deploy-dockerd.
#
#   chroma-deploy-cron start   check, then run the loop detached (what the deploy runs)
#   chroma-deploy-cron         run the loop in the foreground
#
# It refuses to start, and says why, when cron is not installed: a loop on a
# missing binary would only fill the log.
set -u
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
LOG=/var/log/chroma-deploy-cron.log

require_cron() {
  command -v cron >/dev/null 2>&1 && return 0
  reason="chroma-deploy-cron: no cron on this host: install it, e.g. apt-get install cron"
  echo "$reason" >&2
  echo "$(date -u +%FT%TZ) $reason; not starting" >>"$LOG"
  exit 1
}

# A cron that another started (its pid file names a live cron) is left alone:
# starting a second one would only fail on its lock, every 2 s, into the log.
# A killed cron whose parent is gone too stays a zombie where pid 1 reaps nothing (a
# container's own init): its comm still says cron, so its state is read too.
cron_running() {
  pid=
  { read -r pid </run/crond.pid; } 2>/dev/null || return 1
  name=
  state=
  case "$pid" in
    "" | *[!0-9]*) return 1 ;;
    *)
      { read -r name <"/proc/$pid/comm"; } 2>/dev/null
      { read -r _ _ state _ <"/proc/$pid/stat"; } 2>/dev/null
      ;;
  esac
  [ "$name" = cron ] && [ "$state" != Z ]
}

case "${1:-}" in
  start)
    require_cron
    setsid -f "$0" </dev/null >/dev/null 2>&1
    exit 0
    ;;
  "") ;;
  *)
    echo "usage: $0 [start]" >&2
    exit 2
    ;;
esac

exec 9>/run/chroma-deploy-cron.lock
flock -n 9 || exit 0
while :; do
  require_cron
  if cron_running; then
    sleep 10
    continue
  fi
  # -f: in the foreground, so this loop sees it exit; the lock is not passed on.
  cron -f >>"$LOG" 2>&1 9>&-
  sleep 2
done
