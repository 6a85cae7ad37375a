"""Where Chroma data lives on this host, as every container's mounts show it.

The deploy must not decide where the data is from its own configuration: a
changed ``chroma_project_dir`` or ``chroma_data_dir``, a stack taken over whose
data sits in a volume or dir of another name, or another compose project still
serving the same data dir are all invisible to a reading of the declared paths.
This fact reads every container on the host (stopped ones too) and, for each of
its bind and volume mounts, the mount source's identity on the host (device and
inode, so a symlinked dir is the same dir) and whether Chroma's database file is
at its top. The rules that act on it follow the fact, pure functions of its reading, shared by
the deploy's pre-flight check, its takeover (operations/migrate.py) and drift.py,
so the three decide alike by construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyinfra.api import FactBase

from facts._shell import shell_word

# Where Chroma servers persist, whatever the compose file that made the container
# says: 1.x's /data, 0.x's /chroma/chroma (declaration/versions.py), and the
# declared line's persist path, added by the callers.
PERSIST_TARGETS = frozenset({"/data", "/chroma/chroma"})

# States in which a container holds, or will hold again by itself, its mounts open.
_LIVE_STATES = frozenset({"running", "restarting", "paused"})


def is_live(mount: dict[str, Any]) -> bool:
    """Its server runs, or comes back by itself (``restart: always`` restarts a stopped
    container when the engine starts again)."""
    return mount["state"] in _LIVE_STATES or mount["restart"] == "always"


def is_ours(mount: dict[str, Any], project_name: str) -> bool:
    """A container of this compose project's Chroma service, not a one-off run."""
    return mount["project"] == project_name and mount["service"] == "chroma" and not mount[
        "oneoff"]  # fmt: skip


# The unpublished servers chroma-deploy's own checks start on a data dir
# (files/chroma_safety.py verify, verify-upgrade, init-schema): one a killed run left is
# stopped by the next run (migrate.stop_leftover_checks), not refused as another server.
CHECK_PREFIXES = (
    "chroma-deploy-migration-check-", "chroma-deploy-upgrade-check-", "chroma-deploy-schema-init-"
)  # fmt: skip


def leftover_checks(homes: dict[str, Any]) -> list[dict[str, Any]]:
    """chroma-deploy's own check servers on the declared data dir (a killed run's)."""
    wanted = (homes.get("data_dir") or {}).get("inode")
    return [
        m
        for m in homes["mounts"]
        if wanted and m["inode"] == wanted and m["name"].startswith(CHECK_PREFIXES)
    ]


def other_servers(homes: dict[str, Any], project_name: str) -> list[dict[str, Any]]:
    """Live containers, other than this project's Chroma, that mount the declared data dir.

    Compared by device and inode, so a symlink, a bind of a parent or another
    spelling of the path is the same dir; a parent mounted with a persist path
    below it (served_path) counts as the dir it serves.
    """
    wanted = (homes.get("data_dir") or {}).get("inode")
    if not wanted:
        return []
    return [
        m
        for m in homes["mounts"]
        if wanted in (m["inode"], m["served_inode"])
        and m["rw"]  # a read-only mount (a backup sidecar) writes nothing there
        and is_live(m)
        and not is_ours(m, project_name)
        and m not in leftover_checks(homes)
    ]


def other_server_refusal(mount: dict[str, Any], data_dir: str, project_dir: str) -> str:
    """The one line for a second server on the data dir, naming the key that moved."""
    project = mount["project"] or "none"
    if mount["working_dir"] == project_dir:
        key = "chroma_compose_project"
        how = f"this project dir's stack still runs as compose project {project}"
    else:
        key = "chroma_data_dir"
        how = f"container {mount['name']} (compose project {project}, {mount['state']}) uses it"
    # Stopped, not removed: a container may keep data in its own layer, which `down` or
    # `rm` would delete with it; and kept stopped when the engine starts again.
    stop = f"docker update --restart=no {mount['name']} && docker stop {mount['name']}"
    return (
        f"{key}: {data_dir} is served by another Chroma already: {how}, and two servers on "
        f"one data dir corrupt its vectors; stop it first ({stop}), then deploy again"
    )


def data_elsewhere(
    homes: dict[str, Any], project_name: str, persist_path: str
) -> list[dict[str, Any]]:
    """Where this project's containers persist Chroma data, when not in the declared data dir.

    A mount at a persist path (1.x's, 0.x's, the declared line's, or the one the
    container's environment names) whose source holds ``chroma.sqlite3``, or the dir
    below a mount that the environment's persist path names (served_path). One entry
    per source (a volume, or a dir by its inode): the mount, with ``source`` the host
    dir to copy and ``containers`` the containers that persist there.
    """
    wanted = (homes.get("data_dir") or {}).get("inode")
    found: dict[str, dict[str, Any]] = {}
    for mount in homes["mounts"]:
        if mount["project"] != project_name or mount["oneoff"]:
            continue
        if mount["served"]:
            source, inode, has = mount["served"], mount["served_inode"], mount["served_sqlite"]
            kind = "bind"  # a dir inside the mount: copied as a dir
        elif mount["target"] in PERSIST_TARGETS | {persist_path, mount["persist"]}:
            source, inode, has = mount["source"], mount["inode"], mount["has_sqlite"]
            kind = mount["type"]
        else:
            continue
        if not has or (wanted and inode == wanted):
            continue
        entry = found.setdefault(
            inode or source,
            {**mount, "type": kind, "source": source, "inode": inode, "containers": []},
        )
        entry["containers"].append(mount["name"])
    return sorted(found.values(), key=lambda m: m["source"])


def users_of(homes: dict[str, Any], source: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container that mounts ``source`` (by inode, or serves it below a mount), of
    any project, stopped too."""
    inode = source["inode"]
    return [m for m in homes["mounts"] if inode and inode in (m["inode"], m["served_inode"])]


def spelled(source: dict[str, Any]) -> str:
    """A source as a user knows it: the named volume, or the dir."""
    if source["type"] == "volume":
        return f"the named volume {source['volume']}"
    return source["source"]


# One line per mount of every container: fields the shell reads with IFS='|', the
# source last, so a '|' inside a source path stays in it.
_MOUNT_LINE = (
    "{{$c := .}}{{range .Mounts}}"
    "{{$c.Id}}|{{$c.Name}}|{{$c.State.Status}}|{{$c.HostConfig.RestartPolicy.Name}}|"
    # A container made without labels has none (null): `with` skips it, where
    # `index` would fail the whole inspect.
    '{{with $c.Config.Labels}}{{index . "com.docker.compose.project"}}{{end}}|'
    '{{with $c.Config.Labels}}{{index . "com.docker.compose.service"}}{{end}}|'
    '{{with $c.Config.Labels}}{{index . "com.docker.compose.oneoff"}}{{end}}|'
    '{{with $c.Config.Labels}}{{index . "com.docker.compose.project.working_dir"}}{{end}}|'
    # Where the server persists when its environment says (1.x CHROMA_PERSIST_PATH, 0.x
    # PERSIST_DIRECTORY), each value followed by ";": only those two names are printed,
    # never the environment (it may hold secrets).
    '{{range $c.Config.Env}}{{$kv := split . "="}}{{if or (eq (index $kv 0) '
    '"CHROMA_PERSIST_PATH") (eq (index $kv 0) "PERSIST_DIRECTORY")}}{{index $kv 1}};{{end}}'
    "{{end}}|"
    '{{.RW}}|{{.Type}}|{{index . "Name"}}|{{.Destination}}|{{.Source}}\n{{end}}'
)

# Fields of a mount line, in order.
_FIELDS = (
    "id", "name", "state", "restart", "project", "service", "oneoff", "working_dir",
    "persist", "rw", "type", "volume", "target", "source",
)  # fmt: skip


class DataHomes(FactBase[dict[str, Any]]):
    """The declared data dir's identity, and every container mount on the host.

    ``{"docker": bool, "data_dir": None | {"inode": "dev:ino", "has_sqlite":
    bool, "entries": files other than .gitkeep in it, "mount_point": bool},
    "mounts": [{"id", "name", "state", "restart", "project" (compose project
    label or ""), "service", "oneoff": bool, "working_dir" (compose's project
    dir label or ""), "persist" (the container's CHROMA_PERSIST_PATH or
    PERSIST_DIRECTORY, or ""), "type": "bind"|"volume", "volume" (name or ""),
    "target", "source", "inode": "dev:ino" | None (not readable), "has_sqlite":
    bool, "served", "served_inode", "served_sqlite" (the dir below the mount
    the persist path names: served_path)}]}``. ``data_dir`` None: nothing at the path.
    ``has_sqlite``: ``chroma.sqlite3`` is a file at the top of that dir, read on
    the host (a volume's files are only readable as root). ``docker`` False: no
    docker command or the daemon does not answer (then no mounts).
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"docker": False, "data_dir": None, "mounts": []}

    def command(self, data_dir: str) -> str:
        quoted = shell_word(data_dir)
        # Every run reads this on every host: the sources are stat'ed in one process, and
        # the database file is looked for with the shell's own test, not one per mount.
        return (
            f"echo @@data_dir; if test -e {quoted}; then "
            f"stat -L -c 'inode=%d:%i' -- {quoted} {quoted}/..; "
            f"test -f {quoted}/chroma.sqlite3 && echo sqlite; n=0; "
            f"for e in {quoted}/* {quoted}/.[!.]* {quoted}/..?*; do "
            '{ [ -e "$e" ] || [ -L "$e" ]; } || continue; '
            'case "${e##*/}" in .gitkeep) ;; *) n=$((n+1));; esac; done; echo "entries=$n"; fi; '
            "command -v docker >/dev/null 2>&1 || exit 0; "
            "ids=$(docker ps -aq --no-trunc 2>/dev/null) || exit 0; echo @@docker; "
            '[ -n "$ids" ] || exit 0; '
            f"docker inspect --format {shell_word(_MOUNT_LINE)} $ids 2>/dev/null | {{ set --; "
            "while IFS='|' read -r id name state restart project service oneoff working_dir "
            "persist rw type volume target source; do "
            'case "$type" in bind|volume) ;; *) continue;; esac; '
            "echo @@mount; printf '%s\\n' \"$id|$name|$state|$restart|$project|$service|"
            '$oneoff|$working_dir|$persist|$rw|$type|$volume|$target|$source"; '
            'set -- "$@" "$source"; '
            # The dir the server persists to inside this mount (facts.datahomes.served_path).
            # Without one in its environment, where each line persists by default.
            'for p in "${persist%%;*}" /data /chroma/chroma; do case "$p" in "$target"/*) '
            'set -- "$@" "$source${p#"$target"}";; esac; done; done; '
            "echo @@sources; [ $# -eq 0 ] || stat -L -c 'inode=%d:%i|%n' -- \"$@\" 2>/dev/null; "
            'for s; do test -f "$s/chroma.sqlite3" && printf \'sqlite|%s\\n\' "$s"; done; true; }'
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        result = self.default()
        section = ""
        data_dir: list[str] = []
        lines: list[str] = []
        inodes: dict[str, str] = {}
        sqlite: set[str] = set()
        for line in output:
            if line.startswith("@@"):
                section = line[2:]
                result["docker"] = result["docker"] or section == "docker"
            elif section == "data_dir":
                data_dir.append(line)
            elif section == "mount":
                lines.append(line)
            elif section == "sources" and line.startswith("inode="):
                inode, _, source = line[6:].partition("|")
                inodes[source] = inode
            elif section == "sources" and line.startswith("sqlite|"):
                sqlite.add(line[7:])
        if data_dir:
            found = [line[6:] for line in data_dir if line.startswith("inode=")]
            entries = next((line[8:] for line in data_dir if line.startswith("entries=")), "0")
            result["data_dir"] = {
                "inode": found[0] if found else None,
                # Another device than its parent's: a mount point (a disk of its own).
                "mount_point": len(found) > 1 and found[0].split(":")[0] != found[1].split(":")[0],
                "has_sqlite": "sqlite" in data_dir,
                "entries": int(entries) if entries.isdigit() else 0,
            }
        for line in lines:
            fields = line.split("|", len(_FIELDS) - 1)
            if len(fields) != len(_FIELDS):
                continue  # a source path holding a newline: not a path Chroma data is in
            mount: dict[str, Any] = dict(zip(_FIELDS, fields, strict=True))
            mount["name"] = mount["name"].lstrip("/")
            for label in ("project", "service", "oneoff", "working_dir", "volume"):  # a missing key
                mount[label] = "" if mount[label] == "<no value>" else mount[label]
            mount["oneoff"] = mount["oneoff"].lower() == "true"
            mount["rw"] = mount["rw"].lower() != "false"
            mount["persist"] = mount["persist"].split(";")[0]
            mount["inode"] = inodes.get(mount["source"])
            mount["has_sqlite"] = mount["source"] in sqlite
            served = served_path(mount, sqlite)
            mount["served"] = served
            mount["served_inode"] = inodes.get(served) if served else None
            mount["served_sqlite"] = served in sqlite if served else False
            result["mounts"].append(mount)
        result["mounts"].sort(key=lambda m: (m["project"], m["name"], m["target"]))
        return result


def opened_elsewhere(
    homes: dict[str, Any], opened: dict[str, Any], container: str
) -> dict[str, Any] | None:
    """The bind mount of ``container`` (running) whose source path now names another dir
    than the one the container has open at its target (OpenedDataDir): the dir moved away
    under it and another put in its place. It serves the one it opened; its next start
    serves the other. Compared with the mount's own source, not the declared data dir: a
    key changed since (chroma_data_dir, a version whose persist path differs) must not hide
    it. Else None."""
    for m in homes["mounts"]:
        inode = opened["inodes"].get(m["target"])
        if (m["name"] == container and m["state"] == "running" and m["type"] == "bind"
                and inode and m["inode"] and inode != m["inode"]):  # fmt: skip
            return m
    return None


def served_path(
    mount: dict[str, Any], sqlite: set[str] | frozenset[str] = frozenset()
) -> str | None:
    """The host dir a server persists to when its persist path is below the mount's target.

    A parent dir mounted at /srv and CHROMA_PERSIST_PATH=/srv/chroma_data serve
    ``<source>/chroma_data``, and a 0.x volume mounted at /chroma serves its
    ``chroma/`` (the image's default /chroma/chroma): no mount's source is that
    dir, yet a server writes it. The environment's path first; without one, the
    versions' defaults, the one holding ``chroma.sqlite3`` (in ``sqlite``) first.
    """
    target = mount["target"].rstrip("/")
    wanted = [mount["persist"]] if mount["persist"] else ["/data", "/chroma/chroma"]
    below = [mount["source"] + p[len(target) :] for p in wanted if p.startswith(target + "/")]
    return next((path for path in below if path in sqlite), below[0] if below else None)


_SCHEMA_PROGRAM = (Path(__file__).resolve().parents[1] / "files" / "chroma_schema.py").read_text()


# The counts files/chroma_schema.py prints as ``@name=N``.
COUNTS = ("collections", "segment_dirs", "segment_dirs_named")


class DataSchema(FactBase[dict[str, Any]]):
    """The schema level of the Chroma database in ``data_dir``: which version wrote it.

    ``{"levels": {migrations dir: highest migration applied} | None, "error": str |
    None, "collections": how many it holds | None, "segment_dirs": the segment dirs
    beside it | None, "segment_dirs_named": how many of them it names | None}``. ``levels`` None: no
    ``chroma.sqlite3`` there, no python3 on the host, or the file could not be read
    (``error`` says why). The program is
    files/chroma_schema.py, sent on the shell's standard input, so no tool must be
    uploaded before a fact can read it. declaration/versions.py says which
    releases wrote a level and which can open it.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {
            "levels": None,
            "error": None,
            "collections": None,
            "segment_dirs": None,
            "segment_dirs_named": None,
        }

    def command(self, data_dir: str) -> str:
        database = shell_word(f"{data_dir}/chroma.sqlite3")
        return (
            f"test -f {database} || exit 0; command -v python3 >/dev/null 2>&1 || "
            "{ echo 'error=python3 is not installed'; exit 0; }; "
            f"python3 - {database} <<'CHROMA_SCHEMA'\n{_SCHEMA_PROGRAM}\nCHROMA_SCHEMA\n"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        levels: dict[str, int] = {}
        counts: dict[str, int | None] = dict.fromkeys(COUNTS)
        for line in output:
            name, _, value = line.partition("=")
            if name == "error":
                return {**self.default(), "error": value}
            if name.startswith("@"):
                if name[1:] in counts and value.strip().isdigit():
                    counts[name[1:]] = int(value)
            elif value.strip().isdigit():
                levels[name] = int(value)
        return {"levels": levels or None, "error": None, **counts}


class OpenedDataDir(FactBase[dict[str, Any]]):
    """The identity of the dirs a running container has at ``targets``, as it sees them.

    ``{"inodes": {target: "dev:ino"}}``: read through ``/proc/<pid>/root`` (the container's
    own view of its mounts), so a data dir moved away while Chroma runs, and another put at
    its path, shows as two dirs: the server keeps the one it opened, and DataHomes' reading
    of the host path names the new one. A target missing: not there in the container, no
    such container running, no docker, or not readable (not root).
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"inodes": {}}

    def command(self, container: str, targets: list[str]) -> str:
        paths = " ".join(f'"/proc/$pid/root"{shell_word(target)}' for target in targets)
        return (
            "command -v docker >/dev/null 2>&1 || exit 0; "
            f"pid=$(docker inspect --format '{{{{.State.Pid}}}}' {shell_word(container)} "
            '2>/dev/null) || exit 0; case "$pid" in ""|0|*[!0-9]*) exit 0;; esac; '
            f"stat -L -c 'inode=%d:%i|%n' -- {paths} 2>/dev/null; true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        inodes = {}
        for line in output:
            if line.startswith("inode="):
                inode, _, path = line[6:].partition("|")
                _, _, target = path.partition("/root")
                inodes[target] = inode.strip()
        return {"inodes": inodes}
