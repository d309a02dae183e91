"""
A registry for the pull tests: Debian's C{docker-registry} (CNCF
distribution) on loopback with its storage in a temporary directory, with or
without htpasswd auth, and images put into it by C{skopeo} from OCI layouts
made here (one platform, or an index of two).
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .conftest import free_port, wait_for

REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
HTPASSWD = shutil.which("htpasswd")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


class Registry:
    def __init__(self, base: Path, users: Optional[Dict[str, str]] = None) -> None:
        self.base = base
        self.port = free_port()
        self.address = "127.0.0.1:%d" % (self.port,)
        self.users = users
        self.process: Optional[subprocess.Popen] = None
        storage = base / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = [
            "version: 0.1",
            "log:",
            "  level: error",
            "storage:",
            "  filesystem:",
            "    rootdirectory: %s" % (storage,),
            "  delete:",
            "    enabled: true",
            "http:",
            "  addr: %s" % (self.address,),
        ]
        if users:
            htpasswd = base / "htpasswd"
            for i, (user, password) in enumerate(sorted(users.items())):
                subprocess.run(
                    [HTPASSWD, "-B", "-b"] + (["-c"] if i == 0 else []) + [str(htpasswd), user, password],
                    check=True, capture_output=True,
                )
            config += ["auth:", "  htpasswd:", "    realm: test-realm", "    path: %s" % (htpasswd,)]
        self.config = base / "config.yml"
        self.config.write_text("\n".join(config) + "\n")
        self.log = open(base / "registry.log", "ab")

    def start(self) -> "Registry":
        self.process = subprocess.Popen(
            [REGISTRY, "serve", str(self.config)], stdout=self.log, stderr=self.log,
            start_new_session=True,
        )

        def up() -> bool:
            try:
                urllib.request.urlopen("http://%s/v2/" % (self.address,), timeout=1)
                return True
            except urllib.error.HTTPError:
                return True
            except OSError:
                return False

        wait_for(up, 20, what="the registry to serve")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def close(self) -> None:
        self.stop()
        self.log.close()

    def push_layout(self, layout: Path, ref: str, repo_tag: str, *, all_platforms=False, fmt=None):
        """skopeo copy oci:LAYOUT:REF docker://ADDRESS/REPO_TAG."""
        argv = [SKOPEO, "copy", "--quiet", "--dest-tls-verify=false"]
        if self.users:
            user, password = sorted(self.users.items())[0]
            argv += ["--dest-creds", "%s:%s" % (user, password)]
        if all_platforms:
            argv.append("--all")
        if fmt:
            argv += ["--format", fmt]
        argv += ["oci:%s:%s" % (layout, ref), "docker://%s/%s" % (self.address, repo_tag)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr

    def manifest_digest(self, repo: str, tag: str, accept: str = OCI_INDEX + "," + OCI_MANIFEST) -> str:
        request = urllib.request.Request(
            "http://%s/v2/%s/manifests/%s" % (self.address, repo, tag), method="HEAD",
            headers={"Accept": accept + ",application/vnd.docker.distribution.manifest.v2+json,"
                     "application/vnd.docker.distribution.manifest.list.v2+json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.headers["Docker-Content-Digest"]


class StallingProxy:
    """A TCP proxy in front of a registry that, once armed, stops
    forwarding an answer after C{stall_after} bytes (C{stalled} is set):
    the client waits mid-blob until the registry dies, then sees its
    connection end; or forwards slowly (C{delay})."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.address = "127.0.0.1:%d" % (self.port,)
        self.stall_after: Optional[int] = None
        self.stalled = threading.Event()
        #: Seconds to wait after forwarding each chunk of an answer (a slow
        #: registry), and set once one answer has passed a megabyte.
        self.delay = 0.0
        self.flowing = threading.Event()
        self.closed = False
        self.sockets: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, dest: socket.socket, answers: bool) -> None:
        sent = 0
        stalled = False
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if answers and self.stall_after is not None and not stalled and sent + len(data) > self.stall_after:
                    stalled = True
                    self.stalled.set()
                if stalled:
                    continue  # drained until the registry goes away
                dest.sendall(data)
                sent += len(data)
                if answers and sent > (1 << 20):
                    self.flowing.set()
                if answers and self.delay:
                    time.sleep(self.delay)
        except OSError:
            pass
        for s in (source, dest):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


def _blob(layout: Path, data: bytes) -> Tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest, len(data)


def _gzip(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as f:
        f.write(data)
    return out.getvalue()


def image_manifest(
    layout: Path, layers: List[bytes], *, architecture: str, variant: str = "",
    cmd=("sh",), labels=None,
) -> dict:
    """Write one image's blobs into the OCI layout: its manifest descriptor."""
    layer_descriptors = []
    diff_ids = []
    for tar in layers:
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        digest, size = _blob(layout, _gzip(tar))
        layer_descriptors.append({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": size})
    config = {
        "architecture": architecture,
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"], "Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "layer %d" % i} for i in range(len(layers))],
    }
    if variant:
        config["variant"] = variant
    config_digest, config_size = _blob(layout, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": layer_descriptors,
    }
    digest, size = _blob(layout, json.dumps(manifest).encode())
    platform = {"architecture": architecture, "os": "linux"}
    if variant:
        platform["variant"] = variant
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "platform": platform}


def write_layout(layout: Path, entries: Dict[str, dict]) -> None:
    """index.json naming each descriptor C{entries[ref]}."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    manifests = []
    for ref, descriptor in entries.items():
        entry = dict(descriptor)
        entry["annotations"] = {"org.opencontainers.image.ref.name": ref}
        manifests.append(entry)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


def index_of(layout: Path, descriptors: List[dict]) -> dict:
    """An OCI index of C{descriptors}, written as a blob: its descriptor."""
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    digest, size = _blob(layout, json.dumps(index).encode())
    return {"mediaType": OCI_INDEX, "digest": digest, "size": size}


def busybox_layer() -> bytes:
    from .test_containers import busybox_rootfs_tar  # noqa: F401 (the same image)

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = busybox_rootfs_tar(Path(d))
        return Path(path).read_bytes()


def available() -> bool:
    return bool(REGISTRY and SKOPEO and HTPASSWD) and os.path.exists("/bin/busybox")
