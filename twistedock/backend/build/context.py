"""
The build context: a request's tar unpacked into a directory of its own, or
a remote one (a tarball or a Dockerfile over HTTP(S), a git repository
cloned with git), the Dockerfile read from it, and the work directories a
crash left behind removed.
"""

import io
import os
import shutil
import tempfile
from typing import Optional

from ...errors import DockerError, InternalError, InvalidParameter
from ...reference import parse_normalized_named
from ...tar.extract import unpack
from ...tar.read import compression_of, decompressed


class RemoteContexts:
    """The remote part of L{twistedock.backend.build.builder.Builder}."""

    async def _remote(self, url: str, context: str) -> Optional[bytes]:
        """A remote context: a tarball (or a plain Dockerfile) over HTTP(S).
        Git repositories need git in the daemon; dockerd's messages."""
        if url.startswith(("git://", "git@", "github.com/")) or url.split("#")[0].endswith(".git"):
            await self._clone(url, context)
            return None
        if not url.startswith(("http://", "https://")):
            raise InternalError("error downloading remote context %s: unsupported protocol scheme" % (url,))
        import treq

        try:
            response = await treq.get(url, unbuffered=True)
            if response.code >= 400:
                raise InvalidParameter(
                    "error downloading remote context %s: %d %s"
                    % (url, response.code, response.phrase.decode("latin-1"))
                )
            body = await response.content()
        except DockerError:
            raise
        except Exception as e:
            raise InvalidParameter("error downloading remote context %s: %s" % (url, e))
        head = body[:512]
        if compression_of(head) is None and not is_tar(head):
            return body
        await self._thread(unpack_context, io.BytesIO(body), context)
        return None

    async def _clone(self, url: str, context: str) -> None:
        """A git context: C{url#ref:subdir} cloned with git, as dockerd."""
        from twisted.internet.utils import getProcessOutputAndValue

        remote, _, fragment = url.partition("#")
        ref, _, subdir = fragment.partition(":")
        if remote.startswith("github.com/"):
            remote = "https://" + remote
        clone = os.path.join(context, ".git-clone")
        argv = ["clone", "--recurse-submodules", "--depth", "1"]
        if ref:
            argv += ["--branch", ref]
        out, err, code = await getProcessOutputAndValue(
            "git", argv + ["--", remote, clone], env={"PATH": os.environ.get("PATH", ""), "GIT_TERMINAL_PROMPT": "0"},
            reactor=self.reactor,
        )
        if code != 0:
            raise InternalError(
                "error fetching: %s: exit status %d" % ((out + err).decode("utf-8", "replace"), code)
            )
        source = os.path.normpath(os.path.join(clone, subdir)) if subdir else clone
        if not source.startswith(clone) or not os.path.isdir(source):
            raise InternalError("error fetching: subdirectory %s not found" % (subdir,))

        def move() -> None:
            shutil.rmtree(os.path.join(clone, ".git"), ignore_errors=True)
            for name in os.listdir(source):
                if source == clone or name != ".git":
                    os.rename(os.path.join(source, name), os.path.join(context, name))
            shutil.rmtree(clone, ignore_errors=True)

        await self._thread(move)


def make_context_dir(root: str) -> str:
    os.makedirs(root, mode=0o700, exist_ok=True)
    return tempfile.mkdtemp(prefix="build-", dir=root)


def sweep(root: str) -> None:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(root, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


def is_tar(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"


def unpack_context(source, context: str) -> None:
    try:
        with decompressed(source) as stream:
            unpack(stream, context)
    finally:
        source.close()


def read_dockerfile(context: str, name: str) -> bytes:
    path = os.path.normpath(os.path.join(context, name.lstrip("/")))
    if not path.startswith(context + os.sep) or not os.path.isfile(path):
        raise InternalError("Cannot locate specified Dockerfile: %s" % (name,))
    with open(path, "rb") as f:
        return f.read()


def check_tag(tag: str) -> None:
    """dockerd's sanitizeRepoAndTags (a 500 with the parser's message)."""
    try:
        ref = parse_normalized_named(tag)
    except DockerError as e:
        raise InternalError(str(e))
    if ref.digest:
        raise InternalError("build tag cannot contain a digest")
