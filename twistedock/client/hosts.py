"""Which daemon to talk to, found as the docker CLI finds it: C{DOCKER_HOST}
(with C{DOCKER_TLS_VERIFY}, C{DOCKER_TLS} and C{DOCKER_CERT_PATH}), else the
context named by C{DOCKER_CONTEXT} or the config's C{currentContext}, whose
endpoint is in C{contexts/meta/<sha256(name)>/meta.json} (and its TLS files
in C{contexts/tls/<sha256(name)>/docker/}), else the default socket."""

import hashlib
import json
import os
from typing import Mapping, Optional
from urllib.parse import urlsplit

import attr

from .errors import HostError

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_PORT = 2375
DEFAULT_TLS_PORT = 2376


@attr.s(auto_attribs=True, frozen=True)
class TLSConfig:
    """Client TLS: the CA to verify the daemon with (None: no verification)
    and the client certificate and key (None: none presented)."""

    verify: bool = True
    ca_cert: Optional[str] = None
    client_cert: Optional[str] = None
    client_key: Optional[str] = None

    @classmethod
    def from_directory(cls, path: str, verify: bool) -> "TLSConfig":
        """ca.pem, cert.pem and key.pem in C{path}, those that exist."""

        def found(name):
            candidate = os.path.join(path, name)
            return candidate if os.path.exists(candidate) else None

        return cls(verify=verify, ca_cert=found("ca.pem") if verify else None,
                   client_cert=found("cert.pem"), client_key=found("key.pem"))


@attr.s(auto_attribs=True, frozen=True)
class DockerHost:
    """A daemon's address: C{scheme} is unix or tcp, C{address} the socket's
    path or (host, port); C{tls} None for plain connections."""

    url: str
    scheme: str
    path: str = ""
    hostname: str = ""
    port: int = 0
    tls: Optional[TLSConfig] = None


def parse_host(url: str, tls: Optional[TLSConfig] = None) -> DockerHost:
    """C{unix:///path}, C{tcp://host:port} (C{http://}, C{https://} too)."""
    if not url:
        url = DEFAULT_HOST
    if url.startswith("/"):
        url = "unix://" + url
    if url.startswith("npipe://") or url.startswith("ssh://") or url.startswith("fd://"):
        raise HostError("unsupported host %r: this client speaks unix://, tcp:// and https://" % (url,))
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise HostError("invalid host %r: no socket path" % (url,))
        return DockerHost(url=url, scheme="unix", path=path, tls=tls)
    if parts.scheme in ("tcp", "http", "https"):
        if parts.scheme == "https" and tls is None:
            tls = TLSConfig(verify=True)
        if not parts.hostname:
            raise HostError("invalid host %r: no host name" % (url,))
        try:
            port = parts.port
        except ValueError:
            raise HostError("invalid host %r: bad port" % (url,))
        if port is None:
            port = DEFAULT_TLS_PORT if tls is not None else DEFAULT_PORT
        return DockerHost(url=url, scheme="tcp", hostname=parts.hostname, port=port, tls=tls)
    raise HostError("unsupported host %r: use unix:///path or tcp://host:port" % (url,))


def config_dir(environ: Mapping[str, str]) -> str:
    """C{DOCKER_CONFIG}, else ~/.docker."""
    return environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")


def _tls_from_environ(environ: Mapping[str, str]) -> Optional[TLSConfig]:
    verify = bool(environ.get("DOCKER_TLS_VERIFY"))
    if not (verify or environ.get("DOCKER_TLS")):
        return None
    path = environ.get("DOCKER_CERT_PATH") or config_dir(environ)
    tls = TLSConfig.from_directory(path, verify)
    if verify and tls.ca_cert is None:
        # As the CLI: verifying needs the CA the daemon's certificate is from.
        raise HostError("could not read CA certificate %r" % (os.path.join(path, "ca.pem"),))
    return tls


def current_context(environ: Mapping[str, str]) -> str:
    """The context the CLI would use: C{DOCKER_CONTEXT}, else the config's
    C{currentContext}, else "default" (which a C{DOCKER_HOST} forces)."""
    if environ.get("DOCKER_HOST"):
        return "default"
    if environ.get("DOCKER_CONTEXT"):
        return environ["DOCKER_CONTEXT"]
    try:
        with open(os.path.join(config_dir(environ), "config.json")) as f:
            config = json.load(f)
    except FileNotFoundError:
        return "default"
    except ValueError as e:
        raise HostError("cannot read the docker config: %s" % (e,))
    return (config.get("currentContext") if isinstance(config, dict) else None) or "default"


def context_host(name: str, environ: Mapping[str, str]) -> DockerHost:
    """The docker endpoint of context C{name}, from its meta.json."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    base = os.path.join(config_dir(environ), "contexts")
    meta = os.path.join(base, "meta", digest, "meta.json")
    try:
        with open(meta) as f:
            document = json.load(f)
    except FileNotFoundError:
        raise HostError("context %r does not exist" % (name,))
    except ValueError as e:
        raise HostError("context %r: cannot read %s: %s" % (name, meta, e))
    endpoint = (document.get("Endpoints") or {}).get("docker") or {}
    url = endpoint.get("Host") or DEFAULT_HOST
    tls_dir = os.path.join(base, "tls", digest, "docker")
    tls = None
    if os.path.isdir(tls_dir):
        tls = TLSConfig.from_directory(tls_dir, verify=not endpoint.get("SkipTLSVerify"))
    elif endpoint.get("SkipTLSVerify"):
        tls = TLSConfig(verify=False)
    return parse_host(url, tls)


def host_from_environ(environ: Optional[Mapping[str, str]] = None) -> DockerHost:
    """The daemon the docker CLI would talk to in C{environ} (os.environ)."""
    environ = os.environ if environ is None else environ
    name = current_context(environ)
    if name != "default":
        return context_host(name, environ)
    return parse_host(environ.get("DOCKER_HOST") or DEFAULT_HOST, _tls_from_environ(environ))
