"""A new set of clients (a token added, revoked or rotated) reaches the running proxy by a
reload, never a recreate of Chroma or the proxy."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from declaration.targets import StackTarget
from facts.compose import ComposeStack
from facts.tokens import ProxyClients
from operations.stack import compose_command
from plumbing import host_state
from plumbing.report import step


@operation()
def clients_served(stack: StackTarget, proxy_dir: str, sha256: str, image: str, uid: int):
    """The proxy has loaded the clients file whose digest is ``sha256``; else it reloads it.

    The file lives in a dir mounted into the proxy (not in its compose config), so a new
    one changes no container: ``auth-proxy-reload`` copies it, has ``nginx -t`` check it
    and reloads nginx, whose new workers take it while the old ones finish their
    requests; the proxy then writes the digest it loaded beside the file (``loaded``),
    which is what this compares. Run after project.paths wrote the file and before
    stack_up, whose check of the published port uses the host's own client's token.

    + stack: the compose project (where ``docker compose exec`` finds the proxy)
    + proxy_dir: the host's dir of clients.conf (Declared.proxy_dir)
    + sha256: the declared file's digest
    + image: the declared proxy image; a proxy running another (an older one, without
      auth-proxy-reload) is left to stack_up, which recreates it on the declared one
    + uid: who the proxy runs as. As root nginx runs as one process, which cannot
      reload: the proxy is restarted instead (the same container, about a second
      without answers). A non-root chroma_owner gets the reload, with no failed request.
    """
    found = host_state.read(ProxyClients, proxy_dir=proxy_dir)
    loaded = found["loaded"]
    if loaded is None:
        # No proxy of this image has started on this dir: stack_up starts (or recreates)
        # it, and it loads the file as it starts.
        host.noop(f"no proxy has loaded {proxy_dir}/clients.conf yet: the stack's start does")
        return
    containers = host_state.read(ComposeStack, **stack.read)["containers"]
    proxy = [c for c in containers if c["service"] == "auth-proxy" and c["state"] == "running"]
    if not proxy or proxy[0]["image"] != image:
        host.noop("the proxy is not running the declared image: the stack's start loads the file")
        return
    if loaded == sha256:
        host.noop(f"the proxy has loaded {proxy_dir}/clients.conf ({len(found['clients'] or [])} "
                  "client lines)")  # fmt: skip
        return
    if uid == 0:
        yield step(
            "restarting the proxy (it runs as root, one nginx process, which cannot reload): "
            f"{proxy_dir}/clients.conf is not the set it loaded"
        )
        yield compose_command(stack.project_dir, "restart", "auth-proxy")
        return
    yield step(f"reloading nginx in the proxy: {proxy_dir}/clients.conf is not the set it loaded")
    yield compose_command(
        stack.project_dir, "exec", "-T", "auth-proxy", "/usr/local/bin/auth-proxy-reload"
    )
