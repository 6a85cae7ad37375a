"""files/chroma_restic.py: the restic call every host tool makes, and how its faults read.

The stderr texts are restic 0.14.0's (Debian bookworm) and OpenSSH's own, recorded
on this machine against the sftp test repository (tests/harness/sftp_repository.py)
and a local one: wrong password, no repository, a host key that is not the pinned
one, a closed port, a key the server refuses, another restic holding the lock, a
full disk.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[2] / "files"
sys.path.insert(0, str(FILES))

import chroma_restic  # noqa: E402

HOST_KEY_CHANGED = """\
subprocess ssh: @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
subprocess ssh: @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
subprocess ssh: @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
subprocess ssh: IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
subprocess ssh: Offending ED25519 key in /tmp/fxoff/hk/known_hosts:1
subprocess ssh: Host key for 172.17.0.2 has changed and you have requested strict checking.
subprocess ssh: Host key verification failed.
Fatal: unable to open repository at sftp:restic@172.17.0.2:/srv/restic/repo-152d33df: \
unable to start the sftp session, error: EOF
"""

# (restic's stderr, the verdict, the line a refusal quotes)
RECORDED = [
    (
        "Fatal: wrong password or no key found\n",
        "wrong password",
        "Fatal: wrong password or no key found",
    ),
    (
        "Fatal: unable to open config file: Lstat: file does not exist\n"
        "Is there a repository at the following location?\n"
        "sftp:restic@172.17.0.2:/srv/restic/repo-fe933819\n",
        "no repository",
        "Fatal: unable to open config file: Lstat: file does not exist",
    ),
    (
        HOST_KEY_CHANGED,
        "host key",
        "Host key for 172.17.0.2 has changed and you have requested strict checking.",
    ),
    (
        "subprocess ssh: ssh: connect to host 172.17.0.2 port 2: Connection refused\n"
        "Fatal: unable to open repository at sftp://restic@172.17.0.2:2//srv/restic/x: "
        "unable to start the sftp session, error: EOF\n",
        "unreachable",
        "ssh: connect to host 172.17.0.2 port 2: Connection refused",
    ),
    (
        "subprocess ssh: restic@172.17.0.2: Permission denied (publickey).\n"
        "Fatal: unable to open repository at sftp:restic@172.17.0.2:/srv/restic/repo-f88aaf35: "
        "unable to start the sftp session, error: read |0: file already closed\n",
        "unreachable",
        "restic@172.17.0.2: Permission denied (publickey).",
    ),
    (
        "unable to create lock in backend: repository is already locked by PID 5980 on vm by "
        "root (UID 0, GID 0)\nlock was created at 2026-12-07 06:35:49 (150.072929ms ago)\n"
        "storage ID a64b3aa7\nthe `unlock` command can be used to remove stale locks\n",
        "locked",
        "unable to create lock in backend: repository is already locked by PID 5980 on vm by "
        "root (UID 0, GID 0)",
    ),
    (
        "Fatal: unable to save snapshot: write full/repo/data/0d/0d3d-tmp-136913095: "
        "no space left on device\n",
        "disk full",
        "Fatal: unable to save snapshot: write full/repo/data/0d/0d3d-tmp-136913095: "
        "no space left on device",
    ),
    (
        "Fatal: something restic 0.14 never said\n",
        "failed",
        "Fatal: something restic 0.14 never said",
    ),
]


def done(stderr: str, returncode: int = 1) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(["restic"], returncode, "", stderr)


@pytest.mark.parametrize(
    ("stderr", "verdict", "reason"), RECORDED, ids=[case[1] for case in RECORDED]
)
def test_each_recorded_fault_reads_as_its_own_verdict_and_reason(stderr, verdict, reason):
    assert chroma_restic.verdict(done(stderr)) == verdict
    assert chroma_restic.reason(done(stderr)) == reason


def test_exit_0_is_ok_whatever_restic_warned():
    assert chroma_restic.verdict(done("Fatal: wrong password or no key found", 0)) == "ok"


@pytest.mark.parametrize(
    ("repository", "destination", "port"),
    [
        ("sftp:restic@vault.example:/srv/restic/kb", "restic@vault.example", None),
        ("sftp:vault.example:relative/kb", "vault.example", None),
        ("sftp://restic@vault.example:2222//srv/restic/kb", "restic@vault.example", "2222"),
    ],
)
def test_sftp_command_is_one_word_per_argument_whatever_the_paths_hold(
    repository, destination, port
):
    key = "/srv/my project/it's $(key)"
    known_hosts = '/srv/my project/"known hosts"'
    command = chroma_restic.sftp_command(repository, key, known_hosts, "/tmp/ssh log")
    assert command is not None
    words = shlex.split(command)  # as restic splits sftp.command
    assert words[words.index("-i") + 1] == key
    assert f"UserKnownHostsFile={known_hosts}" in words
    assert "StrictHostKeyChecking=yes" in words and "BatchMode=yes" in words
    assert words[words.index("-E") + 1] == "/tmp/ssh log"
    assert words[-3:] == [destination, "-s", "sftp"]
    assert (words[words.index("-p") + 1] if "-p" in words else None) == port


def test_no_sftp_command_for_a_local_repository():
    assert chroma_restic.sftp_command("/mnt/backup/restic", "/k", "/kh") is None


def test_the_password_and_repository_are_read_from_files_never_put_in_the_arguments(tmp_path):
    password, repository = "correct horse battery", "sftp:restic@vault.example:/srv/restic/kb"
    (tmp_path / "password").write_text(password + "\n")
    (tmp_path / "repository").write_text(repository + "\n")
    offsite = chroma_restic.Offsite({
        "repository_file": str(tmp_path / "repository"),
        "password_file": str(tmp_path / "password"),
        "ssh_key": str(tmp_path / "key"),
        "known_hosts": str(tmp_path / "known_hosts"),
    })  # fmt: skip
    argv = chroma_restic.restic_args(offsite, "snapshots", "--json")
    assert password not in " ".join(argv)
    assert argv[argv.index("--password-file") + 1] == str(tmp_path / "password")
    assert argv[argv.index("--repository-file") + 1] == str(tmp_path / "repository")
    # The host appears in the ssh command only (restic reads the repository from its file).
    assert [arg for arg in argv if repository in arg] == []


def test_verdict_subcommand_opens_a_local_repository_without_a_lock(tmp_path):
    """Real restic: ``verdict`` reads, ``init`` creates; neither leaves a lock behind."""
    (tmp_path / "password").write_text("correct horse battery\n")
    (tmp_path / "repository").write_text(str(tmp_path / "repo") + "\n")
    config = tmp_path / "offsite.json"
    config.write_text(json.dumps({
        "repository_file": str(tmp_path / "repository"),
        "password_file": str(tmp_path / "password"),
        "ssh_key": None,
        "known_hosts": None,
    }))  # fmt: skip

    def tool(command: str) -> tuple[int, dict]:
        ran = subprocess.run(
            [sys.executable, str(FILES / "chroma_restic.py"), command, "--config", str(config)],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        return ran.returncode, json.loads(ran.stdout)

    assert tool("verdict")[1]["verdict"] == "no repository"
    assert tool("init") == (0, {"verdict": "ok", "reason": ""})
    assert tool("verdict") == (0, {"verdict": "ok", "reason": ""})
    assert list((tmp_path / "repo" / "locks").iterdir()) == []
    (tmp_path / "password").write_text("battery staple\n")
    assert tool("verdict")[1]["verdict"] == "wrong password"
    code, said = tool("init")
    assert code == 1 and said["verdict"] == "failed"  # restic: "config file already exists"
