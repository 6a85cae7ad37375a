"""Off-host backups (#23): the restic repository the deploy declares, over real sftp and sshd.

The repository host is tests/harness/sftp_repository.py's container (real sshd,
key auth, pinned host key); restic is Debian's 0.14, run by the deploy on this
machine (@local) and by the test to read the repository independently.
"""

from __future__ import annotations

import dataclasses

import pytest

from files import chroma_restic

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_the_test_repository_host_pins_its_key_and_tells_faults_apart(sftp_repository, tmp_path):
    """The harness itself: restic opens it with the key, and each fault reads as its own."""
    from harness.sftp_repository import SftpRepository

    password = tmp_path / "password"
    password.write_text("correct horse\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("battery staple\n")
    assert chroma_restic.verdict(sftp_repository.restic(password, "cat", "config")) == (
        "no repository"
    )
    assert chroma_restic.verdict(sftp_repository.restic(password, "init")) == "ok"
    assert sftp_repository.exists()
    assert chroma_restic.verdict(sftp_repository.restic(password, "cat", "config")) == "ok"
    assert chroma_restic.verdict(sftp_repository.restic(wrong, "cat", "config")) == (
        "wrong password"
    )
    server = sftp_repository.server
    other_key = dataclasses.replace(server, known_hosts=server.wrong_known_hosts)
    moved = SftpRepository(other_key, sftp_repository.path)
    assert chroma_restic.verdict(moved.restic(password, "cat", "config")) == "host key"
