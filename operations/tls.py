"""A new certificate reaches the running proxy by a reload, never a recreate."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from declaration.targets import StackTarget
from facts.tls import ProxyCertificate
from operations.stack import compose_command
from plumbing.pyinfra_internals import is_executing
from plumbing.report import step


@operation()
def certificate_served(stack: StackTarget, tls_dir: str, address: str, port: int, uid: int):
    """The proxy serves the certificate in ``tls_dir``; else nginx reloads it.

    The certificate and key are files in a dir mounted into the proxy (not its
    compose config), so a renewed one changes no container: ``nginx -s reload``
    starts new workers on it while the old ones finish their requests. Compared
    before stack_up, whose check of the published port verifies the certificate
    the files now declare (the old one would fail it, and recreate the stack), on
    what the port serves now: a proxy not running yet is left to stack_up, and a run
    after a reload changes nothing.

    + stack: the compose project (where ``docker compose exec`` finds the proxy)
    + tls_dir: the host's dir of cert.pem and key.pem (Declared.tls_dir)
    + address, port: where the proxy's TLS port answers on the host
    + uid: who the proxy runs as. As root (a stack owned by root) nginx runs as one
      process (master_process off: it has no capabilities to switch users), and such
      an nginx cannot reload (its new configuration gets no connections): the proxy is
      restarted instead, the same container, with a gap of about a second. A non-root
      chroma_owner gets the reload, with no failed request.
    """
    if is_executing(host) is False:  # None: a recorded host (tests/fixtures)
        host.noop(f"compared with what {address}:{port} serves once the stack runs")
        return
    found = host.get_fact(ProxyCertificate, tls_dir=tls_dir, address=address, port=port)
    file, served = found["file"], found["served"]
    if file is None or served is None:
        # No certificate to compare (no openssl on the host), or the port does not speak
        # TLS now: stack_up and published_answers say why; a reload would not help.
        host.noop(f"no certificate read at {tls_dir}/cert.pem or on {address}:{port}")
        return
    if served == file["fingerprint"]:
        host.noop(f"the proxy serves {tls_dir}/cert.pem ({served[:23]})")
        return
    if uid == 0:
        yield step(
            f"restarting the proxy (it runs as root, one nginx process, which cannot reload): "
            f"{tls_dir}/cert.pem is not the one it serves"
        )
        yield compose_command(stack.project_dir, "restart", "auth-proxy")
        return
    yield step(f"reloading nginx in the proxy: {tls_dir}/cert.pem is not the one it serves")
    # auth-proxy-reload (files/build-proxy-image.sh): nginx -t, then the reload, with a
    # second's drain of kept-alive connections on each side of it.
    yield compose_command(
        stack.project_dir, "exec", "-T", "auth-proxy", "/usr/local/bin/auth-proxy-reload"
    )
