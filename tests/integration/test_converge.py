"""A fresh converge on real Docker with a real Chroma server, and its second run."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import yaml
from conftest import PYINFRA, ROOT, base_data, converge, run_deploy, run_drift, sh, stat

from declaration.gitignore import gitignore_lines
from declaration.settings import load_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DATA_DIRS = ("chroma_data", "chroma_db", "logs")


def test_fresh_converge_is_healthy_and_second_run_changes_nothing(project):
    project_dir, name = project
    data = base_data(project_dir, name)
    first = converge(data)
    assert f"Stack {name} up and healthy" in first.changed_operations

    # Every declared dir and file, checked with stat/cat, not with our facts.
    assert stat(project_dir) == (0, 0, "750")
    for directory in DATA_DIRS:
        assert stat(project_dir / directory) == (0, 0, "750")
        gitkeep = project_dir / directory / ".gitkeep"
        assert gitkeep.is_file() and gitkeep.stat().st_size == 0
    gitignore = (project_dir / ".gitignore").read_text().splitlines()
    assert gitignore == gitignore_lines(DATA_DIRS)

    compose = yaml.safe_load((project_dir / "docker-compose.yml").read_text())
    assert compose["name"] == name
    chroma = compose["services"]["chroma"]
    assert chroma["image"] == "chromadb/chroma:1.5.9"
    assert chroma["ports"] == [f"127.0.0.1:{data['chroma_port']}:8000"]
    assert chroma["volumes"][0]["source"] == "./chroma_data"
    assert chroma["volumes"][0]["target"] == "/data"

    state = sh(f"docker inspect --format '{{{{.State.Health.Status}}}}' {name}-chroma-1")
    assert state.stdout.strip() == "healthy"
    answer = httpx.get(f"http://127.0.0.1:{data['chroma_port']}/api/v2/heartbeat", timeout=5)
    assert answer.status_code == 200 and "nanosecond heartbeat" in answer.json()
    # Chroma really writes into the bind-mounted dir on the host.
    assert (project_dir / "chroma_data" / "chroma.sqlite3").is_file()

    # A no-op costs the host one command: the project lock, then the whole read.
    noop = run_deploy(data, "-vv")
    assert noop.returncode == 0 and not noop.changed_operations, noop.output
    commands = noop.output.split("[@local] >>> ")[1:]
    assert len(commands) == 1, noop.output
    assert "flock" in commands[0] and "@@batch-part" in commands[0], commands[0]


def test_edited_compose_file_is_replaced_and_stack_recreated(project):
    project_dir, name = project
    data = base_data(project_dir, name)
    converge(data)
    compose_path = project_dir / "docker-compose.yml"
    rendered = compose_path.read_text()
    compose_path.write_text(rendered.replace("retries: 20", "retries: 3"))
    sh(f"cd '{project_dir}' && docker compose up -d --wait")  # stack now runs the edit

    repaired = converge(data)
    assert f"{compose_path} from templates/docker-compose.yml.j2" in repaired.changed_operations
    assert f"Stack {name} up and healthy" in repaired.changed_operations
    assert compose_path.read_text() == rendered


def test_stopped_container_is_started_again(project):
    project_dir, name = project
    data = base_data(project_dir, name)
    converge(data)
    sh(f"docker stop {name}-chroma-1")
    repaired = converge(data)
    assert repaired.changed_operations == [f"Stack {name} up and healthy"]


def test_user_gitignore_lines_are_kept_and_git_sees_only_gitkeep(project):
    project_dir, name = project
    project_dir.mkdir(parents=True)
    own = ["# my project", "*.pyc", "notes/chroma_data/*", "chroma_data/* # not literal"]
    (project_dir / ".gitignore").write_text("\n".join(own))  # no newline at the end
    sh(
        f"cd '{project_dir}' && git init -q . "
        "&& git config user.email t@example.invalid && git config user.name t"
    )
    data = base_data(project_dir, name)
    converge(data)

    lines = (project_dir / ".gitignore").read_text().splitlines()
    assert lines[: len(own)] == own
    assert lines[len(own) :] == gitignore_lines(DATA_DIRS)
    assert len(lines) == len(set(lines))

    (project_dir / "chroma_db" / "fallback.sqlite3").write_text("x")
    (project_dir / "logs" / "app.log").write_text("x")
    status = sh(f"cd '{project_dir}' && git status --porcelain --untracked-files=all").stdout
    untracked = sorted(line[3:] for line in status.splitlines())
    assert untracked == [
        ".gitignore",
        "chroma_data/.gitkeep",
        "chroma_db/.gitkeep",
        "docker-compose.yml",
        "logs/.gitkeep",
    ]


def _git_keeps_gitkeep_and_ignores_logs(project_dir) -> None:
    """What the block is for, asked of git itself: .gitkeep kept, the rest of logs/ ignored."""
    verbose = sh(f"cd '{project_dir}' && git check-ignore -v logs/.gitkeep").stdout
    assert verbose.split("\t")[0].endswith(":!logs/.gitkeep"), verbose  # last match: negation
    assert sh(f"cd '{project_dir}' && git check-ignore logs/.gitkeep", check=False).returncode == 1
    assert sh(f"cd '{project_dir}' && git check-ignore logs/x.log").stdout == "logs/x.log\n"


def _gitignore_drift(data) -> list[dict]:
    result = run_drift(data, "--json")
    items = json.loads(result.stdout)["hosts"]["@local"]["items"]
    assert result.returncode == 2, result.output
    assert {item["kind"] for item in items} == {"gitignore"}, items
    return items


def test_gitignore_block_out_of_order_is_drift_and_is_repaired_in_order(project):
    """Issue 12 part 6: a deleted `logs/*` came back after `!logs/.gitkeep`, and drift was clean."""
    project_dir, name = project
    project_dir.mkdir(parents=True)
    own = ["# my project", "*.pyc"]
    (project_dir / ".gitignore").write_text("\n".join(own) + "\n")
    sh(f"cd '{project_dir}' && git init -q .")
    # Legacy volumes of this test only: another test's seed-style *_chroma_data volume on
    # the shared engine would otherwise make this deploy refuse (correctly) to choose.
    data = base_data(project_dir, name, chroma_legacy_volumes=f"{name}_none")
    converge(data)
    block = gitignore_lines(DATA_DIRS)
    gitignore = project_dir / ".gitignore"
    assert gitignore.read_text().splitlines() == own + block
    _git_keeps_gitkeep_and_ignores_logs(project_dir)

    # The user deletes the ignore line: drift names it, the deploy puts it back in place.
    gitignore.write_text(gitignore.read_text().replace("\nlogs/*\n", "\n"))
    items = _gitignore_drift(data)
    assert [(i["expected"], i["actual"]) for i in items] == [("logs/*", "absent")]
    converge(data)  # repairs; the second run changes nothing
    assert gitignore.read_text().splitlines() == own + block
    _git_keeps_gitkeep_and_ignores_logs(project_dir)
    assert run_drift(data).returncode == 0

    # What the deploy used to leave behind: the line appended after its negation.
    lines = [line for line in gitignore.read_text().splitlines() if line != "logs/*"]
    gitignore.write_text("\n".join([*lines, "logs/*"]) + "\n")
    assert sh(f"cd '{project_dir}' && git check-ignore logs/.gitkeep", check=False).returncode == 0
    items = _gitignore_drift(data)
    assert [(i["expected"], i["actual"]) for i in items] == [
        ("logs/* before !logs/.gitkeep", "logs/* after !logs/.gitkeep")
    ]
    converge(data)
    assert gitignore.read_text().splitlines() == own + block
    _git_keeps_gitkeep_and_ignores_logs(project_dir)
    assert run_drift(data).returncode == 0
    assert sorted(p.name for p in project_dir.glob(".gitignore*")) == [".gitignore"]


@pytest.mark.parametrize(
    ("owner", "group"),
    [("chromatest", None), (4242, 4343)],
    ids=["non-root account", "numeric ids without account"],
)
def test_owner_runs_the_container_and_owns_what_it_writes(project, owner, group):
    project_dir, name = project
    sh("id chromatest >/dev/null 2>&1 || useradd --system --user-group chromatest")
    data = base_data(project_dir, name, chroma_owner=owner)
    if group is not None:
        data["chroma_group"] = group
    converge(data)

    uid = int(sh("id -u chromatest").stdout) if owner == "chromatest" else owner
    gid = int(sh("id -g chromatest").stdout) if owner == "chromatest" else group
    for path in [project_dir, *(project_dir / d for d in DATA_DIRS)]:
        assert stat(path)[:2] == (uid, gid)
    sqlite = project_dir / "chroma_data" / "chroma.sqlite3"
    assert sqlite.is_file()
    assert (sqlite.stat().st_uid, sqlite.stat().st_gid) == (uid, gid)
    user = sh(f"docker inspect --format '{{{{.Config.User}}}}' {name}-chroma-1").stdout.strip()
    assert user == f"{uid}:{gid}"


def test_docker_absent_with_install_off_is_a_clear_error(project, tmp_path):
    project_dir, name = project
    # Hide every docker binary in a private mount namespace: the engine stays up
    # for the other tests, but this run sees a host without Docker.
    data = base_data(project_dir, name, chroma_install_docker=False)
    args = " ".join(f"--data {key}={value}" for key, value in data.items())
    script = (
        "mount --bind /dev/null /usr/bin/docker && "
        "mount --bind /dev/null /usr/local/bin/docker && "
        f"cd '{ROOT}' && '{PYINFRA}' -y @local deploy.py {args}"
    )
    result = sh(f'unshare -m bash -c "{script}"', check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Docker Engine is not installed" in output
    assert "chroma_install_docker" in output
    assert "Traceback" not in output
    assert not project_dir.exists()


def test_readme_main_command_converges_and_second_run_changes_nothing(project):
    project_dir, name = project
    data = base_data(project_dir, name)
    args = " ".join(f"--data {key}={value}" for key, value in data.items())
    for run in ("first", "second"):
        result = sh(f"cd '{ROOT}' && bash scripts/up.sh {args} --json", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        totals = json.loads(result.stdout)["results"]["totals"]
        if run == "second":
            assert totals["success"] == 0, totals
    answer = httpx.get(f"http://127.0.0.1:{data['chroma_port']}/api/v2/heartbeat", timeout=5)
    assert answer.status_code == 200
    # At the end: what the user now has, and commands that work as printed.
    lines = result.stderr.splitlines()
    start = lines.index(f"chroma-deploy: Chroma {load_settings({}).version} is up and healthy")
    told = dict(line.strip().split(":", 1) for line in lines[start + 1 : start + 5])
    assert told["URL"].strip().startswith(f"http://127.0.0.1:{data['chroma_port']};")
    assert told["data dir"].strip().startswith(f"{project_dir}/chroma_data ")
    drift = sh(told["check drift"].strip(), check=False)
    assert drift.returncode == 0, drift.stdout + drift.stderr
    backup = told["back up"].split("  (archives in ")[0].strip()
    assert backup.endswith(f"backup.py --group-data {ROOT / 'group_data'} {args}")


def test_deploy_runs_from_another_directory(project, tmp_path):
    """``pyinfra @local /path/to/deploy.py`` from anywhere finds facts/ and operations/."""
    project_dir, name = project
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data = base_data(project_dir, name)
    first = converge(data, deploy_file=str(ROOT / "deploy.py"), cwd=elsewhere)
    assert "ModuleNotFoundError" not in first.output
    answer = httpx.get(f"http://127.0.0.1:{data['chroma_port']}/api/v2/heartbeat", timeout=5)
    assert answer.status_code == 200


@pytest.fixture
def new_account():
    """A name no account or group has yet; the account and group are removed afterwards."""
    name = f"cdown{uuid.uuid4().hex[:6]}"
    assert sh(f"getent passwd {name}; getent group {name}", check=False).stdout == ""
    yield name
    sh(f"userdel {name} 2>/dev/null; groupdel {name} 2>/dev/null; true", check=False)


def test_create_owner_makes_a_system_account_before_the_dirs_and_a_second_run_changes_nothing(
    project, new_account
):
    project_dir, name = project
    data = base_data(project_dir, name, chroma_owner=new_account, chroma_create_owner=True)
    converge(data)  # the second run changes nothing: the account is there, as declared

    entry = sh(f"getent passwd {new_account}").stdout.strip().split(":")
    uid, gid, shell = int(entry[2]), int(entry[3]), entry[6]
    assert 100 <= uid < 1000  # a system account
    assert shell == "/usr/sbin/nologin"
    assert sh(f"getent group {gid}").stdout.split(":")[0] == new_account
    for path in [project_dir, *(project_dir / d for d in DATA_DIRS)]:
        assert stat(path)[:2] == (uid, gid)
    user = sh(f"docker inspect --format '{{{{.Config.User}}}}' {name}-chroma-1").stdout.strip()
    assert user == f"{uid}:{gid}"


def test_project_dir_with_a_space_converges_and_drift_sees_it(project):
    """A space is allowed in a path and works end to end: deploy, second run, drift."""
    project_dir, name = project
    # A space and every other punctuation mark settings allow in a path.
    spaced = project_dir.parent / "my project+v2,@x=1:y" / "stack"
    data = base_data(spaced, name)
    try:
        converge(data)
        assert (spaced / "chroma_data" / "chroma.sqlite3").is_file()  # Chroma writes there
        assert stat(spaced / "chroma_data") == (0, 0, "750")
        assert run_drift(data).returncode == 0
        # drift really reads the spaced dir: a loosened mode is found, and repaired.
        sh(f"chmod 770 '{spaced}/chroma_data'")
        tampered = run_drift(data, "--no-color")
        assert tampered.returncode == 2, tampered.output
        assert f"{spaced}/chroma_data: 750 -> 770" in tampered.stdout
        converge(data)
        assert run_drift(data).returncode == 0
    finally:
        sh(f"cd '{spaced}' && docker compose down --timeout 5", check=False)
