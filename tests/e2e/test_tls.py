"""-H tcp:// with --tlsverify: clients need a certificate signed by --tlscacert."""

import re

import docker
import pytest
import requests

from .conftest import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def tls_daemon(daemons, tls_files):
    port = free_port()
    daemon = daemons.start(
        "-H",
        "tcp://127.0.0.1:%d" % port,
        "--tlsverify",
        "--tlscacert",
        tls_files["ca.pem"],
        "--tlscert",
        tls_files["server-cert.pem"],
        "--tlskey",
        tls_files["server-key.pem"],
    )
    daemon.tcp = "tcp://127.0.0.1:%d" % port
    daemon.wait_for_log("API listen on %s$" % re.escape(daemon.tcp))
    return daemon


def tls_version(daemon, *tls_args):
    return daemon.docker("-H", daemon.tcp, *tls_args, "version", check=False, timeout=20)


@pytest.mark.route("HEAD", "/_ping")
@pytest.mark.route("GET", "/version")
def test_cli_with_client_certificate(tls_daemon, tls_files):
    result = tls_version(
        tls_daemon,
        "--tlsverify",
        "--tlscacert", tls_files["ca.pem"],
        "--tlscert", tls_files["cert.pem"],
        "--tlskey", tls_files["key.pem"],
    )
    assert result.returncode == 0, result.stderr
    assert "Server: twistedock" in result.stdout


# No route marks: the handshake fails before any request is made.
def test_cli_with_foreign_client_certificate(tls_daemon, tls_files):
    result = tls_version(
        tls_daemon,
        "--tlsverify",
        "--tlscacert", tls_files["ca.pem"],
        "--tlscert", tls_files["foreign-cert.pem"],
        "--tlskey", tls_files["foreign-key.pem"],
    )
    assert result.returncode != 0
    assert "Server: twistedock" not in result.stdout
    # The server refuses the handshake (TLS 1.3: "unknown certificate authority").
    assert "remote error: tls: " in result.stderr, result.stderr


@pytest.mark.route("HEAD", "/_ping")
@pytest.mark.route("GET", "/version")
def test_cli_without_client_certificate(tls_daemon, tls_files):
    result = tls_version(tls_daemon, "--tlsverify", "--tlscacert", tls_files["ca.pem"])
    assert result.returncode != 0
    assert "Server: twistedock" not in result.stdout
    # TLS 1.3: "certificate required"; the server demands one.
    assert "remote error: tls: " in result.stderr, result.stderr
    # The unix socket is still served in the clear alongside.
    assert "Server: twistedock" in tls_daemon.docker("version").stdout


def test_cli_without_tls(tls_daemon):
    result = tls_version(tls_daemon)
    assert result.returncode != 0
    assert "Server: twistedock" not in result.stdout


@pytest.mark.route("GET", "/version")
@pytest.mark.route("GET", "/info")
def test_docker_py_tls(tls_daemon, tls_files, monkeypatch):
    # requests lets these override the session's CA (psf/requests#3829).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    tls = docker.tls.TLSConfig(
        client_cert=(tls_files["cert.pem"], tls_files["key.pem"]),
        ca_cert=tls_files["ca.pem"],
        verify=True,
    )
    client = docker.DockerClient(base_url=tls_daemon.tcp, tls=tls, version="auto", timeout=20)
    try:
        assert client.api.base_url.startswith("https://127.0.0.1:")
        assert client.version()["Platform"]["Name"] == "twistedock"
        assert client.info()["DockerRootDir"] == tls_daemon.data_root
    finally:
        client.close()

    foreign = docker.tls.TLSConfig(
        client_cert=(tls_files["foreign-cert.pem"], tls_files["foreign-key.pem"]),
        ca_cert=tls_files["ca.pem"],
        verify=True,
    )
    client = docker.APIClient(base_url=tls_daemon.tcp, tls=foreign, version="1.51", timeout=20)
    try:
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            client.version()
    finally:
        client.close()
