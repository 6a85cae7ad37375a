"""The auth proxy's clients: who each token is, with which role (docs/security.md).

The host gets them as one 0600 file of nginx lines, ``secrets/proxy/clients.conf``, which
the proxy includes in its server block (files/build-proxy-image.sh): a new set reaches
nginx by ``nginx -s reload``, never by a restart. Each token is compared exactly, letter
case included (an nginx ``if`` with ``=``; a ``map``'s string keys match in any case). The
file's ``# client`` lines say who is there, without a token: what the host's fact reads
(facts/tokens.py), so drift can name the clients and never see a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HEADER = (
    "# Managed by chroma-deploy: the auth proxy's clients (token -> client, role). It holds\n"
    "# their tokens: keep it 0600, never print it. Reloaded by nginx -s reload.\n"
)


@dataclass(frozen=True)
class Client:
    """One client: its name, its role, its token; and, for ``overlap`` seconds after a
    rotation, its old token and the epoch second that one stops being declared."""

    name: str
    role: str
    token: str = field(repr=False)
    previous: str | None = field(default=None, repr=False)
    previous_until: int | None = None


@dataclass(frozen=True)
class ProxyClients:
    """Every client of one host's proxy, and the tokens the host's own checks and the
    application service use (``app`` None: no application service)."""

    clients: tuple[Client, ...]
    host_tools: str = field(repr=False)
    app: str | None = field(default=None, repr=False)

    @property
    def declared(self) -> list[str]:
        """The ``# client`` lines without their prefix: what the host's fact reads back."""
        lines = []
        for client in self.clients:
            lines.append(f"{client.name} {client.role}")
            if client.previous is not None:
                lines.append(f"{client.name} {client.role} until {client.previous_until}")
        return lines

    def conf(self) -> str:
        """The include file: a comment per client, then one exact comparison per token."""
        rules = []
        for client in self.clients:
            tokens = [client.token] + ([client.previous] if client.previous else [])
            for token in tokens:
                rules.append(
                    f'if ($chroma_token = "{token}") '
                    f'{{ set $client "{client.name}"; set $role "{client.role}"; }}'
                )
        comments = "".join(f"# client {line}\n" for line in self.declared)
        return HEADER + comments + "\n".join(rules) + "\n"
