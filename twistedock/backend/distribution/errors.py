"""
Registry failures in dockerd's words: a registry's error codes
(C{errcode.Error}: C{"manifest unknown: manifest unknown"}), Go's
C{url.Error} around transport failures (C{Get "URL": dial tcp HOST:PORT:
connect: connection refused}), and translatePullError's wrapping of the
codes that mean "not found".
"""

import json
from typing import List, Optional

from twisted.internet import error as net_error
from twisted.web import client as web_client

from ...errors import InternalError, NotFound


class TransportError(InternalError):
    """The connection to a registry failed or ended early: worth another
    try (dockerd retries these; not a refusal, an unknown blob or a digest
    that does not match)."""


def retryable(error: BaseException) -> bool:
    """Whether a failed blob transfer is tried again, as dockerd's
    retryOnError decides: transport failures and a registry's 5xx."""
    if isinstance(error, TransportError):
        return True
    return isinstance(error, RegistryError) and error.http_status >= 500


class RegistryError(InternalError):
    """A registry answered with an error: C{code} is the first errcode
    (C{MANIFEST_UNKNOWN}...), or "" for a bare HTTP status."""

    def __init__(self, message: str, code: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = status


#: Default messages of the codes distribution defines.
_DEFAULT_MESSAGES = {
    "UNAUTHORIZED": "authentication required",
    "DENIED": "requested access to the resource is denied",
    "MANIFEST_UNKNOWN": "manifest unknown",
    "NAME_UNKNOWN": "repository name not known to registry",
    "BLOB_UNKNOWN": "blob unknown to registry",
    "TOOMANYREQUESTS": "too many requests",
}


def code_text(code: str) -> str:
    """errcode.ErrorCode.Error: the code's value in lower case, spaces."""
    return code.lower().replace("_", " ")


def from_response(status: int, body: bytes) -> RegistryError:
    """HandleErrorResponse: the first error of an errcode body, else one
    for the status alone."""
    errors: List[dict] = []
    try:
        doc = json.loads(body.decode("utf-8")) if body else None
        if isinstance(doc, dict) and isinstance(doc.get("errors"), list):
            errors = [e for e in doc["errors"] if isinstance(e, dict)]
    except (ValueError, UnicodeDecodeError):
        pass
    if errors:
        first = errors[0]
        code = str(first.get("code") or "UNKNOWN")
        text = str(first.get("message") or _DEFAULT_MESSAGES.get(code, "unknown error"))
        return RegistryError("%s: %s" % (code_text(code), text), code, status)
    if status == 401:
        return RegistryError("unauthorized: authentication required", "UNAUTHORIZED", status)
    if status == 404:
        return RegistryError("not found", "", status)
    if status == 429:
        return RegistryError("toomanyrequests: too many requests", "TOOMANYREQUESTS", status)
    return RegistryError(
        "received unexpected HTTP status: %d %s" % (status, _status_text(status)), "", status
    )


def _status_text(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def transport_message(method: str, url: str, failure: BaseException, netloc: str) -> str:
    """Go's url.Error for a request that never got an answer."""
    verb = method[:1] + method[1:].lower()
    return '%s "%s": %s' % (verb, url, transport_reason(failure, netloc))


def transport_reason(e: BaseException, netloc: str) -> str:
    if isinstance(e, web_client.ResponseNeverReceived) and e.reasons:
        e = e.reasons[0].value
    if isinstance(e, (web_client.ResponseFailed,)) and e.reasons:
        inner = e.reasons[0].value
        if isinstance(inner, net_error.ConnectionDone) or isinstance(inner, net_error.ConnectionLost):
            return "unexpected EOF"
        e = inner
    if isinstance(e, net_error.ConnectionRefusedError):
        return "dial tcp %s: connect: connection refused" % (netloc,)
    if isinstance(e, net_error.DNSLookupError):
        return "dial tcp: lookup %s: no such host" % (netloc.rsplit(":", 1)[0],)
    if isinstance(e, (net_error.TimeoutError, net_error.TCPTimedOutError)):
        return "dial tcp %s: i/o timeout" % (netloc,)
    if isinstance(e, (net_error.ConnectionDone, net_error.ConnectionLost)):
        return "EOF"
    if isinstance(e, net_error.ConnectError):
        return "dial tcp %s: connect: %s" % (netloc, (e.osError or e.args[0] if e.args else "failed"))
    text = str(e) or e.__class__.__name__
    return text


def translate_pull_error(error: BaseException, familiar_string: str, familiar_name: str):
    """translatePullError: the not-found codes become 404s with the
    reference in the message; everything else keeps its text (500)."""
    if isinstance(error, RegistryError):
        if error.code == "MANIFEST_UNKNOWN":
            return NotFound("manifest for %s not found: %s" % (familiar_string, error))
        if error.code == "NAME_UNKNOWN":
            return NotFound("repository %s not found: %s" % (familiar_name, error))
        if error.code == "DENIED":
            return NotFound(
                "pull access denied for %s, repository does not exist or may require "
                "'docker login': %s" % (familiar_name, error)
            )
    return error


class PlatformError(NotFound):
    """No manifest for the platform asked for."""


def no_match(platform: str) -> PlatformError:
    return PlatformError("no matching manifest for %s in the manifest list entries" % (platform,))


def unsupported(media_type: Optional[str]) -> InternalError:
    return InternalError("unsupported media type %s" % (media_type or "",))
