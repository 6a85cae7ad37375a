"""A restic repository and a project's off-host config as the deploy leaves them, for tests.

Until the deploy ships them (operations/offsite.py), tests write its layout
themselves: the 0600 secrets in ``.chroma-deploy/restic/`` (0700) and
``.chroma-deploy/offsite.json`` (0600) naming them. :func:`take_snapshot` runs the
real backup program, files/chroma_offsite.py backup, with a stand-in ``docker``
that answers as a stopped stack of the given Chroma version (its compose file's
image): cp, the manifest, the lock and restic are the program's own. Only a
forged snapshot (a manifest that does not match its files, which no backup
writes) is made by hand, in the same layout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

FILES = Path(__file__).resolve().parent.parent / "files"
if str(FILES) not in sys.path:
    sys.path.insert(0, str(FILES))

import chroma_restic  # noqa: E402

PASSWORD = "correct horse battery staple, not on any command line"


def write_offsite(
    project_dir: Path,
    project_name: str,
    repository: str,
    host: str,
    metrics_dir: Path,
    data_dir: str = "chroma_data",
    password: str = PASSWORD,
    root: Path | None = None,
) -> Path:
    """The secrets (0600) and offsite.json (0600) a deploy writes; the config's path.

    ``root``: write them under this dir instead (to copy into another host's /).
    """
    secrets = (root or Path("/")) / str(project_dir).lstrip("/") / ".chroma-deploy" / "restic"
    secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
    secrets.chmod(0o700)
    for name, value in (("restic-repository", repository), ("restic-password", password)):
        path = secrets / name
        path.write_text(value + "\n")
        path.chmod(0o600)
    state = secrets.parent
    state.mkdir(exist_ok=True)
    named = project_dir / ".chroma-deploy" / "restic"  # where the host reads them
    config = {
        "project_dir": str(project_dir), "project_name": project_name,
        "compose_file": f"{project_dir}/docker-compose.yml",
        "data_dir": f"{project_dir}/{data_dir}",
        "host": host, "wait_timeout": 120,
        "repository_file": str(named / "restic-repository"),
        "password_file": str(named / "restic-password"), "ssh_key": None, "known_hosts": None,
        "keep": {"daily": 0, "weekly": 0, "monthly": 0}, "check_subset": "5%",
        "lock_dir": str(named.parent / "lock"),
        "metrics_file": str(metrics_dir / f"{project_name}-backup.prom"),
        "status_file": str(named.parent / "offsite-status.json"),
        "staging_dir": str(named.parent / "offsite-staging"),
    }  # fmt: skip
    path = state / "offsite.json"
    path.write_text(json.dumps(config, indent=1))
    path.chmod(0o600)
    return path


def restic(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    offsite = chroma_restic.Offsite.load(str(config))
    return chroma_restic.run_restic(offsite, *args, timeout=300)


def init_repository(config: Path) -> None:
    done = restic(config, "init")
    assert done.returncode == 0, done.stderr


# A stopped stack of one version: no container runs, the compose file names the image.
STAND_IN_DOCKER = """#!/bin/sh
case " $* " in
    *" config "*) printf '{"services": {"chroma": {"image": "chromadb/chroma:%s"}}}\\n' \\
                      "$CHROMA_VERSION" ;;
esac
"""


def take_snapshot(config: Path, version: str, manifest: dict | None = None) -> str:
    """A snapshot of the config's data dir, by files/chroma_offsite.py backup; its id.

    ``manifest``: a forged snapshot instead, in the program's layout, whose manifest
    is this one (a snapshot whose files and manifest disagree).
    """
    offsite = chroma_restic.Offsite.load(str(config))
    if manifest is not None:
        return _forged_snapshot(config, offsite, version, manifest)
    Path(offsite["compose_file"]).touch()
    bin_dir = Path(offsite["staging_dir"]).with_name("stand-in-bin")
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(STAND_IN_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    done = subprocess.run(
        [sys.executable, str(FILES / "chroma_offsite.py"), "backup", "--config", str(config)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CHROMA_VERSION": version},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    status = json.loads(Path(offsite["status_file"]).read_text())
    return str(status["last_snapshot"])


def _forged_snapshot(config: Path, offsite: chroma_restic.Offsite, version: str,
                     manifest: dict) -> str:  # fmt: skip
    staging = Path(offsite["staging_dir"])
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    source = os.path.join(offsite["project_dir"], offsite["data_dir"])
    subprocess.run(["cp", "-a", "--reflink=auto", source, str(staging / "data")], check=True)
    (staging / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    host = offsite["host"]
    done = restic(
        config, "backup", "--json", "--host", host, "--tag", f"project={offsite['project_name']}",
        "--tag", f"host={host}", "--tag", f"chroma_version={version}", "--ignore-inode",
        "--ignore-ctime", str(staging),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shutil.rmtree(staging)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return str(summary["snapshot_id"])


def file_modes(path: Path) -> dict[str, str]:
    return {name: oct(os.stat(path / name).st_mode & 0o777) for name in os.listdir(path)}
