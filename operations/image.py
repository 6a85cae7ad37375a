"""The Chroma server image on the host: used if present, else pulled or built.

Many hosts reach a Python package index but no container registry. For them
`build` makes the image from the `chromadb` wheel (files/build-chroma-image.sh)
and tags it with the official name, so the compose file is the same either way.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationValueError, operation

from facts.docker import DockerImage

FILES_DIR = Path(__file__).resolve().parent.parent / "files"
BUILD_SCRIPT = FILES_DIR / "build-chroma-image.sh"
PROXY_BUILD_SCRIPT = FILES_DIR / "build-proxy-image.sh"


def _pull(ref: str, fallback: str) -> str:
    return (
        f"docker pull --quiet {shlex.quote(ref)} "
        f"|| {{ echo 'no registry answered for {ref}: {fallback}' >&2; exit 1; }}"
    )


@operation()
def chroma_image(ref: str, version: str, source: str, build_dir: str):
    """Make sure the image ``ref`` exists on the host.

    + ref: image reference, e.g. chromadb/chroma:1.5.9
    + version: the chromadb release to build when building
    + source: pull, build, auto (pull, else build) or ship
    + build_dir: where a build keeps its rootfs and wheels on the host
    """
    image = host.get_fact(DockerImage, ref=ref)
    if image:
        host.noop(f"image {ref} is present ({image['id'][:19]})")
        return

    script = f"{build_dir}/build-chroma-image.sh"
    build = f"bash {shlex.quote(script)} {shlex.quote(version)} {shlex.quote(build_dir)}"

    if source in ("build", "auto"):
        yield f"mkdir -p {shlex.quote(build_dir)}"
        yield FileUploadCommand(str(BUILD_SCRIPT), script)

    if source == "pull":
        yield _pull(ref, "set chroma_image_source=build to build it from the chromadb wheel")
    elif source == "build":
        yield build
    elif source == "auto":
        yield (
            f"docker pull --quiet {shlex.quote(ref)} 2>/dev/null "
            f"|| {{ echo 'no registry answered for {ref}: building it from the chromadb wheel'; "
            f"{build}; }}"
        )
    else:
        raise OperationValueError(
            f"chroma_image_source={source!r} is not supported on {host.name} yet: "
            "use pull, build or auto"
        )


@operation()
def proxy_image(ref: str, build_dir: str):
    """The auth proxy's image: built on the host from Debian's nginx when missing.

    + ref: image reference, e.g. chroma-deploy/auth-proxy:1
    + build_dir: where the build script is put on the host
    """
    image = host.get_fact(DockerImage, ref=ref)
    if image:
        host.noop(f"image {ref} is present ({image['id'][:19]})")
        return
    script = f"{build_dir}/build-proxy-image.sh"
    yield f"mkdir -p {shlex.quote(build_dir)}"
    yield FileUploadCommand(str(PROXY_BUILD_SCRIPT), script)
    yield f"bash {shlex.quote(script)} {shlex.quote(ref)} {shlex.quote(build_dir)}"
