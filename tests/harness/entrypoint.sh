#!/bin/sh
# PID 1's child in a cdfleet test host: make /sys writable for an inner
# dockerd, authorize the harness's key, start dockerd (as the host's kind says) and sshd.
set -eu

# Docker mounts /sys and the cgroup controllers read-only; an inner engine must
# create cgroups and write to /sys (bridges, overlay).
mount -o remount,rw /sys
for controller in /sys/fs/cgroup/*; do
  if [ -d "$controller" ] && ! [ -L "$controller" ]; then
    mount -o remount,rw,bind "$controller" "$controller" 2>/dev/null || true
  fi
done

# Each container makes its own host keys on first start; they survive restarts.
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
for home in /root /home/deploy; do
  mkdir -p "$home/.ssh"
  printf '%s\n' "${CDFLEET_AUTHORIZED_KEY:?}" >"$home/.ssh/authorized_keys"
  chmod 0700 "$home/.ssh"
  chmod 0600 "$home/.ssh/authorized_keys"
done
chown -R deploy:deploy /home/deploy/.ssh

# The engine, as the host's kind (CDFLEET_ENGINE) says. Once a deploy installed
# its supervisor, that starts the engine at every start, as a boot script would.
# Before that: "running" starts the same loop as files/dockerd-supervisor.sh,
# under the same lock, so that a deploy that finds dockerd down starts no second
# one; "stopped" leaves the engine installed but stopped, with the docker.pid a
# dockerd killed by a reboot leaves behind, naming a pid that now belongs to
# another process (this shell's, which becomes sshd): dockerd refuses such a file.
supervisor=/usr/local/sbin/chroma-deploy-dockerd
if [ -x "$supervisor" ]; then
  "$supervisor" start || true
elif [ "${CDFLEET_ENGINE:-}" = running ] && command -v dockerd >/dev/null 2>&1; then
  (
    exec 9>/run/chroma-deploy-dockerd.lock
    flock -n 9 || exit 0
    while :; do
      rm -f /var/run/docker.pid
      dockerd >>/var/log/dockerd.log 2>&1 || true
      sleep 2
    done
  ) &
elif [ "${CDFLEET_ENGINE:-}" = stopped ]; then
  echo $$ >/var/run/docker.pid
fi

exec /usr/sbin/sshd -D -e
