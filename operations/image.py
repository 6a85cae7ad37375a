"""The Chroma server image on the host: used if present, else pulled, built or shipped.

Many hosts reach a Python package index but no container registry. For them
`build` makes the image from the `chromadb` wheel (files/build-chroma-image.sh)
and tags it with the official name, so the compose file is the same either way.
Hosts that reach neither get the control machine's image: `ship` exports it once
(`docker save`, gzip, cached by image id), uploads it over the SSH connection and
loads it, so a fleet is built or pulled once, on the machine that runs pyinfra.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import (
    FileUploadCommand,
    FunctionCommand,
    OperationValueError,
    operation,
)

from declaration.targets import StackTarget
from facts.compose import ComposeStack
from facts.docker import DockerImage
from operations.host_failure import log_failure
from plumbing import host_state
from plumbing.refusal import refusal
from plumbing.report import step

FILES_DIR = Path(__file__).resolve().parent.parent / "files"
BUILD_SCRIPT = FILES_DIR / "build-chroma-image.sh"
# The stages of files/build-chroma-image.sh, with what a first build spends on each.
BUILD_STEPS = (
    ("base", "a Debian base image with debootstrap (about 1.5 minutes, once per host)"),
    ("wheels", "the chromadb wheels from PyPI (about a minute)"),
    ("image", "docker build (under a minute)"),
)
PROXY_BUILD_SCRIPT = FILES_DIR / "build-proxy-image.sh"


def ship_cache_dir() -> Path:
    """Where exported images wait on the control machine: one file per image id."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "chroma-deploy" / "images"


def ship_archive(image_id: str) -> Path:
    """The cached export of one image id (content-addressed, so never stale)."""
    return ship_cache_dir() / f"{image_id.removeprefix('sha256:')}.tar.gz"


class ShipError(Exception):
    """The control machine cannot provide the image to ship (message names why)."""


@functools.cache
def _control_image_id(ref: str) -> str:
    """The id ``ref`` names in the control machine's engine; asked once per run."""
    docker = shutil.which("docker")
    if docker is None:
        raise ShipError("the control machine has no docker command; install Docker there")
    found = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if found.returncode == 0 and found.stdout.strip():
        return found.stdout.strip()
    reason = (found.stderr.strip().splitlines() or ["no output"])[-1]
    if "no such image" in reason.lower():
        raise ShipError(
            f"the control machine has no image {ref}; build or pull it there first "
            "(scripts/up.sh builds it)"
        )
    raise ShipError(f"the control machine's Docker did not answer ({reason})")


def control_image_id(ref: str, source: str) -> str | None:
    """For ``chroma_image_source=ship``: the image id this run ships; else None.

    Checked before any host changes, so a control machine without Docker or
    without the image stops the run with one line naming the host and the key.
    """
    if source != "ship":
        return None
    try:
        return _control_image_id(ref)
    except ShipError as error:
        raise refusal(host.name, f"chroma_image_source: ship, but {error}") from None


_export_lock = threading.Lock()  # a gevent lock under pyinfra: hosts wait, one exports


def export_image(state: Any, host: Any, ref: str, image_id: str) -> bool:
    """Run on the control machine: ``docker save`` ``ref`` into the cache, once per id.

    Hosts shipping in parallel share one export (a lock, then the file exists).
    The archive is written aside and renamed, so an interrupted export leaves no
    file that looks complete; the id is checked again after the save, so a tag
    that moved meanwhile is not shipped under the old id's name.
    """
    archive = ship_archive(image_id)
    with _export_lock:
        if archive.is_file():
            return True
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_name(f"{archive.name}.{os.getpid()}.partial")
        saved = subprocess.run(
            ["bash", "-c", 'set -o pipefail; docker save "$1" | gzip -1 > "$2"', "save", ref,
             str(partial)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        _control_image_id.cache_clear()
        try:
            moved = _control_image_id(ref) != image_id
        except ShipError:
            moved = True
        if saved.returncode != 0 or moved:
            partial.unlink(missing_ok=True)
            reason = saved.stderr.strip() or f"{ref} now names another image than {image_id}"
            return log_failure(
                state, host, f"exporting {ref} on the control machine failed: {reason}"
            )
        partial.rename(archive)
    return True


def log_upload(state: Any, host: Any, image_id: str) -> bool:
    """Say how much is about to go over the connection, once the export exists."""
    archive = ship_archive(image_id)
    size = archive.stat().st_size / 1e6 if archive.is_file() else 0.0
    host.log(f"uploading {size:.0f} MB, then docker load")
    return True


def _pull(ref: str, fallback: str) -> str:
    failed = shlex.join(["echo", f"no registry answered for {ref}: {fallback}"])
    return f"{shlex.join(['docker', 'pull', '--quiet', ref])} || {{ {failed} >&2; exit 1; }}"


def _ship(ref: str, present_id: str | None, image_id: str):
    """Commands that put the control machine's image ``image_id`` on the host as ``ref``.

    ``present_id``: the id ``ref`` names on the host now (None: absent).
    """
    if present_id == image_id:
        host.noop(f"image {ref} is present ({image_id[:19]}), the control machine's")
        return
    archive = ship_archive(image_id)
    remote = f"/var/tmp/chroma-deploy-{archive.name}"  # hex digits only: nothing to quote
    yield step(f"shipping {ref} ({image_id[:19]}) from the control machine: export once")
    yield FunctionCommand(export_image, (ref, image_id), {})
    yield FunctionCommand(log_upload, (image_id,), {})
    yield FileUploadCommand(str(archive), remote)
    # The upload is removed whether or not the load worked: it is only a copy.
    load = shlex.join(["docker", "load", "--quiet", "--input", remote])
    remove = shlex.join(["rm", "-f", remote])
    yield f"{load}; status=$?; {remove}; exit $status"


@operation()
def chroma_image(
    stack: StackTarget, version: str, source: str, build_dir: str, ship_id: str | None = None
):
    """Make sure the stack's Chroma image (``stack.image``) exists on the host.

    + stack: the compose project and its image reference, e.g. chromadb/chroma:1.5.9;
      the stack's read (ComposeStack) inspects the image too: one docker CLI start for
      the stack and its image, on every run of every host
    + version: the chromadb release to build when building
    + source: pull, build, auto (pull, else build) or ship
    + build_dir: where a build keeps its rootfs and wheels on the host
    + ship_id: with ship, the control machine's image id (``control_image_id``):
      shipped unless the host's image is that very id
    """
    ref = stack.image
    present_id = host_state.read(ComposeStack, **stack.read)["image_id"]
    if source == "ship":
        if not ship_id:
            raise OperationValueError(f"{host.name}: chroma_image_source=ship needs ship_id")
        yield from _ship(ref, present_id, ship_id)
        return
    if present_id:
        host.noop(f"image {ref} is present ({present_id[:19]})")
        return

    script = f"{build_dir}/build-chroma-image.sh"

    if source in ("build", "auto"):
        yield shlex.join(["mkdir", "-p", build_dir])
        yield FileUploadCommand(str(BUILD_SCRIPT), script)

    if source == "pull":
        yield step(f"pulling {ref}")
        yield _pull(ref, "set chroma_image_source=build to build it from the chromadb wheel")
    elif source in ("build", "auto"):
        if source == "auto":
            yield step(f"pulling {ref}; with no registry, it is built from the chromadb wheel")
            news = f"no registry answered for {ref}: building it from the chromadb {version} wheel"
            pull = shlex.join(["docker", "pull", "--quiet", ref])
            yield f"{pull} 2>/dev/null || {shlex.join(['echo', news])}"
        # Three commands, so the run says which step it is in; each one is nothing to
        # do once the image is there (a pull that worked, or an earlier run).
        for number, (stage, what) in enumerate(BUILD_STEPS, start=1):
            yield step(f"building {ref}: step {number} of {len(BUILD_STEPS)}, {what}")
            yield shlex.join(["bash", script, version, build_dir, stage])
    else:
        raise OperationValueError(
            f"{host.name}: chroma_image_source={source!r} is not allowed: "
            "use pull, build, auto or ship"
        )


@operation()
def proxy_image(ref: str, build_dir: str):
    """The auth proxy's image: built on the host from Debian's nginx when missing.

    + ref: image reference, e.g. chroma-deploy/auth-proxy:4
    + build_dir: where the build script is put on the host
    """
    image = host_state.read(DockerImage, ref=ref)
    if image:
        host.noop(f"image {ref} is present ({image['id'][:19]})")
        return
    script = f"{build_dir}/build-proxy-image.sh"
    yield shlex.join(["mkdir", "-p", build_dir])
    yield FileUploadCommand(str(PROXY_BUILD_SCRIPT), script)
    yield step(f"building {ref} from Debian's nginx")
    yield shlex.join(["bash", script, ref, build_dir])
