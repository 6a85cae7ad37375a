"""Off-host backups (#23): the restic repository the deploy declares, over real sftp and sshd.

The repository host is tests/harness/sftp_repository.py's container (real sshd,
key auth, pinned host key); restic is Debian's 0.14, run by the deploy on this
machine (@local) and by the test to read the repository independently. One
converged stack with a few records is shared: each refusal changes nothing, and
each test checks so (records, files, the stack serving) before the next one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DeployRun,
    base_data,
    converge,
    read_records,
    run_deploy,
    run_drift,
    sh,
    stat,
    wait_for_heartbeat,
    write_records,
)

from declaration.offsite import CONFIG, RESTIC_DIR
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


@dataclass
class Stack:
    """The shared project: its data, its repository, the control machine's secret files."""

    project_dir: Path
    data: dict[str, Any]
    repository: Any  # harness.sftp_repository.SftpRepository
    password: Path
    first: DeployRun
    records: dict[str, list[str]]

    @property
    def restic_dir(self) -> Path:
        return self.project_dir / RESTIC_DIR

    def host_files(self) -> dict[str, bytes]:
        """The secrets and offsite.json as the host has them now."""
        files = [*sorted(self.restic_dir.iterdir()), self.project_dir / CONFIG]
        return {path.name: path.read_bytes() for path in files}

    def serving_unchanged(self) -> None:
        """The stack serves the records it held, from the compose file the deploy wrote."""
        wait_for_heartbeat(self.data["chroma_port"])
        assert read_records(self.data["chroma_port"]) == self.records


@pytest.fixture(scope="module")
def stack(sftp_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from harness.sftp_repository import new_repository

    name = f"cdtest{uuid.uuid4().hex[:8]}"
    base = tmp_path_factory.mktemp(name)
    project_dir = base / "stack"
    repository = new_repository(sftp_server)
    password = base / "control" / "restic-password"
    password.parent.mkdir()
    password.write_text(secrets.token_urlsafe(24) + "\n")
    data = base_data(project_dir, name, **repository.settings(password))
    try:
        first = converge(data, None, "-vvv")
        records = write_records(data["chroma_port"], ("manuals",), per_collection=40)
        yield Stack(project_dir, data, repository, password, first, records)
    finally:
        sh(f"cd '{project_dir}' && docker compose down --timeout 5", check=False)
        sh(
            f"docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={name}) "
            "2>/dev/null || true",
            check=False,
        )
        repository.remove()
        shutil.rmtree(base, ignore_errors=True)


def _documented_config_keys() -> set[str]:
    """The keys files/chroma_restic.py's docstring lists for offsite.json."""
    listed = chroma_restic.__doc__.split("The config's keys")[1].split("::", 1)[1]
    listed = re.sub(r"\{[^}]*\}|\(or null\)", "", listed)
    return {word.strip(" ,:") for word in listed.split() if word.strip(" ,:")}


def _secrets_in(output: str, *files: Path) -> list[str]:
    """Which of the control machine's secret files show up in ``output`` (none may)."""
    found = []
    for path in files:
        text = path.read_text().strip()
        lines = [line for line in text.splitlines() if len(line) > 20 and "PRIVATE KEY" not in line]
        if text in output or any(line in output for line in lines):
            found.append(path.name)
    return found


def _refusals(run: DeployRun) -> list[str]:
    return [line.strip() for line in run.output.splitlines() if line.strip().startswith("@local: ")]


def test_converge_creates_the_repository_and_ships_its_secrets_0600(stack: Stack):
    assert stack.repository.exists()
    opened = stack.repository.restic(stack.password, "cat", "config")
    assert chroma_restic.verdict(opened) == "ok", opened.stderr
    # The secrets, each as the control machine has it, 0600 in a 0700 dir.
    assert stat(stack.restic_dir)[2] == "700"
    server = stack.repository.server
    shipped = {
        "restic-repository": stack.repository.url + "\n",
        "restic-password": stack.password.read_text(),
        "restic-ssh-key": server.key.read_text(),
        "restic-known-hosts": server.known_hosts.read_text(),
    }
    for name, content in shipped.items():
        assert (stack.restic_dir / name).read_text() == content
        assert stat(stack.restic_dir / name)[2] == "600"
    config_path = stack.project_dir / CONFIG
    assert stat(config_path)[2] == "600"
    config = json.loads(config_path.read_text())
    assert set(config) == _documented_config_keys()
    assert config["host"] == socket.gethostname()  # @local is no machine's name
    assert config["project_name"] == stack.data["chroma_compose_project"]
    assert Path(config["password_file"]).read_text() == stack.password.read_text()
    # The host's own files open the repository (as the backup program will read them).
    host_view = chroma_restic.run_restic(chroma_restic.Offsite.load(str(config_path)), "snapshots")
    assert chroma_restic.verdict(host_view) == "ok", host_view.stderr
    # Nothing secret in any command pyinfra ran or printed (-vvv shows them all).
    assert "chroma_restic.py init --config" in stack.first.output  # -vvv did show commands
    assert _secrets_in(stack.first.output, stack.password, server.key) == []


def test_a_password_that_does_not_open_the_repository_is_refused_and_the_old_one_stays(
    stack: Stack,
):
    before = stack.host_files()
    wrong = stack.password.with_name("wrong-password")
    wrong.write_text(secrets.token_urlsafe(24) + "\n")
    refused = run_deploy({**stack.data, "chroma_backup_password_file": str(wrong)}, "-vvv")
    assert refused.returncode != 0
    assert _refusals(refused) == [
        f"@local: chroma_backup_password_file: the password in {str(wrong)!r} does not open the "
        f"restic repository {stack.repository.url} (Fatal: wrong password or no key found); name "
        "the file that holds this repository's password; the host's files were left as they were"
    ]
    assert stack.host_files() == before  # no candidate left, the working password in place
    assert _secrets_in(refused.output, wrong, stack.password) == []
    opened = stack.repository.restic(stack.password, "cat", "config")
    assert chroma_restic.verdict(opened) == "ok"
    stack.serving_unchanged()


def test_a_host_key_that_is_not_the_pinned_one_is_refused(stack: Stack):
    before = stack.host_files()
    server = stack.repository.server
    refused = run_deploy({**stack.data, "chroma_backup_known_hosts": str(server.wrong_known_hosts)})
    assert refused.returncode != 0
    assert _refusals(refused) == [
        f"@local: chroma_backup_known_hosts: the repository host's key is not the one pinned in "
        f"{str(server.wrong_known_hosts)!r} (Host key for {server.address} has changed and you "
        "have requested strict checking.); check the key with the host's admin (ssh-keygen -lf), "
        "and update the file only if the host was really re-keyed; the host's files were left "
        "as they were"
    ]
    assert stack.host_files() == before
    stack.serving_unchanged()


def test_a_key_the_repository_host_does_not_accept_is_refused(stack: Stack, tmp_path: Path):
    before = stack.host_files()
    key = tmp_path / "other_ed25519"
    sh(f"ssh-keygen -q -t ed25519 -N '' -C other -f '{key}'")
    refused = run_deploy({**stack.data, "chroma_backup_ssh_key": str(key)}, "-vvv")
    assert refused.returncode != 0
    assert _refusals(refused) == [
        f"@local: chroma_backup_ssh_key: the repository host refuses the key in {str(key)!r} "
        f"(restic@{stack.repository.server.address}: Permission denied (publickey).); add its "
        "public key to the repository user's authorized_keys there, then run again; the host's "
        "files were left as they were"
    ]
    assert stack.host_files() == before
    assert _secrets_in(refused.output, key) == []
    stack.serving_unchanged()


def test_an_unreachable_repository_host_is_refused(stack: Stack):
    before = stack.host_files()
    url = stack.repository.unreachable_url
    refused = run_deploy({**stack.data, "chroma_backup_repository": url})
    assert refused.returncode != 0
    assert _refusals(refused) == [
        f"@local: chroma_backup_repository: {url} cannot be reached from this host (ssh: connect "
        f"to host {stack.repository.server.address} port 2: Connection refused); check the "
        "address, the port and the network (is the repository host up?), then run again; the "
        "host's files were left as they were"
    ]
    assert stack.host_files() == before
    stack.serving_unchanged()


def test_a_restore_from_a_repository_that_does_not_exist_is_refused_and_creates_none(
    stack: Stack, tmp_path: Path
):
    """restore.py onto a new project dir, naming a repository path where there is none (a
    typo): one line, before any Chroma; restic init never runs, nothing appears there."""
    from harness.sftp_repository import new_repository

    typo = new_repository(stack.repository.server)
    name = f"cdtest{uuid.uuid4().hex[:8]}"
    new_dir = tmp_path / "new-host"
    data = base_data(new_dir, name, chroma_restore_snapshot="latest",
                     **typo.settings(stack.password))  # fmt: skip
    refused = run_deploy(data, deploy_file="restore.py")
    assert refused.returncode != 0
    assert _refusals(refused) == [
        f"@local: chroma_backup_repository: there is no restic repository at {typo.url} to "
        "restore from (a restore never creates one): nothing was changed; name the repository "
        "the backups went to"
    ]
    assert typo.server.exec(f"test -e {typo.path}", check=False).returncode != 0
    assert not (new_dir / "docker-compose.yml").exists()
    assert sh(f"docker ps -aq --filter label=com.docker.compose.project={name}").stdout == ""
    stack.serving_unchanged()


def test_a_restore_naming_another_repository_reads_that_one_not_the_hosts_old_one(
    stack: Stack,
):
    """restore.py on a host whose offsite.json names another repository (this stack's): the
    snapshot is looked for where the command says, so a typo is refused as there is none."""
    from harness.sftp_repository import new_repository

    before = stack.host_files()
    typo = new_repository(stack.repository.server)
    data = {**stack.data, "chroma_backup_repository": typo.url, "chroma_restore_snapshot": "latest"}
    refused = run_deploy(data, deploy_file="restore.py")
    assert refused.returncode != 0
    assert _refusals(refused) == [
        f"@local: chroma_backup_repository: there is no restic repository at {typo.url} to "
        "restore from (a restore never creates one): nothing was changed; name the repository "
        "the backups went to"
    ]
    assert typo.server.exec(f"test -e {typo.path}", check=False).returncode != 0
    assert stack.host_files() == before
    stack.serving_unchanged()


def _drift_items(data: dict[str, Any]) -> set[tuple[str, str]]:
    document = json.loads(run_drift(data, "--json").stdout)
    return {(item["kind"], item["resource"]) for item in document["hosts"]["@local"]["items"]}


def test_a_repository_restic_cannot_create_is_refused(stack: Stack):
    """No repository where the user may not write: restic init fails, nothing moves."""
    before = stack.host_files()
    url = f"sftp:restic@{stack.repository.server.address}:/root/kb"
    refused = run_deploy({**stack.data, "chroma_backup_repository": url})
    assert refused.returncode != 0
    [line] = _refusals(refused)
    assert line.startswith(
        f"@local: chroma_backup_repository: restic on this host could not open {url} (Fatal: "
    )
    assert line.endswith(
        "; check the repository, then run again; the host's files were left as they were"
    )
    assert stack.host_files() == before
    stack.serving_unchanged()


def test_drift_reports_a_changed_or_missing_secret_and_the_deploy_puts_it_back(stack: Stack):
    assert _drift_items(stack.data) == set()
    password = stack.restic_dir / "restic-password"
    known_hosts = stack.restic_dir / "restic-known-hosts"
    password.chmod(0o644)
    known_hosts.unlink()
    (stack.project_dir / CONFIG).write_text("{}\n")
    assert _drift_items(stack.data) == {
        ("mode", str(password)),
        ("missing", str(known_hosts)),
        ("secret", str(stack.project_dir / CONFIG)),
    }
    converge(stack.data)  # puts them back (the repository opens with them), then no change
    assert _drift_items(stack.data) == set()
    digest = hashlib.sha256(stack.password.read_bytes()).hexdigest()
    assert hashlib.sha256(password.read_bytes()).hexdigest() == digest
    stack.serving_unchanged()


def test_a_local_path_repository_is_created_and_the_next_run_changes_nothing(
    stack: Stack, tmp_path: Path
):
    """The other tested backend: a path on the host (a mounted disk); no key, no known_hosts.

    Last in the file: the stack now names another repository.
    """
    local = tmp_path / "mounted-disk" / "restic"
    data = {
        **{key: value for key, value in stack.data.items() if "ssh_key" not in key},
        "chroma_backup_repository": str(local),
    }
    data.pop("chroma_backup_known_hosts")
    converge(data)
    config = json.loads((stack.project_dir / CONFIG).read_text())
    assert (config["ssh_key"], config["known_hosts"]) == (None, None)
    assert (stack.restic_dir / "restic-repository").read_text() == f"{local}\n"
    # The sftp: repository's key and pinned host key are not left behind.
    assert sorted(path.name for path in stack.restic_dir.iterdir()) == [
        "restic-password",
        "restic-repository",
    ]
    host_view = chroma_restic.run_restic(
        chroma_restic.Offsite.load(str(stack.project_dir / CONFIG)), "cat", "config"
    )
    assert chroma_restic.verdict(host_view) == "ok", host_view.stderr
    assert (local / "config").is_file()
    stack.serving_unchanged()
