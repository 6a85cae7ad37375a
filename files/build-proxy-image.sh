#!/usr/bin/env bash
# Build the authenticating reverse proxy that chroma-deploy puts in front of
# Chroma (chroma_auth_proxy=true): Debian's nginx on the same local Debian
# base as the Chroma image, so no container registry is needed.
#
# The token never enters the image or a command line: at start the entrypoint
# reads it from /run/secrets/chroma-token.env (a 0600 file on the host, mounted
# read-only) and writes the nginx config into the container's tmpfs. It runs as
# the stack's owner on a read-only root filesystem; only /run is writable (tmpfs).
# CHROMA_UPSTREAM says where Chroma listens: chroma:8000 on the stack's internal
# network, the only network Chroma is on (the proxy is then the only way in). The
# name is resolved again every few seconds (Docker's DNS), so a Chroma that restarts
# on another address is found again without restarting the proxy.
# GET /proxy-health answers Chroma's own heartbeat (CHROMA_HEARTBEAT_PATH) through the
# proxy: the healthcheck then means "Chroma answers through me", not "nginx runs".
# The token is compared exactly (case-sensitive); only the scheme word "Bearer" is
# matched in any case, as HTTP says.
# CHROMA_TLS=on: the port speaks TLS only (Mozilla's "intermediate" profile: TLS 1.2 and
# 1.3), with the certificate and key from the mounted dir /run/secrets/tls (cert.pem,
# key.pem); plain HTTP on it gets 400 and is never served. A new certificate there is
# taken by `nginx -s reload`, without a restart. /usr/local/bin/auth-proxy-health asks
# /proxy-health as clients do: over TLS, verified with /run/secrets/tls/ca.pem for the
# name in /run/secrets/tls/name, when TLS is on. Port 8081, never published, serves the
# application service on the stack's network in plain HTTP (with the token).
# Usage: build-proxy-image.sh TAG [WORK_DIR]
set -euo pipefail

tag=${1:?usage: build-proxy-image.sh TAG [WORK_DIR]}
work=${2:-/var/cache/chroma-deploy/image-build}
base_tag="chroma-deploy/debian-base:bookworm"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "image $tag present"
  exit 0
fi
if ! docker image inspect "$base_tag" >/dev/null 2>&1; then
  echo "build-proxy-image: $base_tag is missing: build the Chroma image first" >&2
  exit 1
fi

mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
mirror_host=$(echo "$mirror" | sed -E 's#^https?://([^/:]+).*#\1#')
# Containers may not resolve the mirror by DNS: hand them the host's answer.
mirror_ip=$(getent hosts "$mirror_host" | awk '{print $1; exit}')

ctx=$(mktemp -d "${TMPDIR:-/tmp}/chroma-proxy-build.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
cat >"$ctx/entrypoint.sh" <<'ENTRYPOINT'
#!/bin/bash
# Reads the token from its secret file and starts nginx. Refuses to start
# without a token rather than serve Chroma unauthenticated.
set -euo pipefail
token_file=/run/secrets/chroma-token.env
token=$(sed -n 's/^CHROMA_AUTH_TOKEN=//p' "$token_file" 2>/dev/null | tr -d '\r\n' || true)
if [ ${#token} -lt 16 ] || [ ${#token} -gt 256 ] || [[ ! "$token" =~ ^[A-Za-z0-9._~+/=-]+$ ]]; then
  echo "auth-proxy: $token_file must hold a token of 16 to 256 characters [A-Za-z0-9._~+/=-]" >&2
  exit 1
fi
upstream=${CHROMA_UPSTREAM:-chroma:8000}
if [[ ! "$upstream" =~ ^[A-Za-z0-9.-]+:[0-9]+$ ]]; then
  echo "auth-proxy: CHROMA_UPSTREAM must be host:port, not $upstream" >&2
  exit 1
fi
heartbeat=${CHROMA_HEARTBEAT_PATH:-/api/v2/heartbeat}
if [[ ! "$heartbeat" =~ ^/[A-Za-z0-9/_-]+$ ]]; then
  echo "auth-proxy: CHROMA_HEARTBEAT_PATH must be a path, not $heartbeat" >&2
  exit 1
fi
listen="listen 8080;"
tls_lines=""
if [ "${CHROMA_TLS:-off}" = on ]; then
  for file in cert.pem key.pem; do
    if [ ! -r "/run/secrets/tls/$file" ]; then
      echo "auth-proxy: CHROMA_TLS=on needs /run/secrets/tls/$file" >&2
      exit 1
    fi
  done
  # 8081: plain HTTP for the application service on the stack's own network (never
  # published): it reaches the proxy by name, not by the certificate's names.
  listen="listen 8080 ssl; listen 8081;"
  # Mozilla's "intermediate" configuration (ssl-config.mozilla.org, nginx, no dhparam:
  # so no DHE suites). Plain HTTP on this port is error 497: refused with 400, not served.
  tls_lines="ssl_certificate /run/secrets/tls/cert.pem;
    ssl_certificate_key /run/secrets/tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_prefer_server_ciphers off;
    ssl_session_timeout 1d;
    ssl_session_cache shared:TLS:10m;
    ssl_session_tickets off;
    error_page 497 =400 /plain-http-refused;
    location = /plain-http-refused { internal; return 400 \"this port speaks TLS only: use https://\\n\"; }"
fi
# Docker's embedded DNS, in every container on a user-defined network.
resolver=$(awk '$1 == "nameserver" {print $2; exit}' /etc/resolv.conf)
resolver=${resolver:-127.0.0.11}
# As root (a stack owned by root) with no capabilities, nginx can neither chown its
# temp dirs to another user nor switch users: one process, as root, owning them.
process_lines=""
if [ "$(id -u)" = 0 ]; then
  process_lines="user root root; master_process off;"
fi
mkdir -p /run/nginx
umask 077
cat > /run/nginx/nginx.conf <<CONF
$process_lines
worker_processes 1;
pid /run/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path /run/nginx/body;
  proxy_temp_path /run/nginx/proxy;
  fastcgi_temp_path /run/nginx/fastcgi;
  uwsgi_temp_path /run/nginx/uwsgi;
  scgi_temp_path /run/nginx/scgi;
  client_max_body_size 256m;
  # A variable in proxy_pass makes nginx resolve the name when it is used (cached for
  # valid=), not once at start: a Chroma restarted on another address is found again.
  resolver $resolver valid=2s ipv6=off;
  resolver_timeout 3s;
  # Chroma is on a local bridge: a connection that takes longer is not coming.
  proxy_connect_timeout 3s;
  server {
    $listen
    $tls_lines
    set \$chroma "$upstream";
    # Exact comparisons ("=" is case-sensitive); a map's string keys match in any case,
    # which let the token in upper or lower case through.
    set \$token_ok 0;
    set \$bearer "";
    if (\$http_x_chroma_token = "$token") { set \$token_ok 1; }
    if (\$http_authorization ~* "^bearer +(.+)\$") { set \$bearer \$1; }
    if (\$bearer = "$token") { set \$token_ok 1; }
    location = /proxy-health {
      proxy_pass http://\$chroma$heartbeat;
      proxy_http_version 1.1;  # Chroma 0.6 answers HTTP/1.0, nginx's default, with 400
      proxy_set_header Authorization "";
      proxy_set_header X-Chroma-Token "";
      proxy_read_timeout 3s;
    }
    location / {
      if (\$token_ok = 0) { return 401 "missing or wrong token\n"; }
      proxy_pass http://\$chroma;
      proxy_http_version 1.1;
      proxy_set_header Host \$host;
      proxy_set_header Authorization "";
      proxy_set_header X-Chroma-Token "";
      proxy_read_timeout 300s;
    }
  }
}
CONF
unset token
exec nginx -e stderr -c /run/nginx/nginx.conf -g 'daemon off;'
ENTRYPOINT
cat >"$ctx/health.sh" <<'HEALTH'
#!/bin/bash
# The proxy's healthcheck: Chroma's heartbeat through this proxy, as clients ask it
# (over TLS, checked with the CA for the certificate's name, when CHROMA_TLS=on).
set -euo pipefail
if [ "${CHROMA_TLS:-off}" = on ]; then
  name=$(cat /run/secrets/tls/name)
  host=$name
  [[ "$name" == *:* ]] && host="[$name]"
  exec curl -fsS -o /dev/null -m 3 --cacert /run/secrets/tls/ca.pem \
    --resolve "$host:8080:127.0.0.1" "https://$host:8080/proxy-health"
fi
exec 3<>/dev/tcp/127.0.0.1/8080
printf 'GET /proxy-health HTTP/1.0\r\n\r\n' >&3
read -r _ status _ <&3
[ "$status" = 200 ]
HEALTH
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $base_tag
RUN echo "deb $mirror bookworm main" > /etc/apt/sources.list \\
 && rm -f /etc/apt/sources.list.d/* \\
 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light curl \\
 && rm -rf /var/lib/apt/lists/* && rm -f /etc/nginx/sites-enabled/default
COPY entrypoint.sh /usr/local/bin/auth-proxy
COPY health.sh /usr/local/bin/auth-proxy-health
RUN chmod 0755 /usr/local/bin/auth-proxy /usr/local/bin/auth-proxy-health
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/auth-proxy"]
DOCKERFILE
add_host=()
[ -n "$mirror_ip" ] && add_host=(--add-host "$mirror_host:$mirror_ip")
mkdir -p "$work"
DOCKER_BUILDKIT=0 docker build --quiet "${add_host[@]}" -t "$tag" "$ctx" >"$work/build-proxy.log" 2>&1 \
  || { tail -n 30 "$work/build-proxy.log" >&2; exit 1; }
echo "image $tag built from Debian's nginx"
