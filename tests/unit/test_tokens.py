"""A token per client on the control machine (plumbing/tokens.py): files, modes, rotation.

Real files in a temporary dir; the time is given, so the overlap's end is exact.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from declaration.settings import SettingsError, load_settings
from plumbing.tokens import clients_for_host


def settings(tokens_dir: Path, **data):
    return load_settings({
        "chroma_auth_proxy": True, "chroma_tokens_dir": str(tokens_dir),
        "chroma_tokens": {"ingest": "write", "dashboard": "read", "ops": "admin"}, **data,
    })  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def no_legacy_token(monkeypatch):
    monkeypatch.delenv("CHROMA_AUTH_TOKEN", raising=False)


def test_missing_tokens_are_generated_0600_in_a_0700_dir_and_kept(tmp_path):
    tokens_dir = tmp_path / "tokens"
    first = clients_for_host(settings(tokens_dir), now=1000)
    assert first is not None
    names = {client.name: client.role for client in first.clients}
    # The host's own checks get a client of their own; no default without today's token.
    assert names == {"chroma-deploy": "write", "dashboard": "read", "ingest": "write",
                     "ops": "admin"}  # fmt: skip
    assert mode(tokens_dir) == 0o700
    for client in first.clients:
        path = tokens_dir / f"{client.name}.token"
        assert mode(path) == 0o600 and path.read_text().strip() == client.token
        assert len(client.token) >= 40 and client.token not in repr(first)
    again = clients_for_host(settings(tokens_dir), now=2000)
    assert again == first
    assert len({client.token for client in first.clients}) == len(first.clients)


def test_todays_token_is_client_default_with_role_write(tmp_path, monkeypatch):
    legacy = "L" * 20 + "legacy-token"
    monkeypatch.setenv("CHROMA_AUTH_TOKEN", legacy)
    # Without a tokens dir: the one client, whose token the host's checks and the app use.
    plain = clients_for_host(load_settings({"chroma_auth_proxy": True}))
    assert plain is not None
    assert [(c.name, c.role, c.token) for c in plain.clients] == [("default", "write", legacy)]
    assert plain.host_tools == plain.app == legacy
    assert (
        'if ($chroma_token = "' + legacy + '") { set $client "default"; set $role "write"; }'
        in plain.conf()
    )
    with_dir = clients_for_host(settings(tmp_path / "tokens"))
    assert with_dir is not None
    default = next(c for c in with_dir.clients if c.name == "default")
    assert (default.role, default.token) == ("write", legacy)
    assert with_dir.host_tools != legacy
    assert not (tmp_path / "tokens" / "default.token").exists()


def test_a_rotation_keeps_the_old_value_for_the_overlap_then_drops_it(tmp_path):
    tokens_dir = tmp_path / "tokens"
    overlap = {"chroma_token_overlap_seconds": 600}
    old = clients_for_host(settings(tokens_dir, **overlap), now=1000)
    assert old is not None
    old_ingest = next(c for c in old.clients if c.name == "ingest").token
    new_value = "N" * 30 + "-rotated"
    (tokens_dir / "ingest.token").write_text(new_value + "\n")
    rotated = clients_for_host(settings(tokens_dir, **overlap), now=1100)
    assert rotated is not None
    ingest = next(c for c in rotated.clients if c.name == "ingest")
    assert (ingest.token, ingest.previous, ingest.previous_until) == (new_value, old_ingest, 1700)
    conf = rotated.conf()
    assert f'"{old_ingest}"' in conf and f'"{new_value}"' in conf
    assert "# client ingest write until 1700\n" in conf
    # The same expiry on every run during the overlap: a second deploy changes nothing.
    assert clients_for_host(settings(tokens_dir, **overlap), now=1500) == rotated
    after = clients_for_host(settings(tokens_dir, **overlap), now=1700)
    assert after is not None
    assert old_ingest not in after.conf() and "until" not in after.conf()


def test_refusals_name_the_key_and_say_what_to_do(tmp_path):
    tokens_dir = tmp_path / "tokens"
    tokens_dir.mkdir(mode=0o755)
    os.chmod(tokens_dir, 0o755)
    with pytest.raises(SettingsError, match=r"^chroma_tokens_dir: .* has mode 755, .*chmod 700"):
        clients_for_host(settings(tokens_dir))
    os.chmod(tokens_dir, 0o700)
    (tokens_dir / "ingest.token").write_text("short\n")
    os.chmod(tokens_dir / "ingest.token", 0o600)
    with pytest.raises(SettingsError, match=r"ingest.token' does not hold a token of 16 to 256"):
        clients_for_host(settings(tokens_dir))
    same = "S" * 32
    (tokens_dir / "ingest.token").write_text(same)
    (tokens_dir / "ops.token").write_text(same)
    os.chmod(tokens_dir / "ops.token", 0o600)
    with pytest.raises(SettingsError, match=r"clients 'ingest' and 'ops' have the same token"):
        clients_for_host(settings(tokens_dir))
    os.chmod(tokens_dir / "ops.token", 0o644)
    with pytest.raises(SettingsError, match=r"ops.token' has mode 644; chmod 600"):
        clients_for_host(settings(tokens_dir))


@pytest.mark.parametrize(
    ("tokens", "said"),
    [
        ({"Dashboard": "read"}, "client names of 1 to 64 of a-z 0-9 _ - (not 'Dashboard')"),
        ({"dashboard": "reader"}, "a role of read, write or admin for 'dashboard' (not 'reader')"),
        ({"chroma-deploy": "admin"}, "'chroma-deploy' is the host's own checks' client"),
        ("dashboard", "a mapping of client name to read, write or admin"),
    ],
)
def test_a_bad_client_or_role_is_refused_in_one_line(tmp_path, tokens, said):
    with pytest.raises(SettingsError) as refused:
        settings(tmp_path, chroma_tokens=tokens)
    message = str(refused.value)
    assert message.startswith("chroma_tokens: ") and said in message and "\n" not in message


def test_clients_need_the_proxy_and_a_tokens_dir():
    with pytest.raises(SettingsError, match=r"^chroma_tokens_dir: chroma_tokens needs it"):
        load_settings({"chroma_auth_proxy": True, "chroma_tokens": {"a": "read"}})
    with pytest.raises(SettingsError, match=r"^chroma_tokens: clients need chroma_auth_proxy=true"):
        load_settings({"chroma_tokens": {"a": "read"}, "chroma_tokens_dir": "/etc/kb/tokens"})


def test_the_clients_file_compares_each_token_exactly_and_names_no_token_in_comments(tmp_path):
    clients = clients_for_host(settings(tmp_path / "tokens"))
    assert clients is not None
    conf = clients.conf()
    for client in clients.clients:
        rule = (f'if ($chroma_token = "{client.token}") '
                f'{{ set $client "{client.name}"; set $role "{client.role}"; }}')  # fmt: skip
        assert conf.count(rule) == 1
    comments = [line for line in conf.splitlines() if line.startswith("#")]
    assert [line for line in comments if line.startswith("# client ")] == [
        f"# client {line}" for line in clients.declared
    ]
    assert not any(client.token in "\n".join(comments) for client in clients.clients)
    # No regular expression, no map: nothing that could match in another letter case.
    assert "~" not in conf.replace(clients.host_tools, "") and "map " not in conf


def test_drift_names_the_clients_that_differ_and_a_set_the_proxy_did_not_load(tmp_path):
    from checks.compare import HostFacts, compare_clients
    from declaration.resources import Declared

    declared_settings = settings(tmp_path / "tokens")
    clients = clients_for_host(declared_settings)
    declared = Declared(declared_settings, 0, 0, clients.host_tools if clients else None,
                        clients=clients)  # fmt: skip
    sha = next(p for p in declared.paths if p.path == declared.clients_file).sha256
    assert clients is not None and sha
    base = {"data_dirs": {}, "project_files": {}, "stack": {}, "health": {}, "legacy_volumes": []}
    same = {"clients": clients.declared, "file": sha, "loaded": sha}
    assert compare_clients(declared, HostFacts(**base, proxy_clients=same)) == []
    revoked = [line for line in clients.declared if not line.startswith("ops ")]
    items = compare_clients(
        declared, HostFacts(**base, proxy_clients={**same, "clients": revoked, "file": "0" * 64})
    )
    assert [(i.kind, i.actual) for i in items] == [("tokens", ", ".join(revoked))]
    rotated = compare_clients(declared, HostFacts(**base, proxy_clients={**same, "file": "1" * 64}))
    assert [(i.kind, i.expected, i.actual) for i in rotated] == [
        ("tokens", "the declared tokens", "another token")
    ]
    stale = compare_clients(declared, HostFacts(**base, proxy_clients={**same, "loaded": "2" * 64}))
    assert [(i.resource, i.actual) for i in stale] == [("the proxy", "serves another set")]


def test_the_application_gets_a_client_and_a_token_file_of_its_own(tmp_path):
    from declaration.resources import Declared

    app = {"chroma_app_enabled": True, "chroma_app_image": "registry.example/kb:1.2",
           "chroma_app_name": "kb-agent"}  # fmt: skip
    declared_settings = settings(tmp_path / "tokens", **app)
    clients = clients_for_host(declared_settings)
    assert clients is not None
    agent = next(client for client in clients.clients if client.name == "kb-agent")
    assert agent.role == "write" and clients.app == agent.token
    assert (tmp_path / "tokens" / "kb-agent.token").read_text().strip() == agent.token
    declared = Declared(declared_settings, 0, 0, clients.host_tools, clients=clients)
    files = {path.path: path for path in declared.paths}
    app_file = files["/srv/chroma/secrets/app/chroma-token.env"]
    assert app_file.mode == "600" and app_file.content == f"CHROMA_AUTH_TOKEN={agent.token}\n"
    # Its dir holds its token only; the host's checks' token is another client's.
    assert files["/srv/chroma/secrets/chroma-token.env"].content != app_file.content
