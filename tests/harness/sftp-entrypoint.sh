#!/bin/sh
# The sftp repository host's entrypoint (tests/harness/sftp_repository.py runs
# the fleet's "bare" image with it): a "restic" user whose only way in is the
# harness's key, a repository root it owns, and sshd in the foreground.
set -eu

ssh-keygen -A >/dev/null
mkdir -p /run/sshd /srv/restic
id restic >/dev/null 2>&1 || useradd --create-home --shell /bin/sh restic
usermod -p '*' restic
mkdir -p /home/restic/.ssh
printf '%s\n' "${CDSFTP_AUTHORIZED_KEY:?}" >/home/restic/.ssh/authorized_keys
chmod 0700 /home/restic/.ssh
chmod 0600 /home/restic/.ssh/authorized_keys
chown -R restic:restic /home/restic/.ssh /srv/restic
# The small tmpfs (when the harness made one) for the "repository's disk is full" case.
if [ -d /srv/full ]; then chown restic:restic /srv/full; fi

exec /usr/sbin/sshd -D -e
