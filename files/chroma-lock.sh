#!/bin/sh
# Take the per-project lock for the run that called this, for as long as that run lives.
#
#   chroma-lock.sh LOCK_DIR TIMEOUT_SECONDS HOLDER_TEXT
#
# The run's own process on this host is found by walking up from our parent past
# shells, sudo and su: pyinfra itself for @local, the SSH session's sshd over SSH.
# flock(1) takes the lock; a detached watcher keeps the lock's file descriptor open
# until that process ends, so the lock goes when the run goes: at its end, or at
# once when it is killed (the kernel closes the descriptor). Nothing has to be
# cleaned up after a killed run. Exit 0 with the lock (saying whether it had to wait
# for another run), 1 (naming the holder) after waiting TIMEOUT_SECONDS.
set -eu
dir=$1
timeout=$2
holder=$3

run=$PPID
while :; do
    comm=$(cat "/proc/$run/comm" 2>/dev/null || echo "?")
    case $comm in
        sh | bash | dash | sudo | su | env | timeout)
            run=$(awk '/^PPid:/ {print $2}' "/proc/$run/status")
            ;;
        *) break ;;
    esac
done

mkdir -p "$dir"
exec 9>>"$dir/lock"
waited=no
if ! flock -n 9; then
    waited=yes
    if ! flock -w "$timeout" 9; then
        echo "the project is locked by another run for more than ${timeout} s: $(cat "$dir/holder" 2>/dev/null || echo "holder unknown"); wait for it to finish, or raise chroma_lock_timeout" >&2
        exit 1
    fi
fi
printf '%s, pid %s on this host, since %s\n' "$holder" "$run" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$dir/holder"
# A zombie counts as gone: its parent may not reap it while it waits for another run.
# The state is read with the shell's own `read`: the watcher starts one program (sleep)
# each half second for as long as the run lives, on every host of every run.
# shellcheck disable=SC2016 # $1 is the watcher's own argument, expanded by its shell
setsid sh -c 'while kill -0 "$1" 2>/dev/null; do
    s=; while read -r k s _; do [ "$k" = State: ] && break; done <"/proc/$1/status"
    [ "$s" = Z ] && break
    sleep 0.5
done' chroma-lock-watcher "$run" </dev/null >/dev/null 2>&1 &
# "waited: yes": another run held the lock, so what was read before may have changed.
echo "locked: $(cat "$dir/holder")"
echo "waited: $waited"
