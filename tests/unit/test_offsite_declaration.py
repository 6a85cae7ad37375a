"""declaration/offsite.py: the files a repository puts on the host, and what they never show."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from declaration.offsite import OffsiteSecrets, offsite_target
from declaration.resources import Declared
from declaration.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "files"))

import chroma_restic

PASSWORD = "correct horse battery staple"
KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
SFTP = {
    "chroma_project_dir": "/srv/kb/stack",
    "chroma_backup_repository": "sftp:backup@vault.example:/srv/restic/kb",
    "chroma_backup_password_file": "/etc/kb/restic-password",
    "chroma_backup_ssh_key": "/etc/kb/restic-ssh-key",
    "chroma_backup_known_hosts": "/etc/kb/restic-known-hosts",
}


def target(data=None, **secrets):
    settings = load_settings(data or SFTP)
    values = {"repository": settings.backup_repository, "password": PASSWORD + "\n", **secrets}
    return settings, offsite_target(
        settings, 1000, 1001, "db1", "/run/lock/chroma-deploy/x", OffsiteSecrets(**values)
    )


def test_the_config_has_the_keys_chroma_restic_documents_and_names_the_files():
    _, offsite = target(ssh_key=KEY, known_hosts="vault.example ssh-ed25519 AAAA\n")
    config = json.loads(offsite.config.content)
    listed = chroma_restic.__doc__.split("The config's keys")[1].split("::", 1)[1]
    listed = re.sub(r"\{[^}]*\}|\(or null\)", "", listed)
    assert set(config) == {word.strip(" ,:") for word in listed.split() if word.strip(" ,:")}
    named = [config[key] for key in ("repository_file", "password_file", "ssh_key", "known_hosts")]
    assert sorted(named) == sorted(f.path for f in offsite.secrets)
    assert {(f.uid, f.gid, f.mode) for f in offsite.files} == {(1000, 1001, "600")}
    assert offsite.directory.mode == "700"
    assert config["host"] == "db1"


def test_a_local_repository_ships_no_key_and_no_known_hosts():
    local = {"chroma_project_dir": "/srv/kb/stack", "chroma_backup_repository": "/mnt/backup/kb",
             "chroma_backup_password_file": "/etc/kb/restic-password"}  # fmt: skip
    _, offsite = target(local)
    config = json.loads(offsite.config.content)
    assert (config["ssh_key"], config["known_hosts"]) == (None, None)
    assert [Path(f.path).name for f in offsite.secrets] == ["restic-repository", "restic-password"]


def test_the_password_file_holds_the_password_alone_whatever_the_control_file_ends_with():
    _, offsite = target(password=PASSWORD + "\n\n")
    password = next(f for f in offsite.secrets if f.path.endswith("restic-password"))
    assert password.content == PASSWORD + "\n"


def test_no_secret_in_any_repr_and_the_secrets_are_declared_paths():
    settings, offsite = target(ssh_key=KEY, known_hosts="vault.example ssh-ed25519 AAAA\n")
    declared = Declared(settings, 1000, 1001, None, offsite)
    for shown in (repr(offsite), repr(declared), repr(offsite.secrets), repr(declared.paths)):
        assert PASSWORD not in shown and "b3BlbnNzaC1rZXkt" not in shown
    assert set(offsite.resources) <= set(declared.paths)
    assert all(f.secret for f in offsite.files)
