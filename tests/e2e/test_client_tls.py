"""twistedock.client over TLS, its settings found as the docker CLI finds
them: DOCKER_HOST with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, or a docker
context with its TLS files."""

import hashlib
import json
import os
import shutil

import pytest
import pytest_twisted
from twistedock.client import DaemonUnreachable, DockerClient, NotFound

from .test_tls import tls_daemon  # noqa: F401  (the fixture)

pytestmark = pytest.mark.e2e


async def _use(client):
    try:
        version = await client.system.version()
        with pytest.raises(NotFound, match="No such container: nope"):
            await client.containers.inspect("nope")
        return version
    finally:
        await client.close()


@pytest.mark.route("GET", "/version")
@pytest_twisted.ensureDeferred
async def test_docker_host_and_tls_variables(tls_daemon, tls_files, tmp_path):  # noqa: F811
    from twisted.internet import reactor

    certs = os.path.dirname(tls_files["ca.pem"])
    env = {"DOCKER_HOST": tls_daemon.tcp, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": certs,
           "DOCKER_CONFIG": str(tmp_path / "none")}
    version = await _use(DockerClient.from_env(reactor, env))
    assert version["Version"]
    # A CA that did not sign the daemon's certificate: no connection.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tls_files["other-ca.pem"], other / "ca.pem")
    shutil.copy(tls_files["cert.pem"], other / "cert.pem")
    shutil.copy(tls_files["key.pem"], other / "key.pem")
    client = DockerClient.from_env(reactor, dict(env, DOCKER_CERT_PATH=str(other)))
    with pytest.raises(DaemonUnreachable, match="Cannot connect to the Docker daemon at tcp://127.0.0.1"):
        await client.system.version()
    await client.close()


@pytest.mark.route("GET", "/version")
@pytest_twisted.ensureDeferred
async def test_the_current_context(tls_daemon, tls_files, tmp_path):  # noqa: F811
    from twisted.internet import reactor

    config = tmp_path / "docker-config"
    digest = hashlib.sha256(b"secure").hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({
        "Name": "secure", "Metadata": {}, "Endpoints": {"docker": {"Host": tls_daemon.tcp, "SkipTLSVerify": False}}}))
    tls = config / "contexts" / "tls" / digest / "docker"
    tls.mkdir(parents=True)
    for name in ("ca.pem", "cert.pem", "key.pem"):
        shutil.copy(tls_files[name], tls / name)
    (config / "config.json").write_text(json.dumps({"currentContext": "secure"}))
    version = await _use(DockerClient.from_env(reactor, {"DOCKER_CONFIG": str(config)}))
    assert version["ApiVersion"]
