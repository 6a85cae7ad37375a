"""A token per client with a role, and the audit log (#25 sections 2 and 3), on one stack.

One Chroma 1.5.9 stack behind the proxy with clients `dashboard` (read), `ingest` (write),
`ops` (admin) in a tokens dir, and today's single token as `default` (write). The real
chromadb client with each role; real curl for the bodies of 401 and 403; every role against
every kind of endpoint (the matrix, printed); a rotation, a revocation and the end of a
rotation's overlap under a client loop, each reaching nginx by a reload with the same
containers and no failed request; the audit log answering "who deleted collection X" with
jq; drift naming a token set that differs; no token in any output, `docker inspect`, the
process list, the containers' logs or the audit log. Then admin's reset, last.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import chromadb
import httpx
import pytest
from conftest import base_data, converge, move_chroma, run_deploy, run_drift, sh
from harness.proxy_stack import ServedStack

pytestmark = [pytest.mark.docker]

API = "/api/v2/tenants/default_tenant/databases/default_database"


class Stack(ServedStack):
    """The shared stack: its data, the legacy token's environment, the tokens dir, its port."""

    def __init__(self, base: Path) -> None:
        self.name = f"cdtok{uuid.uuid4().hex[:8]}"
        self.project_dir = base / "stack"
        self.tokens_dir = base / "tokens"
        self.legacy = secrets.token_hex(20)
        self.env = {**os.environ, "CHROMA_AUTH_TOKEN": self.legacy}
        self.data = base_data(
            self.project_dir,
            self.name,
            chroma_auth_proxy=True,
            chroma_tokens=json.dumps({"dashboard": "read", "ingest": "write", "ops": "admin"}),
            chroma_tokens_dir=str(self.tokens_dir),
            # Not root: nginx runs a master process, which reloads (as root it cannot).
            chroma_owner=1234,
            chroma_group=1234,
            chroma_env=json.dumps({"CHROMA_ALLOW_RESET": "true"}),
        )
        self.port = self.data["chroma_port"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.outputs: list[str] = []
        self.seen_tokens: set[str] = {self.legacy}

    def token(self, client: str) -> str:
        value = (self.tokens_dir / f"{client}.token").read_text().strip()
        self.seen_tokens.add(value)
        return value

    def client(self, name: str) -> Any:
        token = self.legacy if name == "default" else self.token(name)
        return chromadb.HttpClient(
            host="127.0.0.1", port=self.port, headers={"X-Chroma-Token": token}
        )

    def deploy(self, data: dict[str, Any] | None = None, *extra: str, twice: bool = False) -> Any:
        """A deploy (``twice``: the converge, whose second run changes nothing)."""
        if twice:
            result = converge(data or self.data, self.env, *extra)
        else:
            result = run_deploy(data or self.data, *extra, env=self.env)
        self.outputs.append(result.output)
        assert result.returncode == 0, result.output
        return result

    def audit(self) -> list[dict[str, Any]]:
        text = (self.project_dir / "logs" / "proxy" / "audit.log").read_text()
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("tok")
    shared = Stack(base)
    shared.deploy(twice=True)
    yield shared
    if (shared.project_dir / "docker-compose.yml").exists() and not os.environ.get("TOK_KEEP"):
        sh(f"cd '{shared.project_dir}' && docker compose down --timeout 5", check=False)
    if not os.environ.get("TOK_KEEP"):
        shutil.rmtree(base, ignore_errors=True)


def test_the_tokens_dir_and_the_host_files_are_private(stack):
    assert sh(f"stat -c %a '{stack.tokens_dir}'").stdout.strip() == "700"
    for name in ("dashboard", "ingest", "ops", "chroma-deploy"):
        assert sh(f"stat -c %a '{stack.tokens_dir / f'{name}.token'}'").stdout.strip() == "600"
    proxy_dir = stack.project_dir / "secrets" / "proxy"
    found = sh(f"stat -c '%a %u' '{proxy_dir}' '{proxy_dir / 'clients.conf'}'").stdout.split("\n")
    assert found[:2] == ["700 1234", "600 1234"]
    # The fact reads names, roles and digests; the host's file holds the tokens.
    names = sh(f"sed -n 's/^# client //p' '{proxy_dir / 'clients.conf'}'").stdout.split("\n")
    assert names[:5] == ["chroma-deploy write", "dashboard read", "default write",
                         "ingest write", "ops admin"]  # fmt: skip


def test_each_role_with_the_real_chromadb_client(stack):
    ingest, dashboard, ops = stack.client("ingest"), stack.client("dashboard"), stack.client("ops")
    written = ingest.get_or_create_collection("roles", embedding_function=None)
    written.add(ids=["r1", "r2"], embeddings=[[1.0, 2.0], [2.0, 1.0]], documents=["a", "b"])
    read = dashboard.get_collection("roles", embedding_function=None)
    assert sorted(read.get()["ids"]) == ["r1", "r2"]
    assert read.count() == 2
    assert read.query(query_embeddings=[[1.0, 2.0]], n_results=1)["ids"] == [["r1"]]
    with pytest.raises(Exception, match="this request needs role write; client dashboard has"):
        read.add(ids=["r3"], embeddings=[[3.0, 3.0]])
    with pytest.raises(Exception, match="needs role write; client dashboard has role read"):
        dashboard.create_collection("not-allowed", embedding_function=None)
    with pytest.raises(Exception, match="needs role admin; client ingest has role write"):
        ingest.reset()
    # Today's single token is client default, role write: nothing broke on the upgrade.
    assert stack.client("default").get_collection("roles", embedding_function=None).count() == 2
    assert sorted(ops.get_collection("roles", embedding_function=None).get()["ids"]) == [
        "r1",
        "r2",
    ]
    assert read.count() == 2  # the refused add changed nothing


ENDPOINTS: list[tuple[str, str, str, Any]] = [
    # (what, method, path ({id}: the collection's id, {name}: a fresh name), body)
    ("heartbeat", "GET", "/api/v2/heartbeat", None),
    ("list collections", "GET", f"{API}/collections", None),
    ("get", "POST", f"{API}/collections/{{id}}/get", {}),
    ("query", "POST", f"{API}/collections/{{id}}/query",
     {"query_embeddings": [[1.0, 2.0]], "n_results": 1}),
    ("count", "GET", f"{API}/collections/{{id}}/count", None),
    ("add", "POST", f"{API}/collections/{{id}}/add",
     {"ids": ["{name}"], "embeddings": [[5.0, 5.0]]}),
    ("upsert", "POST", f"{API}/collections/{{id}}/upsert",
     {"ids": ["{name}"], "embeddings": [[6.0, 6.0]]}),
    ("delete records", "POST", f"{API}/collections/{{id}}/delete", {"ids": ["{name}"]}),
    ("create collection", "POST", f"{API}/collections", {"name": "{name}"}),
    ("delete collection", "DELETE", f"{API}/collections/{{name}}", None),
    ("create tenant", "POST", "/api/v2/tenants", {"name": "{name}"}),
    ("create database", "POST", "/api/v2/tenants/default_tenant/databases", {"name": "{name}"}),
    ("openapi.json", "GET", "/openapi.json", None),
    ("docs", "GET", "/docs", None),
    ("reset", "POST", "/api/v2/reset", None),
]  # fmt: skip
NEEDS = {
    "heartbeat": "read", "list collections": "read", "get": "read", "query": "read",
    "count": "read", "add": "write", "upsert": "write", "delete records": "write",
    "create collection": "write", "delete collection": "write", "create tenant": "admin",
    "create database": "admin", "openapi.json": "admin", "docs": "admin", "reset": "admin",
}  # fmt: skip
RANK = {"read": 1, "write": 2, "admin": 3}


def ask(stack: Stack, token: str | None, what: str, collection_id: str) -> httpx.Response:
    return ask_with(stack, token, what, collection_id, stack.token("ops"))


def ask_with(
    stack: Stack, token: str | None, what: str, collection_id: str, admin: str
) -> httpx.Response:
    """One request of kind ``what``; ``admin``'s token makes what it needs first."""
    _, method, path, body = next(endpoint for endpoint in ENDPOINTS if endpoint[0] == what)
    name = f"m{uuid.uuid4().hex[:10]}"
    if what == "delete collection":  # a collection of its own to delete
        made = httpx.post(f"{stack.url}{API}/collections", json={"name": name},
                          headers={"X-Chroma-Token": admin}, timeout=30)  # fmt: skip
        assert made.status_code == 200, made.text
    path = path.replace("{id}", collection_id).replace("{name}", name)
    if body is not None:
        body = json.loads(json.dumps(body).replace("{name}", name))
    headers = {"X-Chroma-Token": token} if token else {}
    return httpx.request(method, stack.url + path, json=body, headers=headers, timeout=30)


def test_role_matrix_client_by_endpoint(stack):
    """Every role against every kind of endpoint: 401 without a known token, 403 below the
    role needed (its body one line naming it), what Chroma answers otherwise. Not reset for
    admin here: the last test does it."""
    collection = stack.client("ingest").get_or_create_collection("matrix", embedding_function=None)
    collection.upsert(ids=["x"], embeddings=[[1.0, 2.0]])
    tokens = {"none": None, "unknown": secrets.token_hex(20), "dashboard": stack.token("dashboard"),
              "ingest": stack.token("ingest"), "ops": stack.token("ops")}  # fmt: skip
    roles = {"dashboard": "read", "ingest": "write", "ops": "admin"}
    matrix: dict[str, dict[str, int]] = {}
    for client, token in tokens.items():
        for what, *_ in ENDPOINTS:
            if client == "ops" and what == "reset":
                continue
            answer = ask(stack, token, what, str(collection.id))
            matrix.setdefault(what, {})[client] = answer.status_code
            role = roles.get(client)
            if role is None:
                assert answer.status_code == 401, (client, what, answer.text)
                assert answer.text == "missing or unknown token\n"
            elif RANK[role] < RANK[NEEDS[what]]:
                assert answer.status_code == 403, (client, what, answer.text)
                assert answer.text == (
                    f"this request needs role {NEEDS[what]}; client {client} has role {role}\n"
                )
            else:  # what Chroma answers: 200, 201 (add), 303 (1.x: /docs to /docs/)
                assert answer.status_code in (200, 201, 303), (client, what, answer.text)
    width = max(map(len, matrix))
    print("\n" + " " * width + "  " + "  ".join(f"{c:>9}" for c in tokens))
    for what, row in matrix.items():
        print(f"{what:<{width}}  " + "  ".join(f"{row.get(c, '-'):>9}" for c in tokens))


def test_a_token_is_compared_exactly_in_either_header(stack):
    token = stack.token("dashboard")
    for changed in (token.upper(), token.lower(), token[:-1], token + "x"):
        if changed == token:
            continue
        for headers in ({"X-Chroma-Token": changed}, {"Authorization": f"Bearer {changed}"}):
            answer = httpx.get(f"{stack.url}/api/v2/heartbeat", headers=headers, timeout=10)
            assert answer.status_code == 401, headers
    bearer = httpx.get(f"{stack.url}/api/v2/heartbeat",
                       headers={"Authorization": f"bearer {token}"}, timeout=10)  # fmt: skip
    assert bearer.status_code == 200
    # Real curl: the bodies a user sees, one line each.
    header = stack.project_dir.parent / "header"
    header.write_text(f"X-Chroma-Token: {token}\n")
    refused = sh(f"curl -sS -X POST -H @'{header}' -w ' %{{http_code}}' {stack.url}/api/v2/reset")
    assert refused.stdout == "this request needs role admin; client dashboard has role read\n 403"
    nobody = sh(f"curl -sS -w ' %{{http_code}}' {stack.url}/api/v2/heartbeat").stdout
    assert nobody == "missing or unknown token\n 401"


class Loop:
    """Requests through the proxy until stopped, from several threads, each on a kept-alive
    connection as the chromadb client keeps them (an httpx client, which opens a new one
    when the server closed the idle one) and on new ones (http.client: light on a loaded
    machine), with the tokens that stay valid throughout: a read client's and the rotated
    client's old one."""

    def __init__(self, stack: Stack, tokens: list[str], collection_id: str) -> None:
        self.port, self.tokens = stack.port, tokens
        self.get = f"{API}/collections/{collection_id}/get"
        self.done = threading.Event()
        self.ok = 0
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(4)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)

    def count(self, status: int, body: bytes) -> None:
        with self.lock:
            if status == 200:
                self.ok += 1
            else:
                self.failed.append(f"HTTP {status}: {body[:80]!r}")

    def run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10) as kept:
            while not self.done.is_set():
                for token in self.tokens:
                    headers = {"X-Chroma-Token": token}
                    try:
                        answer = kept.post(self.get, json={}, headers=headers)
                        self.count(answer.status_code, answer.content)
                        fresh = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                        fresh.request("GET", "/api/v2/heartbeat", headers=headers)
                        response = fresh.getresponse()
                        self.count(response.status, response.read())
                        fresh.close()
                    except (OSError, http.client.HTTPException, httpx.HTTPError) as error:
                        with self.lock:
                            self.failed.append(repr(error))


def status(stack: Stack, token: str) -> int:
    headers = {"X-Chroma-Token": token}
    return httpx.get(f"{stack.url}/api/v2/heartbeat", headers=headers, timeout=10).status_code


def test_rotation_revocation_and_overlap_end_by_reload_without_a_failed_request(stack):
    collection = stack.client("ingest").get_or_create_collection("loop", embedding_function=None)
    collection.upsert(ids=["l1"], embeddings=[[1.0, 1.0]])
    old_ingest, ops = stack.token("ingest"), stack.token("ops")
    before_ids = stack.container_ids()
    loop = Loop(stack, [stack.token("dashboard"), old_ingest], str(collection.id))
    loop.start()
    time.sleep(1)
    # A rotation: a new value in the client's file; the old one stays valid (the overlap).
    new_ingest = secrets.token_urlsafe(32)
    (stack.tokens_dir / "ingest.token").write_text(new_ingest + "\n")
    stack.seen_tokens.add(new_ingest)
    rotated = stack.deploy(twice=True)
    assert "reloading nginx in the proxy" in rotated.output
    assert (status(stack, new_ingest), status(stack, old_ingest)) == (200, 200)
    # A revocation: the name taken out of chroma_tokens.
    revoke = {**stack.data, "chroma_tokens": json.dumps({"dashboard": "read", "ingest": "write"})}
    revoked = stack.deploy(
        revoke, "-vvv", twice=True
    )  # every command in the output: no token in any
    assert "reloading nginx in the proxy" in revoked.output
    assert status(stack, ops) == 401
    time.sleep(1)
    loop.done.set()
    loop.join(30)
    print(f"rotation and revocation: {loop.ok} requests during the deploys, "
          f"{len(loop.failed)} failed")  # fmt: skip
    assert loop.failed == []
    assert loop.ok >= 2000
    assert stack.container_ids() == before_ids
    # The overlap's end (0 seconds: the old value goes at the next deploy), and ops back
    # with its kept token file: the module's declaration from here on.
    stack.data["chroma_token_overlap_seconds"] = 0
    ended = stack.deploy(twice=True)
    assert "reloading nginx in the proxy" in ended.output
    assert (status(stack, new_ingest), status(stack, old_ingest), status(stack, ops)) == (
        200, 401, 200
    )  # fmt: skip
    assert stack.container_ids() == before_ids


def test_audit_log_says_who_deleted_a_collection(stack):
    stack.client("ingest").get_or_create_collection("doomed", embedding_function=None)
    stack.client("ingest").delete_collection("doomed")
    time.sleep(0.5)
    lines = stack.audit()
    deleted = [
        line for line in lines
        if line["method"] == "DELETE" and line["path"].endswith("/collections/doomed")
    ]  # fmt: skip
    assert len(deleted) == 1
    line = deleted[0]
    assert set(line) == {"time", "client", "role", "method", "path", "status", "bytes",
                         "duration", "remote"}  # fmt: skip
    assert (line["client"], line["role"], line["status"]) == ("ingest", "write", 200)
    assert isinstance(line["bytes"], int) and isinstance(line["duration"], float)
    print("audit line: " + json.dumps(line))
    # The docs' jq one-liner (docs/security.md), as a user runs it.
    if shutil.which("jq"):
        audit = stack.project_dir / "logs" / "proxy" / "audit.log"
        who = sh(
            'jq -r \'select(.method == "DELETE" and (.path | endswith("/collections/doomed")))'
            f" | \"\\(.time) \\(.client) \\(.status)\"' '{audit}'"
        ).stdout.split()
        assert who[1:] == ["ingest", "200"]
    # Refused requests are there too, with no client name for an unknown token.
    assert any(line["status"] == 401 and line["client"] == "" for line in lines)
    assert any(line["status"] == 403 and line["role"] == "read" for line in lines)


def test_drift_names_a_token_set_that_differs(stack):
    clean = run_drift(stack.data, "--no-color", env=stack.env)
    stack.outputs.append(clean.output)
    assert clean.returncode == 0, clean.output
    more = {**stack.data, "chroma_tokens": json.dumps(
        {"dashboard": "read", "ingest": "write", "ops": "admin", "audit": "read"})}  # fmt: skip
    drifted = run_drift(more, "--no-color", env=stack.env)
    stack.outputs.append(drifted.output)
    assert drifted.returncode == 2, drifted.output
    stack.token("audit")
    assert "tokens" in drifted.output and "audit read" in drifted.output


def test_no_token_in_any_output_inspect_process_list_or_log(stack):
    tokens = {value for value in stack.seen_tokens if value}
    tokens |= {stack.token(name) for name in ("chroma-deploy", "dashboard", "ingest", "ops")}
    inspect = sh(
        f"docker inspect $(docker ps -aq --filter label=com.docker.compose.project={stack.name})"
    ).stdout
    processes = sh("ps auxww").stdout
    logs = sh(f"cd '{stack.project_dir}' && docker compose logs --no-color 2>&1").stdout
    audit = "".join(
        path.read_text() for path in (stack.project_dir / "logs" / "proxy").glob("audit.log*")
    )
    assert audit
    for text in (*stack.outputs, inspect, processes, logs, audit):
        for token in tokens:
            assert token not in text


def test_roles_on_chroma_0_6_3(project):
    """0.6.3 serves the same /api/v2 paths (its /openapi.json): the same roles hold. Its
    logs rotate at 1k keeping 3 files: the audit log too (renamed, reopened by nginx)."""
    project_dir, name = project
    tokens_dir = project_dir.parent / "tokens"
    data = base_data(
        project_dir, name, chroma_version="0.6.3", chroma_auth_proxy=True,
        chroma_tokens=json.dumps({"dashboard": "read", "ingest": "write", "ops": "admin"}),
        chroma_tokens_dir=str(tokens_dir), chroma_owner=1234, chroma_group=1234,
        chroma_log_max_size="1k", chroma_log_max_files=3,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "CHROMA_AUTH_TOKEN"}
    converge(data, env=env)
    old = Stack.__new__(Stack)
    old.url, old.tokens_dir, old.seen_tokens = (
        f"http://127.0.0.1:{data['chroma_port']}",
        tokens_dir,
        set(),
    )
    tokens = {name: old.token(name) for name in ("dashboard", "ingest", "ops")}
    created = httpx.post(f"{old.url}{API}/collections", json={"name": "old-roles"},
                         headers={"X-Chroma-Token": tokens["ingest"]}, timeout=30)  # fmt: skip
    assert created.status_code == 200, created.text
    collection_id = created.json()["id"]
    roles = {"dashboard": "read", "ingest": "write", "ops": "admin"}
    seen: dict[str, dict[str, int]] = {}
    for what in ("heartbeat", "get", "query", "count", "add", "create collection", "reset",
                 "create tenant", "openapi.json"):  # fmt: skip
        for client, role in roles.items():
            if client == "ops" and what == "reset":
                continue
            answer = ask_with(old, tokens[client], what, collection_id, tokens["ops"])
            seen.setdefault(what, {})[client] = answer.status_code
            if RANK[role] >= RANK[NEEDS[what]]:
                assert answer.status_code in (200, 201), (client, what, answer.text)
            else:
                assert answer.status_code == 403, (client, what, answer.text)
    print(f"0.6.3: {seen}")
    # The audit log, past 1k: rotated within the entrypoint's 5 s check, 3 files at most.
    audit = project_dir / "logs" / "proxy"
    deadline = time.monotonic() + 15
    while not (audit / "audit.log.1").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert (audit / "audit.log.1").exists()
    status(old, tokens["dashboard"])  # after the rename: nginx writes the reopened file
    time.sleep(0.5)
    files = sorted(path.name for path in audit.glob("audit.log*"))
    assert files[0] == "audit.log" and len(files) <= 3, files
    lines = [line for name in files for line in (audit / name).read_text().splitlines()]
    assert all(json.loads(line)["client"] in ("", "chroma-deploy", *roles) for line in lines)
    assert json.loads((audit / "audit.log").read_text().splitlines()[-1])["path"] == (
        "/api/v2/heartbeat"
    )


def test_chroma_on_a_new_address_is_found_again_by_a_reload(stack):
    """nginx keeps its connections to Chroma in an upstream, which takes the address once;
    the proxy's loop sees Chroma's new one and reloads nginx (a non-root owner: with the
    drain of a new clients file), in the same containers, with no deploy (#25 section 5)."""
    ids = stack.container_ids()
    token = stack.token("dashboard")
    count = stack.client("dashboard").get_collection("roles", embedding_function=None).count()
    old, new, begun = move_chroma(stack.name)
    found = None
    while found is None and time.monotonic() - begun < 60:
        try:
            if status(stack, token) == 200:
                found = time.monotonic() - begun
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    said = f"auth-proxy: Chroma moved from {old} to {new}: nginx reloaded"
    # Said once auth-proxy-reload returns, after its drain: new requests may be answered
    # a moment before (a busy machine: 200 seen, the line not yet in CI's run).
    deadline = time.monotonic() + 15
    logs = sh(f"docker logs {stack.name}-auth-proxy-1 2>&1").stdout
    while said not in logs and time.monotonic() < deadline:
        time.sleep(0.5)
        logs = sh(f"docker logs {stack.name}-auth-proxy-1 2>&1").stdout
    print(f"Chroma moved {old} -> {new}: answered through the proxy {found} s after its start")
    assert found is not None, logs
    assert said in logs, logs
    assert stack.container_ids() == ids
    assert stack.client("dashboard").get_collection("roles", embedding_function=None).count() \
        == count  # fmt: skip


def test_admins_reset_passes_and_empties_chroma(stack):
    """Last: it deletes every collection of the shared stack."""
    ops = stack.client("ops")
    assert ops.list_collections()
    assert ops.reset() is True
    assert ops.list_collections() == []
