"""The registry client and pulls, in process: manifests and platform
selection, progress lines, auth challenges, dockerd's error messages, and
whole pulls from a fake registry (a twisted.web resource behind StubTreq)
into the real image store on a temporary data root."""

import base64
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from urllib.parse import urlencode

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.web.resource import Resource

from twistedock.backend.distribution import RegistryService
from twistedock import progress
from twistedock.backend.distribution import auth, errors, manifest
from twistedock.backend.events import EventLog
from twistedock.backend.images import ImageStore
from twistedock.errors import DockerError, InternalError, InvalidParameter, NotFound
from twistedock.routers.image import ImageRouter
from twistedock.server.middleware import APIConfig
from twistedock.server.root import APIResource, compose

from .test_images import SyncReactor

OCI_MANIFEST = manifest.OCI_MANIFEST
OCI_INDEX = manifest.OCI_INDEX


# -- manifests and platforms ------------------------------------------------------


def _index(*platforms):
    return manifest.Manifest(
        OCI_INDEX,
        manifests=tuple(
            manifest.Descriptor(OCI_MANIFEST, "sha256:%064x" % i, 10, platform)
            for i, platform in enumerate(platforms)
        ),
    )


INDEX = _index(
    {"os": "linux", "architecture": "amd64"},
    {"os": "linux", "architecture": "arm64", "variant": "v8"},
    {"os": "linux", "architecture": "arm", "variant": "v7"},
    {"os": "linux", "architecture": "arm", "variant": "v6"},
    {"os": "unknown", "architecture": "unknown"},
)


@pytest.mark.parametrize(
    "wanted, entry",
    [
        ("linux/amd64", 0),
        ("linux/arm64", 1),
        ("linux/arm64/v8", 1),
        ("linux/aarch64", 1),
        ("linux/arm", 2),
        ("linux/arm/v6", 3),
    ],
)
def test_an_index_resolves_to_the_platform_asked_for(wanted, entry):
    chosen = manifest.select(INDEX, manifest.parse_platform(wanted))
    assert chosen.digest == "sha256:%064x" % entry


def test_the_host_platform_is_the_default(monkeypatch):
    monkeypatch.setattr("twistedock.golang.goarch", lambda machine=None: "arm64")
    assert manifest.parse_platform("") == manifest.Platform("linux", "arm64", "")
    assert manifest.select(INDEX, manifest.parse_platform("")).digest == "sha256:%064x" % 1


def test_a_missing_platform_is_dockerds_message():
    with pytest.raises(NotFound) as raised:
        manifest.select(INDEX, manifest.parse_platform("linux/s390x"))
    assert str(raised.value) == "no matching manifest for linux/s390x in the manifest list entries"


@pytest.mark.parametrize(
    "text, message",
    [
        ("linux/amd64/v2/x", '"linux/amd64/v2/x": unknown operating system or architecture: invalid argument'),
        ("linux//", '"linux//": unknown operating system or architecture: invalid argument'),
        ("windows/amd64", "operating system is not supported"),
    ],
)
def test_bad_platforms_are_refused(text, message):
    with pytest.raises(InvalidParameter) as raised:
        manifest.parse_platform(text)
    assert str(raised.value) == message


def test_manifest_types():
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": manifest.DOCKER_MANIFEST,
            "config": {"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": 3},
            "layers": [{"mediaType": "y", "digest": "sha256:" + "b" * 64, "size": 4}],
        }
    ).encode()
    parsed = manifest.parse(body)
    assert not parsed.is_index
    assert parsed.config.digest == "sha256:" + "a" * 64
    assert [layer.size for layer in parsed.layers] == [4]
    # Without mediaType in the document, the answer's Content-Type says.
    listed = manifest.parse(json.dumps({"schemaVersion": 2, "manifests": []}).encode(), manifest.DOCKER_LIST)
    assert listed.is_index
    with pytest.raises(InvalidParameter, match="schema 1 support has been removed"):
        manifest.parse(json.dumps({"schemaVersion": 1, "fsLayers": []}).encode())
    with pytest.raises(InternalError, match="unsupported media type application/x-foo"):
        manifest.parse(json.dumps({"schemaVersion": 2, "mediaType": "application/x-foo"}).encode())


# -- progress lines --------------------------------------------------------------


def test_progress_pace_reports_a_slow_transfer():
    """A line every step of bytes, at the end, and after the interval when
    bytes trickle in below the step (cri-dockerd gives up on a pull that
    says nothing for a minute); nothing new, no line."""
    now = [0.0]
    pace = progress.Pace(lambda: now[0], 10_000, 1000, 5.0)
    assert pace.due(0)
    assert not pace.due(10)
    assert pace.due(1000)
    now[0] = 4.0
    assert not pace.due(1100)
    now[0] = 5.5
    assert pace.due(1200)
    now[0] = 20.0
    assert not pace.due(1200)
    assert pace.due(10_000)


def test_progress_bars_are_dockerds():
    # As the reference dockerd wrote them for the same blobs.
    assert progress.bar(103, 103) == "[==================================================>]     103B/103B"
    assert progress.human_size(1031571) == "1.032MB"
    assert progress.bar(65136, 1031571) == (
        "[===>                                               ]  65.14kB/1.032MB"
    )
    assert progress.encode(progress.message("Downloading", id="122f7b79f69d", current=103, total=103)) == (
        b'{"status":"Downloading","progressDetail":{"current":103,"total":103},'
        b'"progress":"[==================================================\\u003e]     103B/103B",'
        b'"id":"122f7b79f69d"}\r\n'
    )
    assert progress.encode(progress.message("Pulling fs layer", id="dd9b81a8a925")) == (
        b'{"status":"Pulling fs layer","progressDetail":{},"id":"dd9b81a8a925"}\r\n'
    )
    assert progress.encode(progress.message("Pulling from busybox", id="latest", detail=False)) == (
        b'{"status":"Pulling from busybox","id":"latest"}\r\n'
    )
    # JSONProgress.String and its omitempty fields: no bar for nothing, no
    # total when the count went past it, no zero current.
    assert progress.bar(0, 0) == ""
    assert progress.bar(2000, 1000) == "[" + "=" * 50 + ">]      2kB"
    assert progress.message("Extracting", id="a", current=0, total=5) == {
        "status": "Extracting", "progressDetail": {"total": 5}, "progress": "[>" + " " * 50 + "]       0B/5B",
        "id": "a",
    }


# -- credentials and challenges ----------------------------------------------------


def test_challenges():
    parsed = auth.parse_challenges(
        [
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/busybox:pull"',
            'Basic realm="test-realm"',
        ]
    )
    assert parsed == [
        ("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                    "scope": "repository:library/busybox:pull"}),
        ("basic", {"realm": "test-realm"}),
    ]


def test_auth_configs():
    encoded = base64.b64encode(b"bob:pw:with:colons").decode()
    config = auth.from_json({"auth": encoded, "ServerAddress": "r.example"})
    assert (config.username, config.password, config.server_address) == ("bob", "pw:with:colons", "r.example")
    header = base64.urlsafe_b64encode(json.dumps({"username": "a", "password": "b"}).encode()).decode().rstrip("=")
    assert auth.decode_header(header).username == "a"
    assert auth.decode_header("!!!not base64") == auth.AuthConfig()


# -- errors -------------------------------------------------------------------------


def test_registry_errors_read_as_dockerds():
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}}]})
    error = errors.from_response(404, body.encode())
    assert str(error) == "manifest unknown: manifest unknown"
    translated = errors.translate_pull_error(error, "127.0.0.1:5000/busybox:nope", "127.0.0.1:5000/busybox")
    assert isinstance(translated, NotFound)
    assert str(translated) == (
        "manifest for 127.0.0.1:5000/busybox:nope not found: manifest unknown: manifest unknown"
    )
    name = errors.from_response(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}')
    assert str(errors.translate_pull_error(name, "x/y:latest", "x/y")) == (
        "repository x/y not found: name unknown: repository name not known to registry"
    )
    denied = errors.from_response(401, b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}')
    assert str(errors.translate_pull_error(denied, "y:latest", "y")) == (
        "pull access denied for y, repository does not exist or may require 'docker login': "
        "denied: requested access to the resource is denied"
    )
    assert str(errors.from_response(401, b"")) == "unauthorized: authentication required"
    assert str(errors.from_response(503, b"")) == "received unexpected HTTP status: 503 Service Unavailable"


# -- insecure registries -------------------------------------------------------------


def test_loopback_and_listed_registries_are_insecure():
    service = RegistryService(SyncReactor(), ["reg.example:5000", "10.1.0.0/16"], client=StubTreq(Resource()))
    assert not service.is_secure("127.0.0.1:5000")
    assert not service.is_secure("127.8.9.10")
    assert not service.is_secure("localhost:5000")
    assert not service.is_secure("[::1]:5000")
    assert not service.is_secure("reg.example:5000")
    assert not service.is_secure("10.1.2.3:443")
    assert service.is_secure("10.2.0.1:443")
    assert service.is_secure("quay.io")
    assert [e.base for e in service.endpoints("127.0.0.1:5000")] == [
        "https://127.0.0.1:5000", "http://127.0.0.1:5000"
    ]
    assert [e.base for e in service.endpoints("docker.io")] == ["https://registry-1.docker.io"]
    config = service.registry_config()
    assert config["InsecureRegistryCIDRs"] == ["::1/128", "127.0.0.0/8", "10.1.0.0/16"]
    assert config["IndexConfigs"]["reg.example:5000"] == {
        "Name": "reg.example:5000", "Mirrors": [], "Secure": False, "Official": False
    }
    with pytest.raises(InvalidParameter):
        RegistryService(SyncReactor(), ["http://reg.example"], client=StubTreq(Resource()))


# -- a fake registry -------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files) -> bytes:
    """A layer tar holding C{files} (path -> content)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class FakeRegistry(Resource):
    """Enough of the distribution API for a pull, with optional basic or
    bearer auth (its token endpoint at /token)."""

    isLeaf = True

    def __init__(self, scheme=None, users=None) -> None:
        super().__init__()
        self.manifests = {}  # (repo, reference) -> (media type, bytes)
        self.blobs = {}  # digest -> bytes
        self.broken = {}  # digest -> bytes served instead
        self.scheme = scheme
        self.users = users or {}
        self.requests = []
        self.token_queries = []
        self.uploads = []
        self.hosts = []
        #: Range headers received; None: Range is ignored (200, whole blob).
        self.ranges = []
        #: (repository, digest) of the blobs each repository has.
        self.linked = set()
        #: digest -> how many more GETs of it answer 503.
        self.unavailable = {}
        #: The v1 search's results (None: no v1 search, as distribution).
        self.search_results = None
        self.searches = []
        #: How many more blob upload PUTs answer 503.
        self.failing_uploads = 0

    def _authorised(self, request) -> bool:
        header = (request.getHeader("authorization") or "")
        if self.scheme == "basic":
            if not header.startswith("Basic "):
                return False
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return self.users.get(user) == password
        if self.scheme == "bearer":
            return header == "Bearer good-token"
        return True

    def render(self, request):
        path = request.path.decode()
        method = request.method.decode()
        self.requests.append((method, path))
        self.hosts.append((request.getHeader("host") or "", path))
        if path == "/token":
            query = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
            self.token_queries.append(query)
            header = request.getHeader("authorization") or ""
            if header:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if self.users.get(user) != password:
                    request.setResponseCode(401)
                    return b'{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}'
            request.setHeader("content-type", "application/json")
            return json.dumps({"token": "good-token" if header else "anonymous"}).encode()
        if not self._authorised(request):
            request.setResponseCode(401)
            if self.scheme == "basic":
                request.setHeader("www-authenticate", 'Basic realm="fake"')
            else:
                request.setHeader(
                    "www-authenticate",
                    'Bearer realm="http://127.0.0.1:5000/token",service="fake-registry"',
                )
            request.setHeader("content-type", "application/json")
            return b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}'
        if path == "/v2/":
            return b"{}"
        if path == "/v1/search" and self.search_results is not None:
            self.searches.append({k.decode(): v[0].decode() for k, v in request.args.items()})
            request.setHeader("content-type", "application/json")
            return json.dumps({"num_results": len(self.search_results), "query": "x",
                               "results": self.search_results}).encode()
        upload = re.match(r"^/v2/(.+)/blobs/uploads/(.*)$", path)
        if upload is not None:
            repo, session = upload.groups()
            args = {k.decode(): v[0].decode() for k, v in request.args.items()}
            self.uploads.append((method, repo, args))
            if method == "POST":
                if "mount" in args and args["mount"] in self.blobs:
                    self.linked.add((repo, args["mount"]))
                    request.setResponseCode(201)
                    return b""
                request.setResponseCode(202)
                request.setHeader("location", "/v2/%s/blobs/uploads/u%d?_state=x" % (repo, len(self.uploads)))
                return b""
            data = request.content.read()
            if self.failing_uploads:
                self.failing_uploads -= 1
                request.setResponseCode(503)
                return b"upstream gone"
            if _sha(data) != args.get("digest"):
                request.setResponseCode(400)
                return b'{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}'
            self.blobs[args["digest"]] = data
            self.linked.add((repo, args["digest"]))
            request.setResponseCode(201)
            return b""
        listing = re.match(r"^/v2/(.+)/tags/list$", path)
        if listing is not None:
            repo = listing.group(1)
            tags = sorted(r for n, r in self.manifests if n == repo and ":" not in r)
            request.setHeader("content-type", "application/json")
            return json.dumps({"name": repo, "tags": tags}).encode()
        match = re.match(r"^/v2/(.+)/(manifests|blobs)/([^/]+)$", path)
        if match is None:
            request.setResponseCode(404)
            return b"404 page not found"
        repo, kind, reference = match.groups()
        if kind == "manifests" and method == "PUT":
            body = request.content.read()
            self.manifests[(repo, reference)] = (request.getHeader("content-type"), body)
            self.manifests[(repo, _sha(body))] = (request.getHeader("content-type"), body)
            request.setResponseCode(201)
            request.setHeader("docker-content-digest", _sha(body))
            return b""
        if kind == "manifests":
            found = self.manifests.get((repo, reference))
            if found is None:
                request.setResponseCode(404)
                request.setHeader("content-type", "application/json")
                if not any(r == repo for r, _ in self.manifests):
                    return b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}'
                return b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
            media_type, body = found
            request.setHeader("content-type", media_type)
            request.setHeader("docker-content-digest", _sha(body))
            return b"" if method == "HEAD" else body
        if self.unavailable.get(reference):
            self.unavailable[reference] -= 1
            request.setResponseCode(503)
            return b"upstream gone"
        data = self.broken.get(reference, self.blobs.get(reference))
        if (repo, reference) not in self.linked:
            data = None
        if data is None:
            request.setResponseCode(404)
            return b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}'
        wanted = request.getHeader("range")
        if wanted and self.ranges is not None:
            self.ranges.append(wanted)
            start = int(wanted.split("=", 1)[1].rstrip("-"))
            request.setResponseCode(206)
            request.setHeader("content-range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
            return data[start:]
        return data

    def add_blob(self, data: bytes, repo: str) -> str:
        digest = _sha(data)
        self.blobs[digest] = data
        self.linked.add((repo, digest))
        return digest

    def add_image(self, repo, tag, layers, architecture="amd64", variant="", labels=None):
        """An OCI image of gzipped C{layers}: its manifest's digest and
        descriptor; tagged C{tag} unless None."""
        descriptors, diff_ids = [], []
        for tar in layers:
            diff_ids.append(_sha(tar))
            blob = gzip.compress(tar, mtime=0)
            descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": self.add_blob(blob, repo), "size": len(blob)})
        config = {
            "architecture": architecture, "os": "linux", "created": "2024-01-02T03:04:05Z",
            "config": {"Cmd": ["sh"], "Labels": labels or {}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        if variant:
            config["variant"] = variant
        config_raw = json.dumps(config).encode()
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": self.add_blob(config_raw, repo), "size": len(config_raw)},
               "layers": descriptors}
        body = json.dumps(doc).encode()
        digest = _sha(body)
        self.manifests[(repo, digest)] = (OCI_MANIFEST, body)
        if tag is not None:
            self.manifests[(repo, tag)] = (OCI_MANIFEST, body)
        platform = {"os": "linux", "architecture": architecture}
        if variant:
            platform["variant"] = variant
        return digest, {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body), "platform": platform}, _sha(config_raw)

    def add_index(self, repo, tag, descriptors) -> str:
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}).encode()
        self.manifests[(repo, tag)] = (OCI_INDEX, body)
        self.manifests[(repo, _sha(body))] = (OCI_INDEX, body)
        return _sha(body)


class Pulls:
    def __init__(self, root, registry: FakeRegistry) -> None:
        self.reactor = SyncReactor()
        self.registry = registry
        self.stub = StubTreq(registry)
        self.service = RegistryService(self.reactor, client=self.stub)
        self.store = ImageStore(self.reactor, str(root), EventLog(), registry=self.service)
        self._settle(ensureDeferred(self.store.load()))

    def _settle(self, d):
        results = []
        d.addBoth(results.append)
        for _ in range(1000):
            if results:
                break
            self.stub.flush()
        assert results, "the pull did not finish"
        result = results[0]
        if hasattr(result, "raiseException"):
            result.raiseException()
        return result

    def pull(self, image, tag="latest", platform="", credentials=None):
        lines = []
        self._settle(
            ensureDeferred(self.store.pull_image(image, tag, platform, credentials or {}, lines.append))
        )
        return lines

    def fails(self, image, tag="latest", platform="", credentials=None):
        lines = []
        with pytest.raises(DockerError) as raised:
            self._settle(
                ensureDeferred(self.store.pull_image(image, tag, platform, credentials or {}, lines.append))
            )
        return raised.value, lines


def statuses(lines):
    return [(line.get("id", ""), line["status"]) for line in lines if line["status"] not in ("Downloading", "Extracting")]


@pytest.fixture
def registry():
    return FakeRegistry()


@pytest.fixture
def pulls(tmp_path, registry):
    return Pulls(tmp_path / "root", registry)


BASE = layer_tar({"etc/base": b"base\n"})
TOP = layer_tar({"etc/top": b"top\n"})


@pytest.mark.route("POST", "/images/create")
def test_a_pull_registers_the_image_with_its_tag_and_digest(pulls, registry):
    digest, _, config_digest = registry.add_image("app", "1.0", [BASE, TOP], labels={"a": "b"})
    lines = pulls.pull("127.0.0.1:5000/app", "1.0")
    base, top = [progress.short(d["digest"]) for d in json.loads(registry.manifests[("app", "1.0")][1])["layers"]]
    assert statuses(lines) == [
        ("1.0", "Pulling from app"),
        (base, "Pulling fs layer"),
        (top, "Pulling fs layer"),
        (base, "Verifying Checksum"),
        (base, "Download complete"),
        (top, "Verifying Checksum"),
        (top, "Download complete"),
        (base, "Pull complete"),
        (top, "Pull complete"),
        ("", "Digest: " + digest),
        ("", "Status: Downloaded newer image for 127.0.0.1:5000/app:1.0"),
    ]
    downloading = [line for line in lines if line["status"] == "Downloading"]
    assert downloading and all(set(line["progressDetail"]) == {"current", "total"} for line in downloading)
    assert any(line["status"] == "Extracting" for line in lines)
    image = pulls.store.get("127.0.0.1:5000/app:1.0")
    assert image.id == config_digest
    assert image.repo_tags == ["127.0.0.1:5000/app:1.0"]
    assert image.repo_digests == ["127.0.0.1:5000/app@" + digest]
    assert image.labels == {"a": "b"}
    assert [open(os.path.join(d, "etc", n)).read() for d, n in zip(image.layer_dirs, ("base", "top"))] == [
        "base\n", "top\n"
    ]
    assert pulls.store.get("127.0.0.1:5000/app@" + digest).id == image.id
    # Nothing is left in the downloads directory.
    assert os.listdir(os.path.join(pulls.store.root, "downloads")) == []
    # Again: up to date, no blob fetched.
    before = len(registry.requests)
    again = pulls.pull("127.0.0.1:5000/app", "1.0")
    assert statuses(again) == [
        ("1.0", "Pulling from app"),
        ("", "Digest: " + digest),
        ("", "Status: Image is up to date for 127.0.0.1:5000/app:1.0"),
    ]
    assert not [r for r in registry.requests[before:] if "/blobs/" in r[1] and not r[1].endswith(config_digest)]


def test_layers_present_are_not_downloaded(pulls, registry):
    registry.add_image("base", "latest", [BASE])
    registry.add_image("app", "latest", [BASE, TOP])
    pulls.pull("127.0.0.1:5000/base")
    lines = pulls.pull("127.0.0.1:5000/app")
    base_blob = progress.short(_sha(gzip.compress(BASE, mtime=0)))
    assert (base_blob, "Already exists") in statuses(lines)
    assert (base_blob, "Pulling fs layer") not in statuses(lines)


def test_an_index_pulls_the_platform_asked_for(pulls, registry, monkeypatch):
    monkeypatch.setattr("twistedock.golang.goarch", lambda machine=None: "amd64")
    _, amd, amd_config = registry.add_image("multi", None, [BASE], architecture="amd64")
    _, arm, arm_config = registry.add_image("multi", None, [TOP], architecture="arm64", variant="v8")
    index = registry.add_index("multi", "latest", [amd, arm])
    lines = pulls.pull("127.0.0.1:5000/multi")
    assert lines[-2]["status"] == "Digest: " + index
    assert pulls.store.get("127.0.0.1:5000/multi").id == amd_config
    pulls.pull("127.0.0.1:5000/multi", platform="linux/arm64")
    image = pulls.store.get("127.0.0.1:5000/multi")
    assert image.id == arm_config
    assert image.config["architecture"] == "arm64"
    error, lines = pulls.fails("127.0.0.1:5000/multi", platform="linux/s390x")
    assert str(error) == "no matching manifest for linux/s390x in the manifest list entries"
    # The error came after the stream started, as dockerd's does.
    assert lines == [{"status": "Pulling from multi", "id": "latest"}]


def test_without_a_tag_every_tag_is_pulled(pulls, registry):
    registry.add_image("app", "1", [BASE])
    registry.add_image("app", "2", [BASE, TOP])
    lines = pulls.pull("127.0.0.1:5000/app", tag="")
    assert [line["status"] for line in lines if line.get("id") in ("1", "2")] == [
        "Pulling from app", "Pulling from app"
    ]
    assert lines[-1] == {"status": "Status: Downloaded newer image for 127.0.0.1:5000/app"}
    assert pulls.store.get("127.0.0.1:5000/app:1").repo_tags == ["127.0.0.1:5000/app:1"]
    assert pulls.store.get("127.0.0.1:5000/app:2").repo_tags == ["127.0.0.1:5000/app:2"]
    again = pulls.pull("127.0.0.1:5000/app", tag="")
    assert again[-1] == {"status": "Status: Image is up to date for 127.0.0.1:5000/app"}


def test_a_pull_by_digest(pulls, registry):
    digest, _, config_digest = registry.add_image("app", "latest", [BASE])
    lines = pulls.pull("127.0.0.1:5000/app", digest)
    assert lines[0] == {"status": "Pulling from app", "id": digest}
    assert lines[-1]["status"] == "Status: Downloaded newer image for 127.0.0.1:5000/app@" + digest
    image = pulls.store.get("127.0.0.1:5000/app@" + digest)
    assert image.id == config_digest and image.repo_tags == []


def test_unknown_tags_and_repositories_are_dockerds_404s(pulls, registry):
    registry.add_image("app", "latest", [BASE])
    error, lines = pulls.fails("127.0.0.1:5000/app", "nope")
    assert isinstance(error, NotFound) and lines == []
    assert str(error) == "manifest for 127.0.0.1:5000/app:nope not found: manifest unknown: manifest unknown"
    error, lines = pulls.fails("127.0.0.1:5000/other")
    assert isinstance(error, NotFound) and lines == []
    assert str(error) == (
        "repository 127.0.0.1:5000/other not found: name unknown: repository name not known to registry"
    )


def test_a_blob_that_does_not_match_its_digest_is_never_used(pulls, registry):
    registry.add_image("app", "latest", [BASE, TOP])
    top_blob = _sha(gzip.compress(TOP, mtime=0))
    registry.broken[top_blob] = gzip.compress(layer_tar({"etc/evil": b"x"}), mtime=0)
    error, lines = pulls.fails("127.0.0.1:5000/app")
    assert str(error) == "filesystem layer verification failed for digest %s" % (top_blob,)
    assert lines[-1]["status"] != "Pull complete" or lines[-1]["id"] != progress.short(top_blob)
    with pytest.raises(NotFound):
        pulls.store.get("127.0.0.1:5000/app")
    # The verified blob waits for the next try; nothing partial is left.
    downloads = os.listdir(os.path.join(pulls.store.root, "downloads"))
    assert downloads == [_sha(gzip.compress(BASE, mtime=0)).split(":")[1]]
    assert not [n for n in os.listdir(os.path.join(pulls.store.root, "layers")) if not n.startswith(".")]
    # Fixed: the retry fetches only what it had not verified.
    del registry.broken[top_blob]
    before = len(registry.requests)
    lines = pulls.pull("127.0.0.1:5000/app")
    blobs = [path for method, path in registry.requests[before:] if method == "GET" and "/blobs/" in path]
    assert not [p for p in blobs if p.endswith(_sha(gzip.compress(BASE, mtime=0)))]
    assert pulls.store.get("127.0.0.1:5000/app").repo_tags == ["127.0.0.1:5000/app:latest"]
    assert os.listdir(os.path.join(pulls.store.root, "downloads")) == []


def test_basic_auth(tmp_path):
    registry = FakeRegistry("basic", {"alice": "s3cret"})
    pulls = Pulls(tmp_path / "root", registry)
    registry.add_image("app", "latest", [BASE])
    error, _ = pulls.fails("127.0.0.1:5000/app")
    assert str(error) == 'Head "https://127.0.0.1:5000/v2/app/manifests/latest": no basic auth credentials'
    error, _ = pulls.fails("127.0.0.1:5000/app", credentials={"username": "alice", "password": "bad"})
    assert str(error) == "unauthorized: authentication required"
    lines = pulls.pull("127.0.0.1:5000/app", credentials={"username": "alice", "password": "s3cret"})
    assert lines[-1]["status"].startswith("Status: Downloaded newer image")
    login = pulls.service.login(auth.from_json({"username": "alice", "password": "s3cret", "serveraddress": "127.0.0.1:5000"}))
    assert pulls._settle(ensureDeferred(login)) == {"IdentityToken": "", "Status": "Login Succeeded"}
    bad = pulls.service.login(auth.from_json({"username": "alice", "password": "no", "serveraddress": "127.0.0.1:5000"}))
    with pytest.raises(InternalError) as raised:
        pulls._settle(ensureDeferred(bad))
    assert str(raised.value) == "login attempt to https://127.0.0.1:5000/v2/ failed with status: 401 Unauthorized"


@pytest.mark.route("GET", "/distribution/{name:.*}/json")
def test_bearer_tokens(tmp_path):
    registry = FakeRegistry("bearer", {"bob": "pw"})
    pulls = Pulls(tmp_path / "root", registry)
    registry.add_image("team/app", "latest", [BASE])
    error, _ = pulls.fails("127.0.0.1:5000/team/app")
    assert str(error) == "unauthorized: authentication required"
    assert registry.token_queries[-1] == {"service": ["fake-registry"], "scope": ["repository:team/app:pull"]}
    lines = pulls.pull("127.0.0.1:5000/team/app", credentials={"username": "bob", "password": "pw"})
    assert lines[-1]["status"] == "Status: Downloaded newer image for 127.0.0.1:5000/team/app:latest"
    assert registry.token_queries[-1]["account"] == ["bob"]
    # An identity-less registry token is used as it is.
    registry.add_image("team/app", "2", [TOP])
    pulls.pull("127.0.0.1:5000/team/app", "2", credentials={"registrytoken": "good-token"})
    inspected = pulls._settle(ensureDeferred(pulls.service.distribution_inspect(
        "127.0.0.1:5000/team/app:2", {"registrytoken": "good-token"})))
    assert inspected["Descriptor"]["mediaType"] == OCI_MANIFEST
    assert inspected["Platforms"] == [{"architecture": "amd64", "os": "linux"}]


@pytest.mark.route("POST", "/images/create")
def test_the_router_answers_an_early_error_with_its_status(pulls, registry):
    registry.add_image("app", "latest", [BASE])
    api = StubTreq(APIResource(compose([ImageRouter(pulls.store)], APIConfig())))

    def post(query):
        d = api.request("POST", "http://localhost/v1.47/images/create?" + urlencode(query))
        response = _settle_both(pulls, d, api)
        body = _settle_both(pulls, api.content(response), api)
        return response.code, body

    code, body = post({"fromImage": "127.0.0.1:5000/app", "tag": "nope"})
    assert code == 404
    assert json.loads(body) == {
        "message": "manifest for 127.0.0.1:5000/app:nope not found: manifest unknown: manifest unknown"
    }
    code, body = post({"fromImage": "127.0.0.1:5000/app", "tag": "latest", "platform": "linux/s390x"})
    assert code == 200
    lines = body.split(b"\r\n")
    assert json.loads(lines[0]) == {"status": "Pulling from app", "id": "latest"}
    assert json.loads(lines[1])["errorDetail"] == {
        "message": "image with reference 127.0.0.1:5000/app:latest was found but does not match the "
                   "specified platform: wanted linux/s390x, actual: linux/amd64"
    }
    code, body = post({"fromImage": "127.0.0.1:5000/app", "tag": "latest"})
    assert code == 200
    assert json.loads(body.split(b"\r\n")[-2])["status"] == (
        "Status: Downloaded newer image for 127.0.0.1:5000/app:latest"
    )


def _settle_both(pulls, d, api):
    results = []
    d.addBoth(results.append)
    for _ in range(1000):
        if results:
            break
        pulls.stub.flush()
        api.flush()
    assert results
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]



@pytest.mark.route("POST", "/images/{name:.*}/push")
def test_a_push_sends_kept_blobs_as_they_came(pulls, registry):
    digest, _, config_digest = registry.add_image("app", "latest", [BASE, TOP])
    pulls.pull("127.0.0.1:5000/app")
    pulls._settle(ensureDeferred(pulls.store.tag("127.0.0.1:5000/app", "127.0.0.1:5000/copy", "v1")))
    lines = []
    pulls._settle(ensureDeferred(pulls.store.push_image("127.0.0.1:5000/copy", "v1", {}, lines.append)))
    assert lines[0] == {"status": "The push refers to repository [127.0.0.1:5000/copy]"}
    assert [line["status"] for line in lines[1:-2]] == ["Preparing", "Preparing", "Mounted from app", "Mounted from app"]
    pushed = json.loads(registry.manifests[("copy", "v1")][1])
    assert pushed["config"]["digest"] == config_digest
    assert [layer["digest"] for layer in pushed["layers"]] == [
        layer["digest"] for layer in json.loads(registry.manifests[("app", "latest")][1])["layers"]
    ]
    manifest_digest = _sha(registry.manifests[("copy", "v1")][1])
    assert lines[-2] == {"status": "v1: digest: %s size: %d" % (manifest_digest, len(registry.manifests[("copy", "v1")][1]))}
    assert lines[-1]["aux"] == {"Tag": "v1", "Digest": manifest_digest, "Size": len(registry.manifests[("copy", "v1")][1])}
    assert "127.0.0.1:5000/copy@" + manifest_digest in pulls.store.get(config_digest).repo_digests


@pytest.mark.route("POST", "/images/{name:.*}/push")
def test_a_push_of_an_imported_image_sends_its_tar_as_it_was(pulls, registry):
    tar = layer_tar({"etc/imported": b"mine\n"})
    image_id = pulls._settle(ensureDeferred(pulls.store.import_image(io.BytesIO(tar), repo="127.0.0.1:5000/own", tag="1")))
    lines = []
    pulls._settle(ensureDeferred(pulls.store.push_image("127.0.0.1:5000/own:1", "", {}, lines.append)))
    assert "Pushed" in [line.get("status") for line in lines]
    pushed = json.loads(registry.manifests[("own", "1")][1])
    config = json.loads(registry.blobs[pushed["config"]["digest"]])
    layer = gzip.decompress(registry.blobs[pushed["layers"][0]["digest"]])
    # The tar it was imported from, byte for byte: the same config, the
    # same image ID, and its repository digest recorded.
    assert layer == tar
    assert pushed["config"]["digest"] == image_id
    assert config["rootfs"]["diff_ids"] == [_sha(tar)]
    assert pulls.store.get(image_id).repo_digests == [
        "127.0.0.1:5000/own@" + _sha(registry.manifests[("own", "1")][1])
    ]


def test_pushing_what_is_not_here(pulls, registry):
    lines = []
    with pytest.raises(NotFound) as raised:
        pulls._settle(ensureDeferred(pulls.store.push_image("127.0.0.1:5000/absent", "", {}, lines.append)))
    assert str(raised.value) == "An image does not exist locally with the tag: 127.0.0.1:5000/absent"
    assert lines == [{"status": "The push refers to repository [127.0.0.1:5000/absent]"}]


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts are character devices: root makes them")
def test_layer_tars_carry_whiteouts(tmp_path):
    from twistedock.backend.distribution.push import write_layer_tar

    diff = tmp_path / "diff"
    (diff / "etc").mkdir(parents=True)
    (diff / "etc" / "kept").write_bytes(b"kept\n")
    os.mknod(str(diff / "etc" / "gone"), 0o600 | 0o020000, os.makedev(0, 0))
    (diff / "opaque").mkdir()
    os.setxattr(str(diff / "opaque"), "trusted.overlay.opaque", b"y")
    blob = write_layer_tar(str(diff), str(tmp_path / "layer.tar.gz"))
    data = (tmp_path / "layer.tar.gz").read_bytes()
    assert blob.digest == _sha(data) and blob.size == len(data)
    assert blob.diff_id == _sha(gzip.decompress(data))
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as archive:
        names = archive.getnames()
    assert names == ["etc", "etc/.wh.gone", "etc/kept", "opaque", "opaque/.wh..wh..opq"]


# -- registry flags and daemon.json ------------------------------------------------------


def test_registry_flags_and_daemon_json(tmp_path):
    from twisted.python.usage import UsageError

    from twistedock.tap import Options

    host = "unix://%s" % (tmp_path / "s.sock")
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    options = Options()
    options.parseOptions([
        "--config-file", str(empty), "-H", host, "--insecure-registry", "reg.example:5000", "--insecure-registry=10.0.0.0/8",
        "--registry-mirror", "https://mirror.example",
    ])
    assert options.config.insecure_registries == ["reg.example:5000", "10.0.0.0/8"]
    assert options.config.registry_mirrors == ["https://mirror.example"]
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"insecure-registries": ["r.example"], "registry-mirrors": []}))
    options = Options()
    options.parseOptions(["--config-file", str(path), "-H", host])
    assert options.config.insecure_registries == ["r.example"]
    options = Options()
    with pytest.raises(UsageError) as raised:
        options.parseOptions(["--config-file", str(path), "-H", host, "--insecure-registry", "x:1"])
    assert "insecure-registries: (from flag: [x:1], from file: [r.example])" in str(raised.value)
    path.write_text(json.dumps({"insecure-registries": "r.example"}))
    with pytest.raises(UsageError, match="insecure-registries must be a list of strings"):
        Options().parseOptions(["--config-file", str(path), "-H", host])


def test_docker_hub_pulls_go_to_a_mirror_first(tmp_path, registry):
    registry.add_image("library/busybox", "latest", [BASE])
    service = RegistryService(SyncReactor(), mirrors=["http://127.0.0.1:5000/"], client=StubTreq(registry))
    pulls = Pulls(tmp_path / "root", registry)
    pulls.service = service
    pulls.store = ImageStore(pulls.reactor, str(tmp_path / "root2"), EventLog(), registry=service)
    pulls._settle(ensureDeferred(pulls.store.load()))
    lines = pulls.pull("busybox")
    assert lines[0] == {"status": "Pulling from library/busybox", "id": "latest"}
    assert lines[-1] == {"status": "Status: Downloaded newer image for busybox:latest"}
    assert {host for host, _ in registry.hosts} == {"127.0.0.1:5000"}
    assert service.registry_config()["Mirrors"] == ["http://127.0.0.1:5000/"]
    with pytest.raises(InvalidParameter):
        RegistryService(SyncReactor(), mirrors=["ftp://mirror"], client=StubTreq(registry))
    with pytest.raises(InvalidParameter):
        RegistryService(SyncReactor(), mirrors=["https://mirror/path"], client=StubTreq(registry))


def test_a_mount_asks_a_token_for_its_source_too(tmp_path):
    registry = FakeRegistry("bearer", {"bob": "pw"})
    pulls = Pulls(tmp_path / "root", registry)
    registry.add_image("team/app", "latest", [BASE])
    bob = {"username": "bob", "password": "pw"}
    pulls.pull("127.0.0.1:5000/team/app", credentials=bob)
    pulls._settle(ensureDeferred(pulls.store.tag("127.0.0.1:5000/team/app", "127.0.0.1:5000/team/copy", "1")))
    lines = []
    pulls._settle(ensureDeferred(pulls.store.push_image("127.0.0.1:5000/team/copy", "1", bob, lines.append)))
    assert {"status": "Mounted from team/app", "progressDetail": {}, "id": progress.short(_sha(BASE))} in lines
    assert registry.token_queries[-1]["scope"] == ["repository:team/copy:pull,push", "repository:team/app:pull"]


@pytest.mark.parametrize("honoured", [True, False])
def test_an_interrupted_download_resumes_with_a_range_request(pulls, registry, honoured):
    big = layer_tar({"big": os.urandom(3 << 20)})
    registry.add_image("app", "latest", [big])
    blob = gzip.compress(big, mtime=0)
    downloads = os.path.join(pulls.store.root, "downloads")
    os.makedirs(downloads, exist_ok=True)
    half = len(blob) // 2
    with open(os.path.join(downloads, _sha(blob).split(":")[1] + ".partial"), "wb") as f:
        f.write(blob[:half])
    if not honoured:
        registry.ranges = None
    lines = pulls.pull("127.0.0.1:5000/app")
    first = [line for line in lines if line["status"] == "Downloading"][0]
    if honoured:
        assert registry.ranges == ["bytes=%d-" % (half,)]
        assert first["progressDetail"]["current"] > half
    assert first["progressDetail"]["total"] == len(blob)
    assert lines[-1]["status"].startswith("Status: Downloaded newer image")
    assert os.listdir(downloads) == []


def test_a_corrupt_partial_download_is_thrown_away(pulls, registry):
    registry.add_image("app", "latest", [TOP])
    blob = gzip.compress(TOP, mtime=0)
    downloads = os.path.join(pulls.store.root, "downloads")
    os.makedirs(downloads, exist_ok=True)
    with open(os.path.join(downloads, _sha(blob).split(":")[1] + ".partial"), "wb") as f:
        f.write(b"garbage")
    error, _ = pulls.fails("127.0.0.1:5000/app")
    assert str(error) == "filesystem layer verification failed for digest %s" % (_sha(blob),)
    assert os.listdir(downloads) == []
    assert pulls.pull("127.0.0.1:5000/app")[-1]["status"].startswith("Status: Downloaded newer image")


@pytest.mark.route("POST", "/images/{name:.*}/push")
def test_a_layer_without_its_tar_record_is_written_from_its_directory(pulls, registry):
    tar = layer_tar({"etc/imported": b"mine\n"})
    image_id = pulls._settle(ensureDeferred(pulls.store.import_image(io.BytesIO(tar), repo="127.0.0.1:5000/old", tag="1")))
    for layer in pulls.store.get(image_id).layers:
        os.unlink(layer.tar_split)  # as a layer stored by an older twistedock
    lines = []
    pulls._settle(ensureDeferred(pulls.store.push_image("127.0.0.1:5000/old:1", "", {}, lines.append)))
    pushed = json.loads(registry.manifests[("old", "1")][1])
    config = json.loads(registry.blobs[pushed["config"]["digest"]])
    layer = gzip.decompress(registry.blobs[pushed["layers"][0]["digest"]])
    # Consistent all the same: the config's diff IDs are the pushed layers'.
    assert config["rootfs"]["diff_ids"] == [_sha(layer)]
    with tarfile.open(fileobj=io.BytesIO(layer)) as archive:
        assert archive.extractfile("etc/imported").read() == b"mine\n"
    assert config["config"] == pulls.store.get(image_id).config["config"]
    assert pushed["config"]["digest"] != image_id
    assert pulls.store.get(image_id).repo_digests == []


def _pull_with_clock(pulls, image):
    """A pull whose retry waits pass on the test's clock: the lines, the
    error if any, and the seconds that passed."""
    lines, results = [], []
    d = ensureDeferred(pulls.store.pull_image(image, "latest", "", {}, lines.append))
    d.addBoth(results.append)
    waited = 0
    for _ in range(1000):
        pulls.stub.flush()
        if results:
            break
        if pulls.reactor.getDelayedCalls():
            pulls.reactor.advance(1)
            waited += 1
    assert results, "the pull did not finish"
    error = results[0].value if hasattr(results[0], "raiseException") else None
    return lines, error, waited


def _retrying(lines, layer_id):
    return [line["status"] for line in lines if line.get("id") == layer_id and line["status"].startswith("Retrying")]


@pytest.mark.route("POST", "/images/create")
def test_a_failed_layer_download_is_retried_as_dockerd(pulls, registry):
    registry.add_image("app", "latest", [BASE, TOP])
    top_blob = _sha(gzip.compress(TOP, mtime=0))
    registry.unavailable[top_blob] = 2
    lines, error, waited = _pull_with_clock(pulls, "127.0.0.1:5000/app")
    assert error is None
    assert _retrying(lines, progress.short(top_blob)) == (
        ["Retrying in %d seconds" % n for n in range(5, 1, -1)] + ["Retrying in 1 second"]
        + ["Retrying in %d seconds" % n for n in range(10, 1, -1)] + ["Retrying in 1 second"]
    )
    assert waited == 15
    assert lines[-1]["status"].startswith("Status: Downloaded newer image")
    assert os.listdir(os.path.join(pulls.store.root, "downloads")) == []


def test_a_layer_download_gives_up_after_five_attempts(pulls, registry):
    registry.add_image("app", "latest", [TOP])
    top_blob = _sha(gzip.compress(TOP, mtime=0))
    registry.unavailable[top_blob] = 100
    lines, error, waited = _pull_with_clock(pulls, "127.0.0.1:5000/app")
    assert isinstance(error, DockerError)
    assert 100 - registry.unavailable[top_blob] == 5
    assert waited == 5 + 10 + 15 + 20
    assert _retrying(lines, progress.short(top_blob))[-1] == "Retrying in 1 second"
    with pytest.raises(NotFound):
        pulls.store.get("127.0.0.1:5000/app")


def test_refusals_and_bad_digests_are_not_retried(pulls, registry):
    registry.add_image("app", "latest", [TOP])
    top_blob = _sha(gzip.compress(TOP, mtime=0))
    registry.broken[top_blob] = gzip.compress(BASE, mtime=0)
    lines, error, waited = _pull_with_clock(pulls, "127.0.0.1:5000/app")
    assert str(error) == "filesystem layer verification failed for digest %s" % (top_blob,)
    assert waited == 0 and not _retrying(lines, progress.short(top_blob))
    del registry.broken[top_blob]
    registry.linked.discard(("app", top_blob))  # 404 BLOB_UNKNOWN
    lines, error, waited = _pull_with_clock(pulls, "127.0.0.1:5000/app")
    assert error is not None and waited == 0


SEARCH_RESULTS = [
    {"name": "team/foo", "description": "the foo", "star_count": 3, "is_official": False, "is_automated": True},
    {"name": "foo", "description": "", "star_count": 10, "is_official": True, "is_automated": False},
]


@pytest.mark.route("GET", "/images/search")
def test_search_asks_the_v1_search_of_the_host_the_term_names(pulls, registry):
    registry.search_results = SEARCH_RESULTS
    api = StubTreq(APIResource(compose([ImageRouter(pulls.store)], APIConfig())))

    def get(query):
        d = api.request("GET", "http://localhost/v1.41/images/search?" + urlencode(query))
        response = _settle_both(pulls, d, api)
        return response.code, json.loads(_settle_both(pulls, api.content(response), api))

    code, body = get({"term": "127.0.0.1:5000/foo"})
    assert code == 200 and body == SEARCH_RESULTS
    assert registry.searches[-1] == {"q": "foo", "n": "25"}
    assert ("GET", "/v1/_ping") in registry.requests
    code, body = get({"term": "127.0.0.1:5000/foo", "limit": "7", "filters": json.dumps({"is-official": ["true"]})})
    assert code == 200 and [r["name"] for r in body] == ["foo"]
    assert registry.searches[-1] == {"q": "foo", "n": "7"}
    code, body = get({"term": "127.0.0.1:5000/foo", "filters": json.dumps({"stars": ["4"]})})
    assert [r["name"] for r in body] == ["foo"]
    # Docker Hub's index is not pinged; library/ is dropped (the stub
    # answers whatever host is named).
    code, body = get({"term": "library/foo", "filters": json.dumps({"is-automated": ["true"]})})
    assert code == 200 and [r["name"] for r in body] == ["team/foo"]
    assert registry.searches[-1] == {"q": "foo", "n": "25"}
    # dockerd's refusals, word for word (asked of dockerd 20.10).
    for query, status, message in [
        ({"term": "foo", "limit": "200"}, 400, "Limit 200 is outside the range of [1, 100]"),
        ({"term": "foo", "limit": "abc"}, 500, 'strconv.Atoi: parsing "abc": invalid syntax'),
        ({"term": "foo", "filters": '{"bogus":["1"]}'}, 400, "Invalid filter 'bogus'"),
        ({"term": "foo", "filters": '{"stars":["x"]}'}, 400, "Invalid filter 'stars=x'"),
        ({"term": "foo", "filters": '{"is-official":["maybe"]}'}, 400, "Invalid filter 'is-official=[maybe]'"),
        ({"term": "http://127.0.0.1:5000/foo"}, 500, 'Invalid repository name (ex: "registry.domain.tld/myrepos")'),
    ]:
        assert get(query) == (status, {"message": message}), query


def test_a_registry_without_the_v1_search(pulls, registry):
    from twistedock.filters import Filters

    d = ensureDeferred(pulls.store.search_images("127.0.0.1:5000/foo", 25, Filters()))
    with pytest.raises(InternalError) as raised:
        pulls._settle(d)
    assert str(raised.value) == "Unexpected status code 404"


@pytest.mark.route("POST", "/images/{name:.*}/push")
def test_a_push_sends_five_layers_at_a_time(pulls, registry, monkeypatch):
    from twistedock.backend.distribution.push import Pusher

    layers = [layer_tar({"etc/f%d" % i: b"%d\n" % i}) for i in range(7)]
    registry.add_image("many", "latest", layers)
    pulls.pull("127.0.0.1:5000/many")
    pulled = json.loads(registry.manifests[("many", "latest")][1])["layers"]
    registry.blobs.clear()
    registry.linked.clear()
    upload = Pusher._upload
    gates = []

    async def held(self, *args, **kwargs):
        gate = Deferred()
        gates.append(gate)
        await gate
        return await upload(self, *args, **kwargs)

    monkeypatch.setattr(Pusher, "_upload", held)
    lines, results = [], []
    d = ensureDeferred(pulls.store.push_image("127.0.0.1:5000/many", "latest", {}, lines.append))
    d.addBoth(results.append)
    pulls.stub.flush()
    # Five uploads under way, the other two wait for a place.
    assert len(gates) == 5 and not results
    gates[0].callback(None)
    pulls.stub.flush()
    assert len(gates) == 6
    released = 1
    while not results and released < len(gates):
        gates[released].callback(None)
        released += 1
        pulls.stub.flush()
    assert results == [None]
    assert len(gates) == 8  # seven layers and the config
    ids = [progress.short(_sha(tar)) for tar in layers]
    assert [line["id"] for line in lines if line.get("status") == "Preparing"] == ids[::-1]
    assert [line["id"] for line in lines if line.get("status") == "Waiting"] == ids[1::-1]
    assert sorted(line["id"] for line in lines if line.get("status") == "Pushed") == sorted(ids)
    pushed = json.loads(registry.manifests[("many", "latest")][1])["layers"]
    assert [layer["digest"] for layer in pushed] == [layer["digest"] for layer in pulled]
    assert "aux" in lines[-1]
    assert [n for n in os.listdir(os.path.join(pulls.store.root, "downloads"))] == []


def test_a_failed_layer_upload_ends_the_push_and_leaves_nothing(pulls, registry, monkeypatch):
    from twistedock.backend.distribution.push import Pusher

    tar = layer_tar({"etc/imported": b"mine\n"})
    pulls._settle(ensureDeferred(pulls.store.import_image(io.BytesIO(tar), repo="127.0.0.1:5000/old", tag="1")))

    async def refused(self, *args, **kwargs):
        raise InternalError("refused")

    monkeypatch.setattr(Pusher, "_upload", refused)
    with pytest.raises(InternalError):
        pulls._settle(ensureDeferred(pulls.store.push_image("127.0.0.1:5000/old", "1", {}, lambda doc: None)))
    assert os.listdir(os.path.join(pulls.store.root, "downloads")) == []


def test_what_an_interrupted_pull_left_is_swept_at_start_after_a_day(tmp_path, registry):
    import time

    from twistedock.backend.images.store import IMAGE_DIR

    root = tmp_path / "root"
    downloads = root / IMAGE_DIR / "downloads"
    downloads.mkdir(parents=True)
    old = time.time() - 2 * 24 * 3600
    for name in ("a" * 64, "b" * 64 + ".partial", "c" * 64, "d" * 64 + ".partial", ".tmp-x"):
        (downloads / name).write_bytes(b"data")
    for name in ("a" * 64, "b" * 64 + ".partial"):
        os.utime(downloads / name, (old, old))
    Pulls(root, registry)
    assert sorted(os.listdir(downloads)) == ["c" * 64, "d" * 64 + ".partial"]



def test_a_failed_layer_upload_is_retried_as_dockerd(pulls, registry):
    tar = layer_tar({"etc/imported": b"mine\n"})
    pulls._settle(ensureDeferred(pulls.store.import_image(io.BytesIO(tar), repo="127.0.0.1:5000/old", tag="1")))
    registry.failing_uploads = 1
    lines, results = [], []
    d = ensureDeferred(pulls.store.push_image("127.0.0.1:5000/old", "1", {}, lines.append))
    d.addBoth(results.append)
    waited = 0
    for _ in range(100):
        pulls.stub.flush()
        if results:
            break
        if pulls.reactor.getDelayedCalls():
            pulls.reactor.advance(1)
            waited += 1
    assert results == [None]
    assert waited == 5
    short = progress.short(_sha(tar))
    retrying = [line["status"] for line in lines if line.get("id") == short and line["status"].startswith("Retrying")]
    assert retrying == ["Retrying in %d seconds" % n for n in range(5, 1, -1)] + ["Retrying in 1 second"]
    assert {"status": "Pushed", "progressDetail": {}, "id": short} in lines
    assert os.listdir(os.path.join(pulls.store.root, "downloads")) == []
