"""Connections to a daemon: an Agent whose endpoint factory ignores the URL
(C{http://docker} is a label) and connects to the host's socket, over TLS
when asked, and the same endpoint for hijacked connections (attach, exec)."""

from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from .errors import HostError
from .hosts import DockerHost, TLSConfig


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def tls_options(hostname: str, tls: TLSConfig):
    """Twisted's client TLS options for C{tls}, checking the daemon's
    certificate against the CA (and the host name) when C{tls.verify}."""
    from twisted.internet import ssl

    try:
        client = None
        if tls.client_cert and tls.client_key:
            client = ssl.PrivateCertificate.loadPEM(_read(tls.client_cert) + b"\n" + _read(tls.client_key))
        if not tls.verify:
            if client is None:
                return ssl.CertificateOptions(verify=False)
            return ssl.CertificateOptions(
                privateKey=client.privateKey.original, certificate=client.original, verify=False)
        kwargs = {"clientCertificate": client}
        if tls.ca_cert:
            kwargs["trustRoot"] = ssl.Certificate.loadPEM(_read(tls.ca_cert))
        return ssl.optionsForClientTLS(hostname, **kwargs)
    except (OSError, ssl.SSL.Error) as e:
        raise HostError("cannot load the TLS files: %s" % (e,))


def endpoint_for(reactor, host: DockerHost):
    """A client endpoint connecting to C{host}."""
    if host.scheme == "unix":
        return UNIXClientEndpoint(reactor, host.path)
    endpoint = HostnameEndpoint(reactor, host.hostname, host.port)
    if host.tls is not None:
        endpoint = wrapClientTLS(tls_options(host.hostname, host.tls), endpoint)
    return endpoint


@implementer(IAgentEndpointFactory)
class HostEndpoints:
    """Every URL goes to the one daemon."""

    def __init__(self, reactor, host: DockerHost) -> None:
        self.reactor = reactor
        self.host = host
        self._endpoint = endpoint_for(reactor, host)

    def endpointForURI(self, uri):
        return self._endpoint


def agent_for(reactor, host: DockerHost, persistent: bool = True) -> Agent:
    """An Agent keeping connections to C{host} open between requests (no
    timeouts: a stream lasts as long as the daemon sends)."""
    pool = HTTPConnectionPool(reactor, persistent=persistent)
    pool.maxPersistentPerHost = 4
    return Agent.usingEndpointFactory(reactor, HostEndpoints(reactor, host), pool=pool)
