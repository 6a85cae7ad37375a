#!/usr/bin/env bash
# Build the authenticating reverse proxy that chroma-deploy puts in front of
# Chroma (chroma_auth_proxy=true): Debian's nginx on the same local Debian
# base as the Chroma image, so no container registry is needed.
#
# The token never enters the image or a command line: at start the entrypoint
# reads it from /run/secrets/chroma-token.env (a 0600 file on the host, mounted
# read-only) and writes the nginx config into the container's tmpfs. It runs as
# the stack's owner on a read-only root filesystem; only /run is writable (tmpfs).
# CHROMA_UPSTREAM says where Chroma listens: 127.0.0.1:8000 when Chroma shares
# the proxy's network namespace (the proxy is then the only way in).
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
  # Room for "Bearer " and a 256-character token: with the default bucket (the CPU's
  # cache line, 64 bytes) a token of 40 or more characters stopped nginx at start.
  map_hash_bucket_size 512;
  map \$http_x_chroma_token \$token_ok { "$token" 1; default 0; }
  map \$http_authorization \$bearer_ok { "Bearer $token" 1; default 0; }
  server {
    listen 8080;
    location = /proxy-health { return 200 "ok\n"; }
    location / {
      set \$allowed "\${token_ok}\${bearer_ok}";
      if (\$allowed = "00") { return 401 "missing or wrong token\n"; }
      proxy_pass http://$upstream;
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
