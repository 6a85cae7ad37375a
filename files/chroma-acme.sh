#!/usr/bin/env bash
# Obtain or renew the auth proxy's certificate from an ACME CA with Debian's lego
# (chroma_tls=acme, docs/security.md "ACME"), install it into the dir the proxy mounts
# and hand it to the running proxy by `nginx -s reload`: the same container, no failed
# request (a proxy run as root is one nginx process, which cannot reload: restarted).
#
# HTTP-01, answered by lego's own server on http_port for the few seconds it runs: the
# proxy never listens on that port (it serves TLS on chroma_port), so it is neither
# stopped nor changed. The CA asks each name at port 80, so port 80 of each name must
# reach this host while lego runs (http_port is another only behind a forward of 80).
#
# Usage: chroma-acme.sh issue|renew ACME_DIR
#   issue  a new certificate for the declared names (the deploy runs it when the host has
#          none for them from the declared CA, or it ended)
#   renew  a new one only within renew_days of its end (root's crontab, twice a day);
#          issue when lego has none yet
# ACME_DIR/acme.conf (written by the deploy, 0600 root) holds KEY=VALUE lines, read here
# and never sourced: directory email domains http_port renew_days tls_dir project_dir
# compose_file uid gid ca_file. lego keeps its account and certificates in
# ACME_DIR/lego-<digest of the directory URL>: another CA starts an account of its own.
set -euo pipefail

mode=${1:-}
acme_dir=${2:-}
if [[ "$mode" != issue && "$mode" != renew ]] || [ -z "$acme_dir" ]; then
  echo "usage: chroma-acme.sh issue|renew ACME_DIR" >&2
  exit 2
fi
say() { printf '%s chroma-acme: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
# One line, the deploy's refusal (its last line on stderr): the key, what is wrong, what to do.
fail() { printf '%s\n' "$*" >&2; exit 1; }

declare -A conf=()
[ -r "$acme_dir/acme.conf" ] || fail "chroma_tls: $acme_dir/acme.conf cannot be read; run the deploy (chroma_tls=acme) first"
# One run at a time per project: the deploy's issue and cron's renewal would share lego's
# store and its port.
exec 9>>"$acme_dir/.lock"
flock 9
while IFS= read -r line || [ -n "$line" ]; do
  [[ "$line" == *=* ]] || continue
  conf[${line%%=*}]=${line#*=}
done <"$acme_dir/acme.conf"
for key in directory email domains http_port renew_days tls_dir project_dir compose_file uid gid; do
  [ -n "${conf[$key]:-}" ] || fail "chroma_tls: $acme_dir/acme.conf has no $key; run the deploy again"
done
command -v lego >/dev/null || fail "chroma_tls: lego is not installed; run the deploy (it installs Debian's lego)"

read -r -a domains <<<"${conf[domains]}"
first=${domains[0]}
store="$acme_dir/lego-$(printf '%s' "${conf[directory]}" | sha256sum | cut -c1-12)"
certificate="$store/certificates/$first.crt"
lego_args=(--accept-tos --email "${conf[email]}" --server "${conf[directory]}" --path "$store"
  --key-type ec256 --http --http.port ":${conf[http_port]}")
for domain in "${domains[@]}"; do lego_args+=(--domains "$domain"); done
# A private ACME CA (chroma_acme_ca_file): lego verifies its HTTPS certificate with it.
if [ -n "${conf[ca_file]:-}" ]; then
  export LEGO_CA_CERTIFICATES="${conf[ca_file]}"
fi

digest() { sha256sum "$1" 2>/dev/null | cut -c1-64 || true; }

install_certificate() {
  # Each file written aside with its owner and mode, then renamed: nginx never reads half
  # a file, and the key is never readable by anyone else, even for a moment.
  local tls_dir=${conf[tls_dir]} source="$store/certificates/$first" from to
  umask 077
  for pair in "$source.crt:cert.pem" "$source.key:key.pem" "$source.issuer.crt:ca.pem"; do
    from=${pair%%:*} to=${pair##*:}
    install -m 0600 -o "${conf[uid]}" -g "${conf[gid]}" "$from" "$tls_dir/.$to.new"
  done
  printf '%s\n' "$first" >"$tls_dir/.name.new"
  chown "${conf[uid]}:${conf[gid]}" "$tls_dir/.name.new"
  for to in key.pem cert.pem ca.pem name; do
    mv -f "$tls_dir/.$to.new" "$tls_dir/$to"
  done
  # What it installed: the CA and names, then the certificate's fingerprint (the deploy asks
  # for a new one when the file there is another: a certificate of another mode left in place).
  { printf '%s %s\n' "${conf[directory]}" "${conf[domains]}"
    openssl x509 -in "$tls_dir/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2
  } >"$acme_dir/issued"
}

reload_proxy() {
  local compose=(docker compose --project-directory "${conf[project_dir]}" -f "${conf[compose_file]}")
  local running
  running=$("${compose[@]}" ps --status running -q auth-proxy 2>/dev/null || true)
  if [ -z "$running" ]; then
    say "the proxy is not running: it reads the new certificate when it starts"
    return 0
  fi
  if [ "${conf[uid]}" = 0 ]; then
    "${compose[@]}" restart auth-proxy >/dev/null
    say "proxy restarted (it runs as root: one nginx process, which cannot reload)"
    return 0
  fi
  # auth-proxy-reload (files/build-proxy-image.sh): nginx -t, then the reload, with a
  # second's drain of kept-alive connections on each side of it, as the deploy reloads.
  "${compose[@]}" exec -T auth-proxy /usr/local/bin/auth-proxy-reload
  say "nginx in the proxy reloaded"
}

run_lego() {
  # lego's output goes to a log of its own (kept: the last run's); its last line is why.
  local reason
  if lego "${lego_args[@]}" "$@" >"$acme_dir/lego.log" 2>&1; then
    return 0
  fi
  reason=$(grep -v '^[[:space:]]*$' "$acme_dir/lego.log" | tail -n 1 | tr -s '\t ' ' ' \
    | sed -E 's#^[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9:]{8} ##' || true)
  fail "chroma_tls: lego could not get a certificate for ${conf[domains]} from ${conf[directory]} (${reason:-no output}); port 80 of each name must reach port ${conf[http_port]} of this host (lego's output: $acme_dir/lego.log)"
}

before=$(digest "$certificate")
if [ "$mode" = renew ] && [ -n "$before" ]; then
  # Our cron minute is the host's own already (declaration/acme.py): no random sleep.
  run_lego renew --days "${conf[renew_days]}" --no-random-sleep
else
  run_lego run
fi
after=$(digest "$certificate")
[ -n "$after" ] || fail "chroma_tls: lego left no certificate at $certificate; see $acme_dir/lego.log"
if [ "$after" = "$before" ] && [ "$(digest "${conf[tls_dir]}/cert.pem")" = "$after" ]; then
  say "${conf[domains]}: not due for renewal (within ${conf[renew_days]} days of its end only)"
  exit 0
fi
install_certificate
say "${conf[domains]}: certificate from ${conf[directory]} installed in ${conf[tls_dir]} ($(openssl x509 -in "$certificate" -noout -enddate))"
reload_proxy
