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
    listen 8080;
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
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $base_tag
RUN echo "deb $mirror bookworm main" > /etc/apt/sources.list \\
 && rm -f /etc/apt/sources.list.d/* \\
 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light \\
 && rm -rf /var/lib/apt/lists/* && rm -f /etc/nginx/sites-enabled/default
COPY entrypoint.sh /usr/local/bin/auth-proxy
RUN chmod 0755 /usr/local/bin/auth-proxy
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/auth-proxy"]
DOCKERFILE
add_host=()
[ -n "$mirror_ip" ] && add_host=(--add-host "$mirror_host:$mirror_ip")
mkdir -p "$work"
DOCKER_BUILDKIT=0 docker build --quiet "${add_host[@]}" -t "$tag" "$ctx" >"$work/build-proxy.log" 2>&1 \
  || { tail -n 30 "$work/build-proxy.log" >&2; exit 1; }
echo "image $tag built from Debian's nginx"
