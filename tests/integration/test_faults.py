"""Faults on the host: a full disk, Chroma answering 500. Nothing good is replaced or lost."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time

import pytest
from conftest import (
    PYINFRA,
    ROOT,
    base_data,
    chroma_client,
    converge,
    restart_engine,
    run_deploy,
    run_drift,
    sh,
)

from declaration.gitignore import GITIGNORE_HEADER

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_full_disk_fails_clearly_and_leaves_good_files_whole(project):
    project_dir, name = project
    project_dir.mkdir(parents=True)
    sh(f"mount -t tmpfs -o size=4m tmpfs '{project_dir}'")
    try:
        data = base_data(project_dir, name)
        converge(data)
        sqlite = project_dir / "chroma_data" / "chroma.sqlite3"
        # Both files now need rewriting: a setting changes the render, a line is gone.
        gitignore = project_dir / ".gitignore"
        gitignore.write_text(gitignore.read_text().replace(f"{GITIGNORE_HEADER}\n", ""))
        before = {p: p.read_bytes() for p in (gitignore, project_dir / "docker-compose.yml")}
        sh(f"dd if=/dev/zero of='{project_dir}/chroma_db/filler' bs=64k 2>/dev/null || true")

        result = run_deploy(dict(data, chroma_restart_policy="always"))
        assert result.returncode != 0
        assert "No space left on device" in result.output
        assert {p: p.read_bytes() for p in before} == before
        assert sqlite.is_file()

        (project_dir / "chroma_db" / "filler").unlink()
        converge(dict(data, chroma_restart_policy="always"))
        assert sqlite.is_file()
    finally:
        sh(f"cd '{project_dir}' && docker compose down --timeout 5", check=False)
        sh(f"umount '{project_dir}'", check=False)


class _Answers500(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b'{"error": "InternalError"}')

    def log_message(self, *args):
        pass


def test_chroma_answering_500_is_reported_as_heartbeat_drift(project):
    project_dir, name = project
    data = base_data(project_dir, name)
    server = http.server.HTTPServer(("127.0.0.1", data["chroma_port"]), _Answers500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_drift(data, "--no-color")
    finally:
        server.shutdown()
    assert result.returncode == 2
    assert f"http://127.0.0.1:{data['chroma_port']}/api/v2/heartbeat: " in result.stdout
    assert "HTTP 200 with a heartbeat -> HTTP 500" in result.stdout


@pytest.mark.serial  # kills dockerd
def test_docker_stopped_mid_run_fails_clearly_and_loses_nothing(project):
    project_dir, name = project
    data = base_data(project_dir, name)
    converge(data)
    collection = chroma_client(data["chroma_port"]).create_collection(
        "kept", embedding_function=None
    )
    collection.add(
        ids=[f"r{i}" for i in range(50)], embeddings=[[float(i), 2.0] for i in range(50)]
    )
    compose = project_dir / "docker-compose.yml"
    rendered = compose.read_text()

    # A changed setting makes the run replace the file and then run `up --wait`:
    # the engine goes away right after the file is replaced.
    args = [PYINFRA, "-y", "@local", "deploy.py"]
    for key, value in dict(data, chroma_restart_policy="always").items():
        args += ["--data", f"{key}={value}"]
    deploy = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for _ in range(400):
        if compose.read_text() != rendered:
            break
        time.sleep(0.02)
    sh("pkill -x dockerd")
    output, _ = deploy.communicate(timeout=300)
    restart_engine()
    assert deploy.returncode != 0, output
    assert "docker" in output.lower()
    converge(dict(data, chroma_restart_policy="always"))
    kept = chroma_client(data["chroma_port"]).get_collection("kept", embedding_function=None)
    assert kept.count() == 50
