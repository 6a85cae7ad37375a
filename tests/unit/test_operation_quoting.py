"""Hostile paths through every operation's commands: each parses, none runs the payload.

Every case under tests/fixtures/operations/ is taken again with its paths
(``/tmp/fx``, the backup dir, the build dir) replaced, in its arguments and in
the facts it reads, by paths that hold a space, both quotes, ``$(...)``,
backticks, ``;``, ``#`` and a newline, each a payload that would create a
marker file if a shell ever read it as code. Settings refuse such paths
(tests/unit/test_settings.py); this proves the commands would be safe even
if one got through.

Each command the operation yields as a string must pass ``bash -n``, and is
then really run by bash with ``PATH`` holding only stub programs (``docker``,
``mkdir``, ``mv``, ``chown``, ``python3``, ...) that log their argv and do
nothing else. This is more robust than splitting the text with ``shlex``,
which does not know ``$(...)``, ``"$stamp"`` or ``{ ...; }``: bash itself
says what each program receives. The payloads write the marker with a shell
redirection (``echo >marker``), not with a program, so a stubbed ``PATH`` does
not hide a payload that ran. Asserted for every command: the marker does not
exist, and every argument that holds a piece of the hostile path holds all of
it (it reached the program as one intact word). And for every case whose
commands name the hostile path at all, at least one program received it, so
the check is not passed by commands that never got that far.
"""

from __future__ import annotations

import importlib
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.context import ctx_host
from test_operation_fixtures import (
    CASES,
    RecordedHost,
    fact_name,
    operation_arguments,
    run_operation,
)

from operations.host_failure import run_refusing

BASH = "/bin/bash"
# Programs the operations' commands call; a command that calls another fails the test
# ("command not found"), so this list keeps up with the commands.
STUBS = (
    "apt-get", "awk", "base64", "basename", "bash", "cat", "chmod", "chown", "cp", "curl",
    "crontab", "cut", "date", "dirname", "docker", "du", "find", "flock", "getent", "grep", "gzip",
    "head", "id", "install", "ln", "ls", "mkdir", "mktemp", "mv", "pgrep", "python3", "rm",
    "rmdir", "sed", "seq", "service", "setfacl", "setsid", "sh", "sha256sum", "sleep", "sort", "ss",
    "stat", "sudo", "systemctl", "tail", "tar", "tee", "timeout", "touch", "tr", "wc", "xargs",
)  # fmt: skip
ARG, CALL = "\x1f", "\x1e"  # separators in the stubs' log: never in a hostile path
# A file per call: the programs of a pipeline (cat | sha256sum) run at once, and
# their records in one shared log interleaved (a flaky "got a piece of the path").
STUB = f"""#!{BASH}
line="${{0##*/}}"; for a in "$@"; do line+="{ARG}$a"; done
printf '%s{CALL}' "$line" >"$STUB_LOG.$$.$RANDOM"
"""


def hostile_part(marker: Path) -> str:
    """One path component that runs ``echo >marker`` in every way a shell could read it."""
    run = f"echo >{marker}"
    # " --out /dev/null " as well: text that a command built by string replacement might hit.
    return f"xstart y$({run})`{run}`'q\";{run};#\n{run}& --out /dev/null xend"


# Pieces of hostile_part(): an argument holding one of them must hold the whole part.
PIECES = ("xstart", "xend", "'q", 'q"', "`echo", "$(echo")


def hostile_paths(part: str) -> dict[str, str]:
    """The fixtures' paths and what they become."""
    return {
        "/tmp/fx": f"/tmp/{part}/fx",
        "/var/backups/chroma-deploy": f"/var/backups/{part}/bk",
        "/var/cache/chroma-deploy/image-build": f"/var/cache/{part}/build",
    }


def substitute(value: Any, paths: dict[str, str]) -> Any:
    """``value`` with every path replaced, in strings and in dict keys, at any depth."""
    if isinstance(value, str):
        for old, new in paths.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [substitute(item, paths) for item in value]
    if isinstance(value, dict):
        return {substitute(k, paths): substitute(v, paths) for k, v in value.items()}
    return value


# Arguments that are names or words rather than paths (a bare data dir name too), at
# any depth (inside a typed value's object too): replaced by the hostile part in the
# arguments; the facts answer as recorded.
NAME_ARGS = (
    "ref", "image", "project_name", "version", "mode", "dir_mode", "data_dir_mode", "url",
)  # fmt: skip
BARE_NAMES = ("data_dir", "name")  # a data dir's name, when it is not a path


def hostile_names(value: Any, part: str, key: str | None = None) -> Any:
    """``value`` with every name or word (NAME_ARGS, BARE_NAMES) ending in ``part``."""
    if isinstance(value, dict):
        return {k: v if k == "kind" else hostile_names(v, part, k) for k, v in value.items()}
    if isinstance(value, list):
        return [hostile_names(item, part) for item in value]
    bare_name = key in BARE_NAMES and isinstance(value, str) and not value.startswith("/")
    if isinstance(value, str) and (key in NAME_ARGS or bare_name):
        return f"{value}{part}"
    return value


def recorded_answers(case: Path) -> list[tuple[str, Any]]:
    """The facts the case's operation asks for, in order, with the fixture's answers."""
    fixture = json.loads(case.read_text())
    _, _, host = run_operation(case)
    return [
        (name, fixture["facts"][name] if arguments is None else fixture["facts"][name][arguments])
        for name, arguments in host.asked
    ]


class ReplayHost(RecordedHost):
    """Answers each fact the operation asks for with the case's next answer for that fact.

    With hostile values the operation asks with other arguments than the ones
    recorded, and this test is about the commands, not about which arguments a fact
    gets (test_operation_fixtures). A hostile name can also take another branch (a
    project name that is not the running container's, a version that is not the
    served one): a fact the case did not record for it answers as on a host without it.
    """

    def __init__(self, answers: list[tuple[str, Any]]):
        super().__init__({})
        self.answers = list(answers)

    def get_fact(self, fact_cls: type, *args: Any, **kwargs: Any) -> Any:
        name = fact_name(fact_cls)
        for index, (recorded, answer) in enumerate(self.answers):
            if recorded == name:
                del self.answers[index]
                return answer
        return fact_cls.default()  # type: ignore[attr-defined]


def hostile_case(case: Path, kind: str, part: str) -> tuple[dict[str, Any], ReplayHost]:
    """The case's arguments with hostile values, and a host answering as recorded."""
    args = json.loads(case.read_text())["args"]
    answers = recorded_answers(case)
    if kind == "paths":
        paths = hostile_paths(part)
        hostile_answers = [(name, substitute(answer, paths)) for name, answer in answers]
        return substitute(args, paths), ReplayHost(hostile_answers)
    return hostile_names(args, part), ReplayHost(answers)


def rendered_commands(case: Path, args: dict[str, Any], host: ReplayHost) -> list[Any]:
    module, name = case.parent.name.rsplit(".", 1)
    operation = getattr(importlib.import_module(f"operations.{module}"), name)
    with ctx_host.use(host):
        try:
            return list(operation.__wrapped__(**operation_arguments(args)))
        except ValueError:  # refused the value (a version that is not one): ran nothing
            return []


def shell_text(command: Any) -> str | None:
    """The text a shell runs, or None for uploads and functions on the control machine.

    A host program run through host_failure.refusing is a shell text too.
    """
    if isinstance(command, StringCommand):
        return command.get_raw_value()
    if isinstance(command, FunctionCommand) and command.function is run_refusing:
        return shell_text(command.args[0])
    return command if isinstance(command, str) else None


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("stubs")
    for name in STUBS:
        stub = directory / name
        stub.write_text(STUB)
        stub.chmod(0o755)
    return directory


def run_with_stubs(text: str, stub_dir: Path, work: Path) -> tuple[list[list[str]], str]:
    """Run ``text`` with bash, only stubs on PATH: each program's argv, and bash's stderr."""
    log = work / "calls.log"
    for old in work.glob("calls.log.*"):
        old.unlink()
    done = subprocess.run(
        [BASH, "-c", text],
        cwd=work, env={"PATH": str(stub_dir), "STUB_LOG": str(log), "HOME": str(work)},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    records = "".join(path.read_text() for path in sorted(work.glob("calls.log.*")))
    calls = [call.split(ARG) for call in records.split(CALL) if call]
    return calls, done.stderr


def problems(text: str, marker: Path, stub_dir: Path, work: Path) -> tuple[list[str], bool]:
    """What is wrong with one command given the hostile part; and whether a program got it."""
    part = hostile_part(marker)
    syntax = subprocess.run([BASH, "-n", "-c", text], capture_output=True, text=True)
    if syntax.returncode != 0:
        return [f"bash -n refuses it: {syntax.stderr.strip()}"], False
    calls, stderr = run_with_stubs(text, stub_dir, work)
    found = []
    if marker.exists():
        found.append("the payload ran")
    if "command not found" in stderr:
        found.append(f"add a stub to STUBS: {stderr.strip()}")
    received = False
    for call in calls:
        for argument in call[1:]:
            if any(piece in argument for piece in PIECES):
                if part in argument:
                    received = True
                else:
                    found.append(f"{call[0]} got a piece of the path: {argument!r}")
    return found, received


@pytest.mark.parametrize("kind", ["paths", "names"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_hostile_values_stay_one_word_and_run_nothing(
    case: Path, kind: str, stub_dir: Path, tmp_path: Path
):
    marker = tmp_path / "payload-ran"
    part = hostile_part(marker)
    work = tmp_path / "work"
    work.mkdir()
    named, received = False, False
    for command in rendered_commands(case, *hostile_case(case, kind, part)):
        if isinstance(command, FileUploadCommand):
            received |= part in command.dest  # pyinfra quotes an upload's path itself
        text = shell_text(command)
        if text is None:
            continue
        found, got_it = problems(text, marker, stub_dir, work)
        assert not found, f"{text}\n" + "\n".join(found)
        received |= got_it
        named |= any(piece in text for piece in PIECES)
    assert received or not named, "no program received the hostile value: the test proves nothing"


@pytest.mark.parametrize(
    "pasted",
    [
        "mkdir -p {path}",
        'mkdir -p "{path}"',
        "mkdir -p {quoted} || echo '{path} was left as it was'",  # the bug
        'mkdir -p {quoted} && echo "made {path}"',
        "mkdir -p /tmp/{unquoted}",
        'mkdir -p "/tmp/{unquoted}"',
    ],
)
def test_the_check_catches_a_pasted_path(pasted: str, stub_dir: Path, tmp_path: Path):
    """A command that pastes the path anywhere, raw or in quotes, is caught by problems()."""
    marker = tmp_path / "payload-ran"
    path = hostile_paths(hostile_part(marker))["/tmp/fx"]
    # Without quote characters: a path that only a missing quote lets run.
    unquoted = hostile_part(marker).replace("'q\"", "")
    work = tmp_path / "work"
    work.mkdir()
    text = pasted.format(path=path, quoted=shlex.quote(path), unquoted=unquoted)
    found, _ = problems(text, marker, stub_dir, work)
    assert found
