"""
The registry client: which endpoints a registry has (https, and for an
insecure registry https without verification then plain http, as dockerd
tries them), the C{/v2/} ping that learns its C{WWW-Authenticate}
challenge, bearer tokens (anonymous or with credentials) and basic auth,
and the requests a pull or a login makes.  Everything is asynchronous
(treq over Twisted's Agent); nothing blocks the reactor.

C{RegistryService(reactor, insecure_registries=(), mirrors=())} is made once
by the daemon; C{session(domain, path, auth)} gives a L{Session} for one
repository.
"""

import hashlib
import ipaddress
import json
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlencode, urlsplit

import attr
import treq
from OpenSSL import SSL
from treq.client import HTTPClient
from twisted.internet import ssl
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from ... import __version__
from ...errors import InternalError, InvalidParameter
from ...logs import Logger
from ...reference import DEFAULT_DOMAIN
from . import auth as auth_mod
from . import manifest as manifests
from .errors import RegistryError, TransportError, from_response, transport_message

log = Logger()

DEFAULT_REGISTRY_HOST = "registry-1.docker.io"
INDEX_SERVER = "https://index.docker.io/v1/"
DEFAULT_INSECURE_CIDRS = ("::1/128", "127.0.0.0/8")
USER_AGENT = "docker/%s twistedock/%s" % ("20.10.24", __version__)


@implementer(IOpenSSLClientConnectionCreator)
class _Unverified:
    """TLS without certificate verification (an insecure registry)."""

    def __init__(self, hostname: bytes) -> None:
        self._hostname = hostname
        self._context = ssl.CertificateOptions(verify=False).getContext()

    def clientConnectionForTLS(self, tlsProtocol):
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        try:
            connection.set_tlsext_host_name(self._hostname)
        except Exception:
            pass
        connection.set_connect_state()
        return connection


@implementer(IPolicyForHTTPS)
class _UnverifiedPolicy:
    def creatorForNetloc(self, hostname, port):
        return _Unverified(hostname)


@attr.s(frozen=True, auto_attribs=True)
class Endpoint:
    base: str  # scheme://host[:port]
    client: HTTPClient
    secure: bool

    @property
    def netloc(self) -> str:
        parts = urlsplit(self.base)
        if parts.port:
            return parts.netloc
        return "%s:%d" % (parts.hostname, 443 if parts.scheme == "https" else 80)


def _network(text: str):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


class RegistryService:
    def __init__(
        self, reactor, insecure_registries: Sequence[str] = (), mirrors: Sequence[str] = (),
        client: Optional[HTTPClient] = None,
    ) -> None:
        """C{client}: one HTTP client for every endpoint (tests: a StubTreq),
        without timeouts."""
        self.reactor = reactor
        self.insecure_cidrs: List[str] = list(DEFAULT_INSECURE_CIDRS)
        self.insecure_hosts: List[str] = []
        for entry in insecure_registries:
            entry = entry.strip()
            for prefix in ("http://", "https://"):
                if entry.startswith(prefix):
                    raise InvalidParameter(
                        "insecure registry %s should not contain '://'" % (entry,)
                    )
            if "/" in entry and _network(entry) is not None:
                network = str(_network(entry))
                if network not in self.insecure_cidrs:
                    self.insecure_cidrs.append(network)
            elif entry not in self.insecure_hosts:
                self.insecure_hosts.append(entry)
        self.mirrors = [_mirror(m) for m in mirrors]
        self._pools: List[HTTPConnectionPool] = []
        #: Request timeouts, in seconds, or None (an injected client).
        self.timeouts: Optional[Dict[str, float]] = None
        #: Whether request bodies may be producers (an injected StubTreq
        #: takes bytes only).
        self.stream_bodies = client is None
        if client is not None:
            self._verified = self._unverified = client
        else:
            self._verified = self._client(BrowserLikePolicyForHTTPS())
            self._unverified = self._client(_UnverifiedPolicy())
            self.timeouts = {"ping": 30, "token": 60, "request": 120}

    def _client(self, policy) -> HTTPClient:
        pool = HTTPConnectionPool(self.reactor, persistent=True)
        pool.maxPersistentPerHost = 6
        pool.retryAutomatically = False
        self._pools.append(pool)
        return HTTPClient(Agent(self.reactor, contextFactory=policy, pool=pool, connectTimeout=30))

    def timeout(self, what: str) -> dict:
        if self.timeouts is None:
            return {}
        return {"timeout": self.timeouts[what], "reactor": self.reactor}

    async def close(self) -> None:
        for pool in self._pools:
            await pool.closeCachedConnections()

    # -- configuration ---------------------------------------------------------

    def is_secure(self, host: str) -> bool:
        """isSecureIndex: insecure when listed by name, or when its address
        (loopback by default) is in an insecure CIDR."""
        if host in self.insecure_hosts:
            return False
        name = host
        if name.startswith("["):
            name = name[1:].split("]", 1)[0]
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        if name in self.insecure_hosts:
            return False
        addresses = []
        try:
            addresses = [ipaddress.ip_address(name)]
        except ValueError:
            if name == "localhost":
                addresses = [ipaddress.ip_address("127.0.0.1")]
        for address in addresses:
            for cidr in self.insecure_cidrs:
                network = _network(cidr)
                if network is not None and address.version == network.version and address in network:
                    return False
        return True

    def registry_config(self) -> dict:
        """/info's RegistryConfig."""
        index_configs = {
            DEFAULT_DOMAIN: {
                "Name": DEFAULT_DOMAIN,
                "Mirrors": list(self.mirrors),
                "Secure": True,
                "Official": True,
            }
        }
        for host in self.insecure_hosts:
            index_configs[host] = {"Name": host, "Mirrors": [], "Secure": False, "Official": False}
        return {
            "AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": list(self.insecure_cidrs),
            "IndexConfigs": dict(sorted(index_configs.items())),
            "Mirrors": list(self.mirrors),
        }

    def endpoints(self, domain: str) -> List[Endpoint]:
        if domain in (DEFAULT_DOMAIN, "index.docker.io"):
            return [Endpoint("https://" + DEFAULT_REGISTRY_HOST, self._verified, True)]
        if self.is_secure(domain):
            return [Endpoint("https://" + domain, self._verified, True)]
        return [
            Endpoint("https://" + domain, self._unverified, False),
            Endpoint("http://" + domain, self._unverified, False),
        ]

    async def distribution_inspect(self, name: str, auth_doc: dict) -> dict:
        return await distribution_inspect(self, name, auth_doc)

    def session(self, domain: str, path: str, credentials: auth_mod.AuthConfig, actions: str = "pull",
                endpoints: Optional[List[Endpoint]] = None) -> "Session":
        return Session(self, domain, path, credentials, actions, endpoints)

    def pull_sessions(self, domain: str, path: str, credentials: auth_mod.AuthConfig) -> List["Session"]:
        """The sessions a pull tries in turn: Docker Hub's mirrors, then
        the registry itself (the last)."""
        sessions = []
        if domain in (DEFAULT_DOMAIN, "index.docker.io"):
            for mirror in self.mirrors:
                parts = urlsplit(mirror)
                base = "%s://%s" % (parts.scheme, parts.netloc)
                if parts.scheme == "https" and self.is_secure(parts.netloc):
                    found = [Endpoint(base, self._verified, True)]
                else:
                    found = [Endpoint(base, self._unverified, False)]
                sessions.append(Session(self, domain, path, credentials, "pull", found))
        sessions.append(Session(self, domain, path, credentials, "pull"))
        return sessions

    # -- docker login -------------------------------------------------------------

    async def login(self, credentials: auth_mod.AuthConfig) -> dict:
        """POST /auth: check the credentials against the registry."""
        address = credentials.server_address or INDEX_SERVER
        if "://" not in address:
            address = "https://" + address
        host = urlsplit(address).netloc
        if not host:
            raise InvalidParameter("unable to parse server address: %s" % (credentials.server_address,))
        if host == "index.docker.io":
            host = DEFAULT_DOMAIN
        session = Session(self, host, "", credentials, "")
        await session.ping()
        token = await session.login()
        return {"IdentityToken": token, "Status": "Login Succeeded"}


def _mirror(text: str) -> str:
    """ValidateMirror: an http(s) URL without path, query or credentials;
    kept with a trailing slash, as /info shows it."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https"):
        raise InvalidParameter("invalid mirror: unsupported scheme %r in %r" % (parts.scheme, text))
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidParameter("invalid mirror: path, query, or credentials are not allowed: %s" % (text,))
    return "%s://%s/" % (parts.scheme, parts.netloc)


@attr.s(auto_attribs=True)
class Answer:
    status: int
    headers: object  # twisted Headers
    response: object  # treq response (body unread when streamed)
    url: str

    def header(self, name: str) -> str:
        values = self.headers.getRawHeaders(name) or []
        return values[0] if values else ""


class Session:
    """Requests to one repository of one registry, authenticated as its
    challenge asks."""

    def __init__(self, service: RegistryService, domain: str, path: str,
                 credentials: auth_mod.AuthConfig, actions: str,
                 endpoints: Optional[List[Endpoint]] = None) -> None:
        self.service = service
        self._endpoints = endpoints
        self.domain = domain
        self.path = path
        self.credentials = credentials
        self.actions = actions
        self.endpoint: Optional[Endpoint] = None
        self.challenges: List[Tuple[str, Dict[str, str]]] = []
        self._token: Optional[str] = None
        self._refresh_token = ""
        self._extra_scopes: List[str] = []

    def url(self, tail: str) -> str:
        assert self.endpoint is not None
        return "%s/v2/%s" % (self.endpoint.base, tail)

    def repository_url(self, tail: str) -> str:
        return self.url("%s/%s" % (self.path, tail))

    # -- ping and auth ----------------------------------------------------------

    async def ping(self) -> None:
        """GET /v2/ on each endpoint in turn until one answers over HTTP;
        its challenge says how to authenticate."""
        last: Optional[BaseException] = None
        for endpoint in self._endpoints or self.service.endpoints(self.domain):
            url = endpoint.base + "/v2/"
            try:
                response = await endpoint.client.get(
                    url, headers={"User-Agent": USER_AGENT}, **self.service.timeout("ping")
                )
                await treq.content(response)
            except CancelledError:
                raise
            except Exception as e:
                last = InternalError(transport_message("GET", url, e, endpoint.netloc))
                log.debug("registry ping {url} failed: {error}", url=url, error=str(e))
                continue
            self.endpoint = endpoint
            if response.code == 401:
                self.challenges = auth_mod.parse_challenges(
                    response.headers.getRawHeaders("WWW-Authenticate") or []
                )
            return
        assert last is not None
        raise last

    def _scope(self) -> List[str]:
        scopes = []
        if self.path and self.actions:
            scopes.append("repository:%s:%s" % (self.path, self.actions))
        return scopes + self._extra_scopes

    def add_scope(self, scope: str) -> None:
        """Ask for one more scope (a mount's source repository): the next
        request gets a token for all of them."""
        if scope not in self._extra_scopes:
            self._extra_scopes.append(scope)
            self._token = None

    def _challenge(self, scheme: str) -> Optional[Dict[str, str]]:
        for name, params in self.challenges:
            if name == scheme:
                return params
        return None

    async def _authorization(self, method: str, url: str) -> Optional[str]:
        if self._challenge("bearer") is not None:
            if self._token is None:
                self._token = await self._fetch_token(self._challenge("bearer"), self._scope())
            return "Bearer " + self._token if self._token else None
        if self._challenge("basic") is not None:
            if not self.credentials.has_basic:
                verb = method[:1] + method[1:].lower()
                raise InternalError('%s "%s": no basic auth credentials' % (verb, url))
            return auth_mod.basic_header(self.credentials.username, self.credentials.password)
        return None

    async def _fetch_token(self, params: Dict[str, str], scopes: List[str], offline: bool = False) -> str:
        creds = self.credentials
        if creds.registry_token:
            return creds.registry_token
        realm = params.get("realm") or ""
        if not realm:
            raise InternalError("no realm specified for token auth challenge")
        endpoint_client = self.endpoint.client if self.endpoint else self.service._verified
        headers = {"User-Agent": USER_AGENT}
        if creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": "docker", "service": params.get("service", "")}
            if scopes:
                form["scope"] = " ".join(scopes)
            response = await endpoint_client.post(
                realm, data=form, headers=headers, **self.service.timeout("token")
            )
        else:
            query: Dict[str, object] = {}
            if params.get("service"):
                query["service"] = params["service"]
            if scopes:
                query["scope"] = scopes
            if creds.has_basic:
                query["account"] = creds.username
                headers["Authorization"] = auth_mod.basic_header(creds.username, creds.password)
            if offline:
                query["offline_token"] = "true"
                query["client_id"] = "docker"
            separator = "&" if "?" in realm else "?"
            target = realm + (separator + urlencode(query, doseq=True) if query else "")
            try:
                response = await endpoint_client.get(
                    target, headers=headers, **self.service.timeout("token")
                )
            except CancelledError:
                raise
            except Exception as e:
                netloc = urlsplit(realm).netloc
                raise InternalError(transport_message("GET", target, e, netloc))
        body = await treq.content(response)
        if response.code != 200:
            raise from_response(response.code, body)
        try:
            doc = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise InternalError("unable to decode token response")
        token = doc.get("token") or doc.get("access_token") or ""
        if offline:
            self._refresh_token = doc.get("refresh_token") or ""
        return token

    async def login(self) -> str:
        """loginV2: GET /v2/ with the credentials; the refresh token a token
        server returns (an identity token), if any."""
        url = self.url("")
        self._refresh_token = ""
        bearer = self._challenge("bearer")
        if bearer is not None:
            self._token = await self._fetch_token(bearer, [], offline=True)
        answer = await self.request("GET", url, retry=False)
        await treq.content(answer.response)
        if answer.status != 200:
            raise InternalError(
                "login attempt to %s failed with status: %d %s"
                % (url, answer.status, _status_text(answer.status))
            )
        return self._refresh_token

    # -- requests -------------------------------------------------------------------

    async def request(self, method: str, url: str, headers: Optional[dict] = None,
                      retry: bool = True, stream: bool = False, body=None) -> Answer:
        """One request, authorised; an error answer is the caller's."""
        if self.endpoint is None:
            await self.ping()
        sent = {"User-Agent": USER_AGENT}
        sent.update(headers or {})
        authorization = await self._authorization(method, url)
        if authorization:
            sent["Authorization"] = authorization
        try:
            response = await self.endpoint.client.request(
                method, url, headers=sent, unbuffered=stream, data=body,
                **({} if stream else self.service.timeout("request"))
            )
        except CancelledError:
            raise
        except Exception as e:
            raise TransportError(transport_message(method, url, e, self.endpoint.netloc))
        if response.code == 401 and retry and self._challenge("bearer") is not None and self._token is not None:
            await discard(response)
            # The token may have expired: one more, once.
            self._token = None
            return await self.request(method, url, headers, retry=False, stream=stream, body=body)
        return Answer(response.code, response.headers, response, url)

    async def error_of(self, answer: Answer) -> RegistryError:
        body = b""
        if answer.status != 204:
            try:
                body = await treq.content(answer.response)
            except Exception:
                body = b""
        return from_response(answer.status, body)

    async def get_manifest(self, reference: str) -> Tuple[bytes, str, str]:
        """The manifest C{reference} (a tag or a digest) names: its bytes,
        digest and media type.  A tag is resolved with HEAD first, as
        distribution's client does; a digest is verified."""
        if self.endpoint is None:
            await self.ping()
        digest = reference if ":" in reference else ""
        accept = {"Accept": manifests.ACCEPT}
        if not digest:
            url = self.repository_url("manifests/" + reference)
            head = await self.request("HEAD", url, accept)
            await discard(head.response)
            if head.status == 200 and head.header("Docker-Content-Digest"):
                digest = head.header("Docker-Content-Digest")
            # Otherwise the GET below says why, in its body (a HEAD has none).
        target = digest or reference
        url = self.repository_url("manifests/" + target)
        answer = await self.request("GET", url, accept)
        if answer.status != 200:
            raise await self.error_of(answer)
        body = await treq.content(answer.response)
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if digest and digest.startswith("sha256:") and actual != digest:
            raise InternalError(
                "manifest verification failed for digest %s" % (digest,)
            )
        return body, digest or actual, answer.header("Content-Type")

    async def list_tags(self) -> list:
        """GET /v2/<name>/tags/list, every page (Link: rel="next")."""
        if self.endpoint is None:
            await self.ping()
        tags: list = []
        url = self.repository_url("tags/list")
        while url:
            answer = await self.request("GET", url)
            if answer.status != 200:
                raise await self.error_of(answer)
            try:
                doc = json.loads((await treq.content(answer.response)).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise InternalError("invalid tag list from the registry")
            tags.extend(t for t in (doc.get("tags") or []) if isinstance(t, str))
            link = answer.header("Link")
            url = ""
            if 'rel="next"' in link and "<" in link:
                target = link[link.index("<") + 1 : link.index(">")]
                url = self.endpoint.base + target if target.startswith("/") else target
        return tags

    async def get_blob(self, digest: str, limit: int = 16 << 20) -> bytes:
        """A small blob (an image config), verified."""
        if self.endpoint is None:
            await self.ping()
        url = self.repository_url("blobs/" + digest)
        answer = await self.request("GET", url)
        if answer.status != 200:
            raise await self.error_of(answer)
        body = await treq.content(answer.response)
        if len(body) > limit:
            raise InternalError("blob %s is too large" % (digest,))
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise InternalError("filesystem layer verification failed for digest %s" % (digest,))
        return body


async def discard(response) -> None:
    """Read and drop an answer's body (what it says does not matter)."""
    try:
        await treq.content(response)
    except Exception:
        pass


def _status_text(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


async def distribution_inspect(service: RegistryService, name: str, auth_doc: dict) -> dict:
    """GET /distribution/{name}/json: the manifest's descriptor and the
    platforms it is for (an index's entries, or the image config's)."""
    from ...errors import NotFound, Unauthorized
    from ...reference import parse_normalized_named

    ref = parse_normalized_named(name).tag_name_only()
    session = service.session(ref.domain, ref.path, auth_mod.from_json(auth_doc))
    try:
        body, digest, content_type = await session.get_manifest(ref.digest or ref.tag or "latest")
        parsed = manifests.parse(body, content_type)
        descriptor = {"mediaType": parsed.media_type, "digest": digest, "size": len(body)}
        if parsed.is_index:
            platforms = [manifests.platform_json(m.platform) for m in parsed.manifests if m.platform]
        else:
            config = json.loads((await session.get_blob(parsed.config.digest)).decode("utf-8"))
            platforms = [manifests.platform_json(config if isinstance(config, dict) else {})]
    except RegistryError as e:
        if e.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN") or e.http_status == 404:
            raise NotFound(str(e))
        if e.code in ("UNAUTHORIZED", "DENIED"):
            raise Unauthorized(str(e))
        raise
    return {"Descriptor": descriptor, "Platforms": platforms}
