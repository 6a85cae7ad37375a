#!/bin/sh
# PID 1's child in a cdfleet test host: make /sys writable for an inner
# dockerd, authorize the harness's key, start dockerd (when installed) and sshd.
set -eu

# Docker mounts /sys and the cgroup controllers read-only; an inner engine must
# create cgroups and write to /sys (bridges, overlay).
mount -o remount,rw /sys
for controller in /sys/fs/cgroup/*; do
  [ -d "$controller" ] && ! [ -L "$controller" ] || continue
  mount -o remount,rw,bind "$controller" "$controller" 2>/dev/null || true
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

# The same loop as files/dockerd-supervisor.sh, under the same lock, so that a
# deploy that finds dockerd down starts no second one.
if command -v dockerd >/dev/null 2>&1; then
  (
    exec 9>/run/chroma-deploy-dockerd.lock
    flock -n 9 || exit 0
    while :; do
      rm -f /var/run/docker.pid
      dockerd >>/var/log/dockerd.log 2>&1 || true
      sleep 2
    done
  ) &
fi

exec /usr/sbin/sshd -D -e
