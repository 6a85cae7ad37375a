"""Start the project's commands from a process that has already imported pyinfra.

Every real-engine test runs ``pyinfra ... deploy.py`` (or backup.py, restore.py) and
``python drift.py`` many times; each fresh process spends about 0.7 s of CPU importing
pyinfra, gevent, paramiko and click before it reads a single argument (measured: a
dry run 1.5 s of CPU fresh, 0.8 s forked; drift.py 1.3 s against 0.64 s). The suite
is bound by the CPU of its two cores, so the tests ask this server instead: it imports
``pyinfra_cli.main`` once (as the ``pyinfra`` script does, gevent's monkey-patching
included), then forks one child per command. The child takes the test's argv, working
dir, environment and pipes (stdin, stdout, stderr passed over a Unix socket), starts a
session of its own, and runs the command's own entry as the script would: pyinfra's
``main()`` for ``pyinfra``, the file as ``__main__`` for ``python drift.py``. Nothing
of the project is imported here: each run imports deploy.py, operations/, facts/ afresh,
as a fresh process does. Its exit code is what the process would have exited with.

The test's side is ``run()`` (tests/conftest.py); ``CHROMA_DEPLOY_TEST_FORK=0`` starts
every command as a process of its own instead. Tests that kill a run
(test_interruption.py) or time its start start their own processes.

Protocol, one SOCK_SEQPACKET connection per command: the client sends a JSON message
(argv, cwd, env) with three file descriptors; the server forks; the child sends its
pid, and when it has run, its exit code and CPU seconds. A connection closed without an exit code is
a child killed by a signal.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import sys
import traceback

# What the pyinfra script imports first (gevent's patch_all included).
import pyinfra_cli.main


def _exit_code(code: object) -> int:
    """The status Python exits with for ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _child(connection: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the command, run it, report its exit code; never returns."""
    code = 1
    try:
        os.setsid()  # before the pid is known: a kill of its group reaches the whole run
        connection.send(str(os.getpid()).encode())
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        argv = request["argv"]
        if os.path.basename(argv[0]) == "pyinfra":
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(argv[0])
            try:
                code = _exit_code(pyinfra_cli.main.main())
            except SystemExit as exit_:
                code = _exit_code(exit_.code)
        else:  # python SCRIPT ARGS...: the script as __main__, its dir first on sys.path
            import runpy

            script = os.path.abspath(argv[1])
            sys.argv = list(argv[1:])
            sys.path[0] = os.path.dirname(script)
            try:
                runpy.run_path(script, run_name="__main__")
                code = 0
            except SystemExit as exit_:
                code = _exit_code(exit_.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()  # as a process exiting normally does
        sys.stdout.flush()
        sys.stderr.flush()
        spent = os.times()  # the CPU seconds of the run and of the programs it waited for
        cpu = spent.user + spent.system + spent.children_user + spent.children_system
        connection.send(f"{code} {cpu:.3f}".encode())
    finally:
        os._exit(code)


def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(5)
    parent = os.getppid()
    while True:
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the tests that started it are gone
                return
            continue
        connection.settimeout(None)
        message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
        if not message:  # asked to stop
            connection.close()
            return
        pid = os.fork()
        if pid == 0:
            listener.close()
            _child(connection, json.loads(message), fds)
        for fd in fds:
            os.close(fd)
        connection.close()


if __name__ == "__main__":
    serve(sys.argv[1])
