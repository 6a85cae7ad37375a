"""chroma_image_source=ship on the control machine: the image id, the errors, the export.

A fake `docker` on PATH stands in for the engine: it answers `image inspect` with
an id and logs every `save`, so these tests need no Docker.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyinfra.context import ctx_host

from operations import image
from plumbing.refusal import Refusal

REF = "chromadb/chroma:1.5.9"
IMAGE_ID = "sha256:" + "ab" * 32


class FakeHost:
    name = "db1.example.com"

    def __init__(self) -> None:
        self.logged: list[str] = []

    def log_styled(self, message: str, **_: object) -> None:
        self.logged.append(message)


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fake docker first on PATH and a private cache; returns the log of saves."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    saves = tmp_path / "saves.log"
    (bin_dir / "docker").write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            case "$1 $2" in
              "image inspect")
                [ -f {tmp_path}/id ] || {{ echo "Error: No such image: $5" >&2; exit 1; }}
                cat {tmp_path}/id ;;
              "save "*) echo "$*" >>{saves}; printf 'image tarball' ;;
              *) exit 2 ;;
            esac
            """
        )
    )
    (bin_dir / "docker").chmod(0o755)
    (tmp_path / "id").write_text(IMAGE_ID + "\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    image._control_image_id.cache_clear()
    yield saves
    image._control_image_id.cache_clear()


def test_other_sources_ask_the_control_machine_nothing(monkeypatch):
    monkeypatch.setattr(image.shutil, "which", lambda _: pytest.fail("docker was looked up"))
    assert image.control_image_id(REF, "pull") is None


def test_ship_reads_the_image_id_once_per_run(control):
    with ctx_host.use(FakeHost()):
        assert image.control_image_id(REF, "ship") == IMAGE_ID
        (control.parent / "id").unlink()  # cached: not asked again for the next host
        assert image.control_image_id(REF, "ship") == IMAGE_ID


def test_ship_without_docker_on_the_control_machine_is_one_line(monkeypatch):
    monkeypatch.setattr(image.shutil, "which", lambda _: None)
    image._control_image_id.cache_clear()
    with ctx_host.use(FakeHost()), pytest.raises(Refusal) as error:
        image.control_image_id(REF, "ship")
    assert str(error.value) == (
        "db1.example.com: chroma_image_source: ship, but the control machine has no docker "
        "command; install Docker there"
    )


def test_ship_without_the_image_on_the_control_machine_is_one_line(control):
    (control.parent / "id").unlink()
    with ctx_host.use(FakeHost()), pytest.raises(Refusal) as error:
        image.control_image_id(REF, "ship")
    assert str(error.value) == (
        "db1.example.com: chroma_image_source: ship, but the control machine has no image "
        f"{REF}; build or pull it there first (scripts/up.sh builds it)"
    )


def test_export_happens_once_per_image_id_and_leaves_no_partial_file(control):
    host = FakeHost()
    assert image.export_image(None, host, REF, IMAGE_ID)
    assert image.export_image(None, host, REF, IMAGE_ID)
    archive = image.ship_archive(IMAGE_ID)
    assert archive.name == "ab" * 32 + ".tar.gz"
    assert archive.read_bytes()[:2] == b"\x1f\x8b"  # gzip: docker load reads it as is
    assert control.read_text().splitlines() == [f"save {REF}"]
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]


def test_a_tag_that_moved_during_the_export_is_not_cached_under_the_old_id(control):
    (control.parent / "id").write_text("sha256:" + "cd" * 32 + "\n")
    host = FakeHost()
    assert not image.export_image(None, host, REF, IMAGE_ID)
    assert not image.ship_archive(IMAGE_ID).parent.exists() or not any(
        image.ship_archive(IMAGE_ID).parent.iterdir()
    )
    assert "now names another image" in host.logged[0]
