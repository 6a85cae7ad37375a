#!/usr/bin/env bash
# Build a Chroma server image from the `chromadb` wheel on PyPI, for hosts that
# reach a Python package index but no container registry.
#
# The result is tagged with the official name (chromadb/chroma:VERSION) and
# mirrors the official image in every way chroma-deploy relies on:
#   1.x: ENTRYPOINT dumb-init -- chroma, CMD run /config.yaml, /config.yaml says
#        persist_path "/data", runs as root, no curl/wget/python on PATH.
#   0.x: WORKDIR /chroma, uvicorn chromadb.app:app, data in /chroma/chroma, curl present.
#
# Every step first checks whether its result exists, so a second run costs
# well under a second.  Usage: build-chroma-image.sh VERSION [WORK_DIR] [STAGE]
# STAGE (base, wheels or image; default all) runs that step alone, so a deploy
# can say "build step k of 3" as each one starts.
set -euo pipefail

version=${1:?usage: build-chroma-image.sh VERSION [WORK_DIR] [STAGE]}
work=${2:-/var/cache/chroma-deploy/image-build}
stage=${3:-all}
tag="chromadb/chroma:${version}"
base_tag="chroma-deploy/debian-base:bookworm"

case "$version" in
  [0-9]*.[0-9]*.[0-9]*) ;;
  *) echo "build-chroma-image: version must look like 1.5.9, got '$version'" >&2; exit 64 ;;
esac

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "image $tag present"
  exit 0
fi

mkdir -p "$work"
export DEBIAN_FRONTEND=noninteractive

# The Debian mirror this host already uses (deb822 or one-line sources).
mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
mirror=${mirror:-http://deb.debian.org/debian}

wants() { [ "$stage" = all ] || [ "$stage" = "$1" ]; }

# 1. A minimal Debian base image, made without any registry.
if wants base && ! docker image inspect "$base_tag" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
  rootfs="$work/rootfs"
  if [ ! -x "$rootfs/usr/bin/python3" ]; then
    rm -rf "$rootfs.partial"
    debootstrap --variant=minbase \
      --include=python3,python3-venv,ca-certificates,curl,dumb-init,bash \
      bookworm "$rootfs.partial" "$mirror" >"$work/debootstrap.log" 2>&1 \
      || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs.partial/var/cache/apt/archives"/*.deb "$rootfs.partial/var/lib/apt/lists"/*
    mv "$rootfs.partial" "$rootfs"
  fi
  tar -C "$rootfs" --numeric-owner -c . | docker import - "$base_tag" >/dev/null
fi

# 2. Wheels, built on the host where pip already trusts the network.
case "$version" in
  0.5.*) extra="fastapi<0.116" ;;   # newer FastAPI answers 422 to the 0.5 client
  *) extra="" ;;
esac
wheels="$work/wheels-$version"
if wants wheels && [ ! -f "$wheels/.complete" ]; then
  python3 -m pip --version >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-pip; }
  rm -rf "$wheels"
  # shellcheck disable=SC2086
  python3 -m pip wheel --quiet --wheel-dir "$wheels" "chromadb==$version" $extra
  touch "$wheels/.complete"
fi

# 3. The image itself (legacy builder: engines from distributions lack BuildKit).
if ! wants image; then
  exit 0
fi
ctx="$work/context-$version"
# Multi-stage: the wheels are copied into the build stage only, so the image does
# not carry them (111 MB of 1.5.9's 578 MB before). The label names this recipe.
revision_label="org.chroma-deploy.image-recipe=2"
rm -rf "$ctx"
mkdir -p "$ctx"
ln "$wheels"/*.whl "$ctx"/ 2>/dev/null || cp "$wheels"/*.whl "$ctx"/
case "$version" in
  0.*)
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $base_tag AS venv
COPY *.whl /tmp/wheels/
RUN python3 -m venv /opt/chroma \\
 && /opt/chroma/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels "chromadb==$version" $extra
FROM $base_tag
COPY --from=venv /opt/chroma /opt/chroma
LABEL $revision_label
ENV PATH=/opt/chroma/bin:\$PATH IS_PERSISTENT=TRUE PERSIST_DIRECTORY=/chroma/chroma ANONYMIZED_TELEMETRY=False
WORKDIR /chroma
EXPOSE 8000
CMD ["uvicorn", "chromadb.app:app", "--host", "0.0.0.0", "--port", "8000", "--workers", "1"]
DOCKERFILE
    ;;
  *)
    # The interpreter is copied into a private venv and the system python
    # removed, so that, like the official image, no python, curl or wget is
    # on PATH; the healthcheck must then work with bash alone.
    # `chroma` is the wheel's Rust CLI, started as the official image's binary is:
    # the wheel's own `chroma` script imports the whole chromadb Python package
    # first (1.2-1.5 s of CPU before the server starts, measured on 2 cores) only
    # to hand sys.argv to the same Rust entry point (chromadb/cli/cli.py, app()).
    cat >"$ctx/chroma-launcher" <<'LAUNCHER'
#!/opt/chroma/bin/python3
import sys

import chromadb_rust_bindings

try:
    chromadb_rust_bindings.cli(sys.argv)
except KeyboardInterrupt:
    pass
LAUNCHER
    chmod 0755 "$ctx/chroma-launcher"
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $base_tag AS venv
COPY *.whl /tmp/wheels/
RUN python3 -m venv --copies /opt/chroma \\
 && /opt/chroma/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels "chromadb==$version" \\
 && /opt/chroma/bin/pip uninstall -y -q kubernetes onnxruntime hf-xet pip || true
FROM $base_tag
COPY --from=venv /opt/chroma /opt/chroma
COPY chroma-launcher /usr/local/bin/chroma
LABEL $revision_label
RUN dpkg --purge curl \\
 && rm -f /usr/bin/python3* /usr/bin/python \\
 && printf 'persist_path: "/data"\\n' > /config.yaml
EXPOSE 8000
ENTRYPOINT ["dumb-init", "--", "chroma"]
CMD ["run", "/config.yaml"]
DOCKERFILE
    ;;
esac
DOCKER_BUILDKIT=0 docker build --quiet -t "$tag" "$ctx" >"$work/build-$version.log" 2>&1 \
  || { tail -n 30 "$work/build-$version.log" >&2; exit 1; }
rm -rf "$ctx"
echo "image $tag built from the chromadb $version wheel"
