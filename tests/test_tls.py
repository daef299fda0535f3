"""TLS against a real redis-server: a throwaway CA and server certificate made with the
``openssl`` CLI, ``rediss://`` and ``REDIS_TLS``, ``REDIS_CA_FILE``, and host name checking."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from echoes_ops.errors import ExitCode
from echoes_ops.local.redis_server import RedisServer, free_port
from tests.cli_helpers import cli
from tests.waiting import wait_until

# The certificate names localhost and 127.0.0.1; the server also listens on 127.0.0.2, an
# address of the loopback network that the certificate does not name.
OTHER_LOOPBACK = "127.0.0.2"


@dataclass
class TlsRedis:
    server: RedisServer
    tls_port: int
    ca_file: Path
    other_ca_file: Path


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=30
    )
    if proc.returncode != 0:
        pytest.fail(f"openssl {args[0]} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")


def _make_ca(folder: Path, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-subj",
        f"/CN=echoes-ops test {name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )


def _make_certificates(folder: Path) -> None:
    """ca.crt, server.crt/key signed by it (localhost, 127.0.0.1), and an unrelated other-ca.crt."""
    _make_ca(folder, "ca")
    _make_ca(folder, "other-ca")
    _openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=folder,
    )
    (folder / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        cwd=folder,
    )
    # redis-server may drop privileges or run as another user; it only needs to read these
    for path in folder.iterdir():
        path.chmod(0o644)


def _tls_ping(port: int, ca_file: Path, timeout: float = 10.0) -> None:
    """Wait until the TLS port completes a handshake and answers PING."""
    context = ssl.create_default_context(cafile=str(ca_file))

    def answers() -> bool:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    wait_until(
        answers, timeout, f"redis-server's TLS port {port} to answer PING", retry_on=(OSError,)
    )


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    if shutil.which("openssl") is None:
        # a prerequisite of the suite (scripts/setup installs it): missing, the TLS tests
        # fail rather than skip, so a CI without it cannot pass silently
        pytest.fail("the openssl command is not installed (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    certs = folder / "certs"
    certs.mkdir()
    _make_certificates(certs)
    tls_port = free_port()
    # The plain port stays open on loopback: RedisServer waits for it (and stops via pidfile).
    server = RedisServer(
        folder / "redis",
        extra_args=[
            "--bind",
            "127.0.0.1",
            OTHER_LOOPBACK,
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(certs / "server.crt"),
            "--tls-key-file",
            str(certs / "server.key"),
            "--tls-ca-cert-file",
            str(certs / "ca.crt"),
            "--tls-auth-clients",
            "no",
        ],
    )
    try:
        server.start()
    except Exception as exc:
        server.stop()
        log = server.logfile.read_text() if server.logfile.exists() else ""
        if "tls" in (str(exc) + log).lower():
            pytest.fail(f"this redis-server cannot serve TLS: {exc}")
        raise
    try:
        _tls_ping(tls_port, certs / "ca.crt")
        yield TlsRedis(server, tls_port, certs / "ca.crt", certs / "other-ca.crt")
    finally:
        server.stop()


def _status(env: dict[str, str]) -> dict[str, object]:
    out = cli("status", "--json", env=env)
    assert out.code == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


def test_rediss_url_with_ca_file(tls_redis: TlsRedis) -> None:
    data = _status(
        {
            "REDIS_URL": f"rediss://localhost:{tls_redis.tls_port}/0",
            "REDIS_CA_FILE": str(tls_redis.ca_file),
        }
    )
    server = data["server"]
    assert isinstance(server, dict)
    assert server["role"] == "master"


def test_rediss_url_by_ip_named_in_certificate(tls_redis: TlsRedis) -> None:
    _status(
        {
            "REDIS_URL": f"rediss://127.0.0.1:{tls_redis.tls_port}/0",
            "REDIS_CA_FILE": str(tls_redis.ca_file),
        }
    )


def test_redis_tls_with_host_and_port(tls_redis: TlsRedis) -> None:
    _status(
        {
            "REDIS_TLS": "true",
            "REDIS_HOST": "localhost",
            "REDIS_PORT": str(tls_redis.tls_port),
            "REDIS_CA_FILE": str(tls_redis.ca_file),
        }
    )


def test_config_file_tls_settings(tls_redis: TlsRedis, tmp_path: Path) -> None:
    config = tmp_path / "ops.yaml"
    config.write_text(
        f"redis_host: localhost\nredis_port: {tls_redis.tls_port}\nredis_tls: true\n"
        f"redis_ca_file: {tls_redis.ca_file}\n"
    )
    _status({"ECHOES_OPS_CONFIG": str(config)})


def test_without_ca_file_the_certificate_is_not_trusted(tls_redis: TlsRedis) -> None:
    url = f"rediss://localhost:{tls_redis.tls_port}/0"
    out = cli("status", "--json", env={"REDIS_URL": url})
    assert out.code == ExitCode.UNREACHABLE
    line = out.one_error_line()
    assert "TLS" in line
    assert f"localhost:{tls_redis.tls_port}" in line
    assert "mismatch" not in line
    assert "REDIS_CA_FILE" in line
    assert out.stdout == ""


def test_a_ca_that_did_not_sign_the_certificate(tls_redis: TlsRedis) -> None:
    out = cli(
        "status",
        env={
            "REDIS_URL": f"rediss://localhost:{tls_redis.tls_port}/0",
            "REDIS_CA_FILE": str(tls_redis.other_ca_file),
        },
    )
    assert out.code == ExitCode.UNREACHABLE
    assert "TLS" in out.one_error_line()


def test_host_name_not_in_certificate_is_refused(tls_redis: TlsRedis) -> None:
    out = cli(
        "status",
        env={
            "REDIS_URL": f"rediss://{OTHER_LOOPBACK}:{tls_redis.tls_port}/0",
            "REDIS_CA_FILE": str(tls_redis.ca_file),
        },
    )
    assert out.code == ExitCode.UNREACHABLE
    line = out.one_error_line()
    assert "TLS" in line
    assert f"{OTHER_LOOPBACK}:{tls_redis.tls_port}" in line
    assert "mismatch" in line  # says why, not only CERTIFICATE_VERIFY_FAILED


def test_plain_redis_url_against_the_tls_port(tls_redis: TlsRedis) -> None:
    out = cli(
        "--timeout",
        "1",
        "status",
        env={"REDIS_URL": f"redis://localhost:{tls_redis.tls_port}/0"},
    )
    assert out.code == ExitCode.UNREACHABLE
    out.one_error_line()


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_ca_file_is_a_settings_error(
    tls_redis: TlsRedis, tmp_path: Path, kind: str
) -> None:
    ca_file = tmp_path / "no-such-ca.crt" if kind == "missing" else tmp_path
    out = cli(
        "status",
        env={
            "REDIS_URL": f"rediss://localhost:{tls_redis.tls_port}/0",
            "REDIS_CA_FILE": str(ca_file),
        },
    )
    assert out.code == ExitCode.CONFIG
    line = out.one_error_line()
    assert f"cannot read REDIS_CA_FILE {ca_file}" in line


def test_ca_file_that_is_not_a_certificate(tls_redis: TlsRedis, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    out = cli(
        "status",
        env={
            "REDIS_URL": f"rediss://localhost:{tls_redis.tls_port}/0",
            "REDIS_CA_FILE": str(garbage),
        },
    )
    assert out.code == ExitCode.UNREACHABLE
    assert "TLS" in out.one_error_line()
