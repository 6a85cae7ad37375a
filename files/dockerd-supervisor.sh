#!/bin/sh
# Keeps Docker Engine running on a host without a service manager (containers,
# minimal VMs). chroma-deploy starts it with `setsid -f` when `docker info`
# does not answer and no systemd runs; it restarts dockerd if it ever exits.
# Only one copy runs: a second start finds the lock held and exits.
exec 9>/run/chroma-deploy-dockerd.lock
flock -n 9 || exit 0
while :; do
  rm -f /var/run/docker.pid
  dockerd >>/var/log/dockerd.log 2>&1
  sleep 2
done
