#!/usr/bin/env bash
# Build the authenticating reverse proxy that chroma-deploy puts in front of
# Chroma (chroma_auth_proxy=true): Debian's nginx on the same local Debian
# base as the Chroma image, so no container registry is needed.
#
# No token enters the image, a command line or the environment: the clients (token ->
# client name and role) are nginx lines in /run/secrets/proxy/clients.conf, a 0600 file in
# a dir mounted from the host, included by the nginx config the entrypoint writes into the
# container's tmpfs. A new clients file is taken by /usr/local/bin/auth-proxy-reload
# (nginx -t, then nginx -s reload: no restart); the digest of the one loaded is written to
# /run/secrets/proxy/loaded. Each request needs a role (read, write, admin: the map in
# /etc/nginx/chroma-deploy-roles.conf); no or an unknown token gets 401, a role too low
# 403 naming the role needed. One JSON line per request goes to
# /var/log/chroma-proxy/audit.log (the project's logs/proxy), rotated at
# CHROMA_AUDIT_MAX_BYTES keeping CHROMA_AUDIT_MAX_FILES files, as Docker rotates the
# containers' own logs. It runs as the stack's owner on a read-only root filesystem; only
# /run is writable (tmpfs), besides those two mounted dirs.
# CHROMA_UPSTREAM says where Chroma listens: chroma:8000 on the stack's internal
# network, the only network Chroma is on (the proxy is then the only way in). nginx keeps
# its connections to Chroma open between requests (an upstream block with keepalive: a new
# connection per request cost 1 to 3 ms), and such a block takes its address once, at start
# or reload (Debian bookworm's nginx 1.22 has no `server ... resolve`, new in 1.27.3). So
# the entrypoint resolves the name itself (getent: Docker's DNS) at start, waiting until it
# resolves, and again every second: a Chroma restarted or recreated on another address is
# written into /run/nginx/upstream.conf and loaded by auth-proxy-reload (the same drain as
# a new clients file), or, as root, by a restart of nginx inside the container (one nginx
# process cannot reload), without restarting the proxy's container or a deploy.
# GET /proxy-health answers Chroma's own heartbeat (CHROMA_HEARTBEAT_PATH) through the
# proxy: the healthcheck then means "Chroma answers through me", not "nginx runs".
# Tokens are compared exactly (case-sensitive); only the scheme word "Bearer" is
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
# Loads the clients file (token -> client, role) and starts nginx; rotates the audit log.
# Refuses to start without a client rather than serve Chroma unauthenticated.
set -euo pipefail
clients=/run/secrets/proxy/clients.conf
if ! grep -q '^if (\$chroma_token = "' "$clients" 2>/dev/null; then
  echo "auth-proxy: $clients must hold the clients' tokens (chroma-deploy writes it)" >&2
  exit 1
fi
upstream=${CHROMA_UPSTREAM:-chroma:8000}
if [[ ! "$upstream" =~ ^[A-Za-z0-9.-]+:[0-9]+$ ]]; then
  echo "auth-proxy: CHROMA_UPSTREAM must be host:port, not $upstream" >&2
  exit 1
fi
upstream_host=${upstream%:*}
upstream_port=${upstream##*:}
# Chroma's IPv4 address now (Docker's DNS), or nothing while the name does not resolve (a
# Chroma stopped, starting, or cut off from the network). The name is asked as an absolute
# one (a trailing dot): Docker's DNS answers it, and the host's DNS search domains, which
# Docker copies into the container, are never tried (chroma.<site domain> is not Chroma).
resolve_chroma() {
  local name=$upstream_host
  [[ "$name" =~ ^[0-9.]+$ ]] || name="${name%.}."
  getent ahostsv4 "$name" 2>/dev/null | awk 'NR == 1 {print $1}' || true
}
# Where nginx sends requests while Chroma's name does not resolve: nothing listens there,
# so clients get 502 at once (as before image :8, whose nginx asked Docker's DNS per
# request), never whatever container Docker gave Chroma's freed address.
nowhere=127.0.0.1:1
heartbeat=${CHROMA_HEARTBEAT_PATH:-/api/v2/heartbeat}
if [[ ! "$heartbeat" =~ ^/[A-Za-z0-9/_-]+$ ]]; then
  echo "auth-proxy: CHROMA_HEARTBEAT_PATH must be a path, not $heartbeat" >&2
  exit 1
fi
max_bytes=${CHROMA_AUDIT_MAX_BYTES:-10485760}
max_files=${CHROMA_AUDIT_MAX_FILES:-5}
if [[ ! "$max_bytes" =~ ^[0-9]+$ ]] || [[ ! "$max_files" =~ ^[1-9][0-9]*$ ]]; then
  echo "auth-proxy: CHROMA_AUDIT_MAX_BYTES and CHROMA_AUDIT_MAX_FILES must be numbers" >&2
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
    location = /plain-http-refused { internal; access_log off; return 400 \"this port speaks TLS only: use https://\\n\"; }"
fi
# As root (a stack owned by root) with no capabilities, nginx can neither chown its
# temp dirs to another user nor switch users: one process, as root, owning them.
process_lines=""
if [ "$(id -u)" = 0 ]; then
  process_lines="user root root; master_process off;"
fi
mkdir -p /run/nginx
umask 077
# The proxy may start before Chroma (compose starts them together): nginx needs the address.
trap 'exit 143' TERM INT
address=$(resolve_chroma)
if [ -z "$address" ]; then
  echo "auth-proxy: waiting until $upstream_host resolves (Chroma starting?)" >&2
  until [ -n "$address" ]; do
    sleep 1
    address=$(resolve_chroma)
  done
fi
target="$address:$upstream_port"
last=$address
echo "server $target max_fails=0;" >/run/nginx/upstream.conf
# nginx reads a copy: what it loaded stays known (its digest in /run/secrets/proxy/loaded),
# and a reload takes a new file only after nginx -t accepts it (auth-proxy-reload).
cp "$clients" /run/nginx/clients.conf
cat > /run/nginx/nginx.conf <<CONF
$process_lines
worker_processes 1;
pid /run/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  client_body_temp_path /run/nginx/body;
  proxy_temp_path /run/nginx/proxy;
  fastcgi_temp_path /run/nginx/fastcgi;
  uwsgi_temp_path /run/nginx/uwsgi;
  scgi_temp_path /run/nginx/scgi;
  client_max_body_size 256m;
  # The roles (which role each request needs), the audit log's format: static, in the image.
  include /etc/nginx/chroma-deploy-roles.conf;
  access_log /var/log/chroma-proxy/audit.log audit;
  # Chroma's address (the loop below rewrites it when Chroma moves), with idle connections
  # kept for the next requests. max_fails=0: a Chroma that restarts is never skipped. nginx
  # closes an idle one after 4 s, before Chroma would (uvicorn's keep-alive in 0.6 is 5 s),
  # so nginx never sends a request on a connection Chroma is closing.
  upstream chroma_upstream {
    include /run/nginx/upstream.conf;
    keepalive 16;
    keepalive_timeout 4s;
  }
  # Chroma is on a local bridge: a connection that takes longer is not coming.
  proxy_connect_timeout 3s;
  server {
    $listen
    $tls_lines
    # X-Chroma-Token, else Authorization: Bearer (the scheme word in any case). Each client's
    # token is compared exactly, letter case included ("=" in an if): a map's string keys
    # match in any case, which let a token in upper or lower case through.
    set \$chroma_token \$http_x_chroma_token;
    if (\$chroma_token = "") { set \$chroma_token \$bearer_token; }
    set \$client "";
    set \$role "";
    include /run/nginx/clients.conf;
    location = /proxy-health {
      access_log off;
      proxy_pass http://chroma_upstream$heartbeat;
      proxy_http_version 1.1;  # Chroma 0.6 answers HTTP/1.0, nginx's default, with 400
      proxy_set_header Connection "";  # the connection to Chroma is kept for the next
      proxy_set_header Authorization "";
      proxy_set_header X-Chroma-Token "";
      proxy_read_timeout 3s;
    }
    location / {
      if (\$client = "") { return 401 "missing or unknown token\n"; }
      if (\$role_ok = 0) { return 403 "this request needs role \$need; client \$client has role \$role\n"; }
      # While a reload drains (auth-proxy-reload), each answer closes its connection: a
      # kept-alive connection left idle in an old worker would be closed under a request.
      error_page 418 = @draining;
      if (-f /run/nginx/draining) { return 418; }
      proxy_pass http://chroma_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header Authorization "";
      proxy_set_header X-Chroma-Token "";
      proxy_read_timeout 300s;
    }
    location @draining {
      keepalive_timeout 0;
      proxy_pass http://chroma_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header Authorization "";
      proxy_set_header X-Chroma-Token "";
      proxy_read_timeout 300s;
    }
  }
}
CONF
nginx -q -t -c /run/nginx/nginx.conf
/usr/local/bin/auth-proxy-loaded
start_nginx() {
  nginx -e stderr -c /run/nginx/nginx.conf -g 'daemon off;' &
  nginx_pid=$!
}
start_nginx
trap 'kill -TERM "$nginx_pid" 2>/dev/null || true' TERM INT
trap 'kill -QUIT "$nginx_pid" 2>/dev/null || true' QUIT
# The audit log is rotated like the containers' json-file logs: at CHROMA_AUDIT_MAX_BYTES,
# keeping CHROMA_AUDIT_MAX_FILES files (audit.log, audit.log.1, ...), checked every 5 s;
# nginx reopens it (USR1) and loses no line.
audit=/var/log/chroma-proxy/audit.log
# Chroma moved (restarted or recreated on another address of the internal network), or its
# name stopped resolving (then nowhere, above): nginx takes the new target. With a master
# process, by auth-proxy-reload (the same drain as a new clients file: no failed request); as
# root nginx is one process, which cannot reload: it is stopped and started again here (the
# proxy's container stays; the old address is gone anyway). Checked every second: Docker may
# give a stopped Chroma's address to another container at once.
follow_chroma() {
  local now next said
  now=$(resolve_chroma)
  next=${now:+$now:$upstream_port}
  next=${next:-$nowhere}
  if [ "$next" = "$target" ]; then
    return 0
  fi
  # Said of the last address Chroma had (not of nowhere): where it was, and where it is.
  said="Chroma moved from $last to $now"
  [ "$now" = "$last" ] && said="Chroma is back on $now"
  [ "$next" = "$nowhere" ] && said="$upstream_host does not resolve (Chroma stopped?): requests get 502 until it does"
  if [ "$(id -u)" != 0 ]; then
    if /usr/local/bin/auth-proxy-reload upstream "$next"; then
      echo "auth-proxy: $said: nginx reloaded" >&2
      target=$next
      last=${now:-$last}
    fi
    return 0
  fi
  cp /run/nginx/upstream.conf /run/nginx/upstream.conf.old
  echo "server $next max_fails=0;" >/run/nginx/upstream.conf
  if ! nginx -q -t -c /run/nginx/nginx.conf; then
    mv -f /run/nginx/upstream.conf.old /run/nginx/upstream.conf
    return 0
  fi
  kill -QUIT "$nginx_pid" 2>/dev/null || true
  wait "$nginx_pid" || true
  start_nginx
  echo "auth-proxy: $said: nginx restarted" >&2
  target=$next
  last=${now:-$last}
}
turn=0
while kill -0 "$nginx_pid" 2>/dev/null; do
  turn=$((turn + 1))
  size=0
  [ $((turn % 5)) = 0 ] && size=$(stat -c %s "$audit" 2>/dev/null || echo 0)
  if [ "$size" -ge "$max_bytes" ] && [ "$max_bytes" -gt 0 ]; then
    if [ "$max_files" -le 1 ]; then
      : >"$audit"
    else
      rm -f "$audit.$((max_files - 1))"
      for ((i = max_files - 2; i >= 1; i--)); do
        [ -e "$audit.$i" ] && mv -f "$audit.$i" "$audit.$((i + 1))"
      done
      mv -f "$audit" "$audit.1"
      nginx -q -s reopen -c /run/nginx/nginx.conf || true
    fi
  fi
  follow_chroma
  sleep 1 &
  wait $! || true
done
set +e
wait "$nginx_pid"
exit $?
ENTRYPOINT
cat >"$ctx/reload.sh" <<'RELOAD'
#!/bin/bash
# A new clients file (or certificate) reaches nginx: copied, checked by nginx -t, then a
# graceful reload (new workers take it, the old ones finish their requests). A file nginx
# refuses leaves the loaded one in place, and this exits 1. For a second before and after
# the reload every answer closes its connection (/run/nginx/draining): an old worker
# closes its idle kept-alive connections when it stops, and a request a client sent on one
# at that moment would get no answer (seen: 1 in 3,500 with httpx, 4 in 9,400 with
# http.client, 4 threads back to back, before this drain).
# `auth-proxy-reload upstream ADDRESS:PORT` (the entrypoint's loop, when Chroma moved)
# loads that address for Chroma the same way. One reload at a time (a lock).
set -euo pipefail
umask 077
what=clients.conf
label="clients file"
line=""
if [ "${1:-}" = upstream ]; then
  if [[ ! "${2:-}" =~ ^[0-9.]+:[0-9]+$ ]]; then
    echo "auth-proxy-reload: upstream needs ADDRESS:PORT, not ${2:-nothing}" >&2
    exit 2
  fi
  what=upstream.conf
  label="address for Chroma"
  line="server $2 max_fails=0;"
fi
exec 9>/run/nginx/reload.lock
flock 9
trap 'rm -f /run/nginx/draining' EXIT
: >/run/nginx/draining
sleep 1
cp "/run/nginx/$what" "/run/nginx/$what.old"
if [ "$what" = upstream.conf ]; then
  echo "$line" >"/run/nginx/$what.new"
else
  cp /run/secrets/proxy/clients.conf "/run/nginx/$what.new"
fi
mv -f "/run/nginx/$what.new" "/run/nginx/$what"
if ! nginx -q -t -c /run/nginx/nginx.conf; then
  mv -f "/run/nginx/$what.old" "/run/nginx/$what"
  echo "auth-proxy-reload: nginx does not accept the new $label; the loaded one stays" >&2
  exit 1
fi
nginx -q -s reload -c /run/nginx/nginx.conf
/usr/local/bin/auth-proxy-loaded
sleep 1
RELOAD
cat >"$ctx/loaded.sh" <<'LOADED'
#!/bin/bash
# Writes the digest of the clients file nginx loaded (its sha256, as the deploy computes
# the file's) where the host reads it: /run/secrets/proxy/loaded. Never a token.
set -euo pipefail
umask 077
sha256sum /run/nginx/clients.conf | cut -d' ' -f1 >/run/secrets/proxy/.loaded.new
mv -f /run/secrets/proxy/.loaded.new /run/secrets/proxy/loaded
LOADED
cat >"$ctx/roles.conf" <<'ROLES'
# Which role a request needs (docs/security.md, "Clients and roles"), from its method and
# the path as the client sent it ($request_uri: what Chroma routes on, not nginx's decoded
# $uri). Anything not listed needs admin. Regular expressions match letter case exactly.
# Chroma 1.x and 0.6 serve the same /api/v2 paths (read from each image's /openapi.json).
map "$request_method $request_uri" $need {
  default admin;
  "~^(GET|HEAD) /api/v2/" read;
  "~^POST /api/v2/tenants/[^/?]+/databases/[^/?]+/collections/[^/?]+/(get|query|count|search)(\?|$)" read;
  "~^POST /api/v2/tenants/[^/?]+/databases/[^/?]+/collections/[^/?]+/(add|update|upsert|delete|fork)(\?|$)" write;
  "~^POST /api/v2/tenants/[^/?]+/databases/[^/?]+/collections(\?|$)" write;
  "~^(PUT|DELETE) /api/v2/tenants/[^/?]+/databases/[^/?]+/collections/[^/?]+(\?|$)" write;
}
# Whether the client's role covers it: read < write < admin.
map "$role:$need" $role_ok {
  default 0;
  "read:read" 1;
  "write:read" 1;
  "write:write" 1;
  "admin:read" 1;
  "admin:write" 1;
  "admin:admin" 1;
}
# The token of Authorization: Bearer, the scheme word in any case, the token as sent.
map $http_authorization $bearer_token {
  default "";
  "~*^bearer +(?<bearer>.+)$" $bearer;
}
# One JSON line per request: who (the client's name, never its token), with which role,
# what, the answer, its size and time, from where.
log_format audit escape=json '{"time":"$time_iso8601","client":"$client","role":"$role",'
  '"method":"$request_method","path":"$request_uri","status":$status,'
  '"bytes":$body_bytes_sent,"duration":$request_time,"remote":"$remote_addr"}';
ROLES
cat >"$ctx/health.sh" <<'HEALTH'
#!/bin/bash
# The proxy's healthcheck: Chroma's heartbeat through this proxy, as clients ask it
# (over TLS, checked with the CA for the certificate's name, when CHROMA_TLS=on).
# Chroma's name must resolve first: one that does not (Chroma stopped, or cut off from
# the internal network) fails at once, as nginx's own lookup of it did before image :8,
# rather than after nginx's 3 s attempt to reach the address it last had.
set -euo pipefail
upstream=${CHROMA_UPSTREAM:-chroma:8000}
name=${upstream%:*}
[[ "$name" =~ ^[0-9.]+$ ]] || name="${name%.}."  # absolute, as the entrypoint asks it
getent ahostsv4 "$name" >/dev/null
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
COPY reload.sh /usr/local/bin/auth-proxy-reload
COPY loaded.sh /usr/local/bin/auth-proxy-loaded
COPY roles.conf /etc/nginx/chroma-deploy-roles.conf
RUN chmod 0755 /usr/local/bin/auth-proxy /usr/local/bin/auth-proxy-health \\
      /usr/local/bin/auth-proxy-reload /usr/local/bin/auth-proxy-loaded \\
 && chmod 0644 /etc/nginx/chroma-deploy-roles.conf
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/auth-proxy"]
DOCKERFILE
add_host=()
[ -n "$mirror_ip" ] && add_host=(--add-host "$mirror_host:$mirror_ip")
mkdir -p "$work"
DOCKER_BUILDKIT=0 docker build --quiet "${add_host[@]}" -t "$tag" "$ctx" >"$work/build-proxy.log" 2>&1 \
  || { tail -n 30 "$work/build-proxy.log" >&2; exit 1; }
echo "image $tag built from Debian's nginx"
