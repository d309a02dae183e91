"""
End-to-end fixtures: a real C{twistd -n dockerd} in a subprocess, driven with
the real docker CLI, docker-py and raw HTTP over its unix socket.

Every daemon gets its own directory (socket, data root, exec root,
daemon.json, log), is started with the repository on PYTHONPATH so that this
checkout's twistedock and its twistd dropin are the ones run, and is stopped
with SIGTERM at teardown, which must make it exit by itself.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

REPO_ROOT = str(Path(__file__).resolve().parents[2])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"

#: How long a daemon may take to answer /_ping, and to exit after SIGTERM.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

#: AF_UNIX paths longer than this do not fit in sockaddr_un.
MAX_SOCKET_PATH = 100


def _twistd() -> List[str]:
    """The twistd script of the running interpreter (not a pyenv shim, so
    that the daemon's pid is the one Popen reports and start-up is quick)."""
    beside = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("twistd")
    if found:
        return [found]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


TWISTD = _twistd()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll C{predicate} until it returns something true; fail after C{timeout}."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# -- HTTP over a unix socket --------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return "<Response %d %r %r>" % (self.status, dict(self.headers), self.body[:300])


def unix_request(
    path: str,
    method: str,
    target: str,
    body: Optional[bytes] = None,
    headers: Optional[Dict[str, str]] = None,
    timeout: float = 10.0,
) -> Response:
    conn = UnixHTTPConnection(path, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


# -- the daemon -----------------------------------------------------------------


def _clean_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    for name in (
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_TLS",
        "DOCKER_CERT_PATH",
        "DOCKER_API_VERSION",
        "DOCKER_MIN_API_VERSION",
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
    ):
        env.pop(name, None)
    env.update(extra or {})
    return env


class DockerDaemon:
    """One twistd dockerd process and the directory it lives in."""

    def __init__(
        self,
        workdir: Path,
        cli_config: Path,
        args: Sequence[str] = (),
        config=None,
        sock: Optional[str] = None,
    ):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock = sock or str(self.dir / "docker.sock")
        assert len(self.sock) < MAX_SOCKET_PATH, self.sock
        self.host = "unix://" + self.sock
        self.data_root = str(self.dir / "root")
        self.exec_root = str(self.dir / "exec")
        self.config_file = str(self.dir / "daemon.json")
        self.log_path = str(self.dir / "daemon.log")
        self.cli_config = str(cli_config)
        self.args = list(args)
        # Always an explicit daemon.json: the host's /etc/twistedock/daemon.json
        # must not leak into the tests.
        self.write_config({} if config is None else config)
        self.proc: Optional[subprocess.Popen] = None
        self._log = None

    # -- life cycle --

    def write_config(self, config) -> None:
        with open(self.config_file, "w") as f:
            if isinstance(config, str):
                f.write(config)
            else:
                json.dump(config, f)

    def command(self) -> List[str]:
        return TWISTD + [
            "-n",
            "--pidfile=",
            "dockerd",
            "-H",
            self.host,
            "--data-root",
            self.data_root,
            "--exec-root",
            self.exec_root,
            "--config-file",
            self.config_file,
        ] + self._bridge_args() + self.args

    def _bridge_args(self) -> List[str]:
        # No default bridge unless a test names one: daemons of parallel
        # test runs on one host must not share a bridge (and its addresses).
        if any(a.startswith(("--bridge", "-b")) for a in self.args):
            return []
        return ["--bridge=none"]

    def spawn(self) -> subprocess.Popen:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._close_log()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=str(self.dir),
            env=_clean_env({"PYTHONPATH": REPO_ROOT}),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self.proc

    def start(self, timeout: float = START_TIMEOUT) -> "DockerDaemon":
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(
                    "daemon exited with %s before answering /_ping:\n%s" % (code, self.log_text())
                )
            try:
                if unix_request(self.sock, "GET", "/_ping", timeout=2).status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    "daemon did not answer /_ping within %.0fs:\n%s" % (timeout, self.log_text())
                )
            time.sleep(0.05)

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._close_log()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait; the daemon must exit by itself (else SIGKILL and fail)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self._close_log()
                raise AssertionError(
                    "daemon ignored SIGTERM for %.0fs and was killed:\n%s"
                    % (timeout, self.log_text())
                )
        self._close_log()
        return self.proc.returncode

    def restart(self) -> "DockerDaemon":
        # The exit status after SIGTERM is test_startup's business.
        self.stop()
        return self.start()

    def signal(self, signum: int) -> None:
        assert self.proc is not None and self.proc.poll() is None, "daemon is not running"
        self.proc.send_signal(signum)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0):
        """The first match of the regular expression C{pattern} (multiline)
        in the log, once it is there."""
        regex = re.compile(pattern, re.M)
        return wait_for(
            lambda: regex.search(self.log_text()), timeout, what="log line %r" % (pattern,)
        )

    # -- clients --

    def cli_env(self, host: Optional[str] = None, extra: Optional[Dict[str, str]] = None):
        env = _clean_env({"DOCKER_HOST": host or self.host, "DOCKER_CONFIG": self.cli_config})
        env.update(extra or {})
        return env

    def docker(
        self,
        *args: str,
        timeout: float = 30,
        check: bool = True,
        host: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> subprocess.CompletedProcess:
        """Run the docker CLI against this daemon; C{check}: it must succeed."""
        result = subprocess.run(
            [DOCKER] + list(args),
            env=self.cli_env(host, env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                "docker %s exited %d\nstdout: %s\nstderr: %s"
                % (" ".join(args), result.returncode, result.stdout, result.stderr)
            )
        return result

    def docker_popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(
            [DOCKER] + list(args),
            env=self.cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )

    def docker_json(self, *args: str, format: str = "{{json .}}", **kwargs):
        """The JSON that C{docker ARGS --format FORMAT} prints."""
        return json.loads(self.docker(*args, "--format", format, **kwargs).stdout)

    def request(self, method: str, target: str, body=None, headers=None, timeout=10.0) -> Response:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
            headers = dict(headers or {})
            headers.setdefault("Content-Type", "application/json")
        return unix_request(self.sock, method, target, body, headers, timeout)

    def info(self) -> dict:
        resp = self.request("GET", "/info")
        assert resp.status == 200, resp
        return resp.json()


class DaemonPool:
    """Starts daemons and, at teardown, stops them and removes their files."""

    def __init__(self, base: Path, cli_config: Path) -> None:
        self.base = Path(base)
        self.cli_config = cli_config
        self.daemons: List[DockerDaemon] = []
        self.dirs: List[Path] = []

    def workdir(self, name: str = "d") -> Path:
        """A new directory, short enough for a unix socket path inside it."""
        candidate = self.base / ("%s%d" % (name, len(self.dirs)))
        if len(str(candidate / "docker.sock")) >= MAX_SOCKET_PATH:
            candidate = Path(tempfile.mkdtemp(prefix="td-", dir="/tmp"))
        candidate.mkdir(parents=True, exist_ok=True)
        self.dirs.append(candidate)
        return candidate

    def make(
        self, *args: str, config=None, workdir: Optional[Path] = None, sock: Optional[str] = None
    ) -> DockerDaemon:
        """A daemon, not started yet: C{args} are extra flags, C{config} the
        content of its daemon.json, C{sock} its unix socket (default: in its
        own directory)."""
        daemon = DockerDaemon(workdir or self.workdir(), self.cli_config, args, config, sock)
        self.daemons.append(daemon)
        return daemon

    def start(self, *args: str, config=None, workdir: Optional[Path] = None) -> DockerDaemon:
        return self.make(*args, config=config, workdir=workdir).start()

    def run_to_exit(self, *args: str, config=None, sock=None, timeout=START_TIMEOUT):
        """Start a daemon that is expected to refuse to run: (exit code, output)."""
        daemon = self.make(*args, config=config, sock=sock)
        daemon.spawn()
        try:
            code = daemon.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("daemon kept running:\n%s" % (daemon.log_text(),))
        return code, daemon.log_text()

    def cleanup(self) -> None:
        errors = []
        for daemon in reversed(self.daemons):
            try:
                daemon.stop()
            except AssertionError as e:
                errors.append(str(e))
        self.daemons.clear()
        for directory in self.dirs:
            # What a daemon killed by a test left mounted there (network
            # namespaces, CRIU's empty tmpfs) unmounted first.
            _unmount_under(directory)
            shutil.rmtree(directory, ignore_errors=True)
        self.dirs.clear()
        assert not errors, "\n".join(errors)


def _unmount_under(path: str) -> None:
    prefix = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
    for target in sorted(targets, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


@pytest.fixture(scope="session")
def cli_config(tmp_path_factory) -> Path:
    """An empty docker CLI configuration directory (no contexts, no creds)."""
    path = tmp_path_factory.mktemp("cli")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemons(tmp_path, cli_config):
    """Factory for daemons that live as long as one test."""
    pool = DaemonPool(tmp_path, cli_config)
    yield pool
    pool.cleanup()


@pytest.fixture(scope="module")
def module_daemons(tmp_path_factory, cli_config):
    """Factory for daemons shared by one module's tests."""
    pool = DaemonPool(tmp_path_factory.mktemp("mod"), cli_config)
    yield pool
    pool.cleanup()


@pytest.fixture(scope="session")
def default_daemon(tmp_path_factory, cli_config) -> DockerDaemon:
    """A daemon with default flags, shared by tests that only read from it."""
    pool = DaemonPool(tmp_path_factory.mktemp("shared"), cli_config)
    daemon = pool.start()
    yield daemon
    pool.cleanup()


@pytest.fixture
def tls_files(tmp_path):
    """A CA, a server certificate for 127.0.0.1/localhost, a client
    certificate signed by the CA, and a client certificate signed by a
    different CA; PEM files, by name."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    out_dir = tmp_path / "certs"
    out_dir.mkdir()
    files: Dict[str, str] = {}

    def save(name: str, data: bytes) -> str:
        path = out_dir / name
        path.write_bytes(data)
        os.chmod(path, 0o600)
        files[name] = str(path)
        return str(path)

    def key_pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    def make_ca(cn: str):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def issue(ca_key, ca_cert, cn: str, usage, sans=None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return key, cert

    pem = serialization.Encoding.PEM
    ca_key, ca_cert = make_ca("twistedock e2e CA")
    save("ca.pem", ca_cert.public_bytes(pem))
    server_key, server_cert = issue(
        ca_key,
        ca_cert,
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    save("server-cert.pem", server_cert.public_bytes(pem))
    save("server-key.pem", key_pem(server_key))
    client_key, client_cert = issue(ca_key, ca_cert, "client", ExtendedKeyUsageOID.CLIENT_AUTH)
    save("cert.pem", client_cert.public_bytes(pem))
    save("key.pem", key_pem(client_key))
    other_key, other_ca = make_ca("some other CA")
    save("other-ca.pem", other_ca.public_bytes(pem))
    foreign_key, foreign_cert = issue(
        other_key, other_ca, "intruder", ExtendedKeyUsageOID.CLIENT_AUTH
    )
    save("foreign-cert.pem", foreign_cert.public_bytes(pem))
    save("foreign-key.pem", key_pem(foreign_key))
    yield files
    shutil.rmtree(out_dir, ignore_errors=True)
