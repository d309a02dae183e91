"""
Reading requests and writing responses, once for every router (moby's
httputils): query values with dockerd's rules, JSON bodies as Go's decoder
reads them, filters, and the JSON, empty and streamed answers a handler gives.
"""

import json
import time
from json.encoder import c_make_encoder, encode_basestring
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from zope.interface import implementer

from ..errors import InvalidParameter
from ..filters import Filters
from . import godecode
from .godecode import GoNumber, go_kind  # noqa: F401 - go_kind: part of this module's surface


#: json.dumps with these arguments would make a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


#: What _ENCODER.encode makes on every call, made once (CPython's C
#: encoder; without a circular reference check: a loop is a RecursionError).
_ITERENCODE = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, True)
)


def encode_json(obj: Any) -> bytes:
    """Compact JSON with a newline, HTML characters literal: Go's encoder."""
    if _ITERENCODE is None:
        return (_ENCODER.encode(obj) + "\n").encode("utf-8")
    return ("".join(_ITERENCODE(obj, 0)) + "\n").encode("utf-8")


def raw_headers(request: IRequest) -> Dict[bytes, List[bytes]]:
    """The response headers of C{request} as twisted.web's L{Headers}
    keeps them: canonical names (C{b"Content-Type"}) to lists of values.

    A name set there is a name as L{Headers} would make it, and a value a
    new list of bytes without CR or LF: then it is what C{setRawHeaders}
    would have stored, at a fraction of its cost (it encodes the name,
    checks and sanitises every value: a dozen headers an answer)."""
    return request.responseHeaders._rawHeaders


#: Header names as L{Headers} spells them, for L{set_header}: filled from
#: the names handlers use, which are literals (bounded, but capped anyway).
_CANONICAL: Dict[str, bytes] = {}
_CANONICAL_MAX = 256


def canonical_name(name: str) -> bytes:
    """C{name} as L{Headers} keeps it (it also checks it is a token)."""
    found = _CANONICAL.get(name)
    if found is None:
        headers = Headers()
        headers.setRawHeaders(name, [b""])
        found = next(iter(headers.getAllRawHeaders()))[0]
        if len(_CANONICAL) < _CANONICAL_MAX:
            _CANONICAL[name] = found
    return found


def set_header(request: IRequest, name: str, value: str) -> None:
    """C{request.setHeader(name, value)}, for less: see L{raw_headers}."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if b"\r" in data or b"\n" in data:
        # Rare: let Headers sanitise it.
        request.responseHeaders.setRawHeaders(name, [data])
        return
    raw_headers(request)[canonical_name(name)] = [data]


def bool_value(value: Optional[str]) -> bool:
    """dockerd's BoolValue: false for empty, 0, no, false and none."""
    if value is None:
        return False
    return value.strip().lower() not in ("", "0", "no", "false", "none")


@implementer(IPushProducer)
class Flow:
    """Backpressure for a streamed answer: registered as the transport's
    producer, it is paused while the client is behind, and lets the writer
    wait until it is not (C{writable}) or be told (C{listeners})."""

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False
        self._waiting = []
        #: (pause, resume) callables told when the client falls behind or catches up.
        self.listeners = []

    def pauseProducing(self) -> None:
        self.paused = True
        for pause, _ in list(self.listeners):
            pause()

    def resumeProducing(self) -> None:
        self.paused = False
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        for _, resume in list(self.listeners):
            resume()

    def stopProducing(self) -> None:
        self.stopped = True
        self.resumeProducing()

    def writable(self) -> Deferred:
        """Fires once the client has room for more."""
        if not self.paused:
            return succeed(None)
        d = Deferred(lambda d: d in self._waiting and self._waiting.remove(d))
        self._waiting.append(d)
        return d


class APIRequest:
    """One API request as handlers see it: inputs parsed, answers written."""

    # Defaults on the class: an instance sets only what changes.
    #: Set by the version middleware: the API version the client speaks.
    version: Optional[str] = None
    #: Set when the connection was taken over (attach, exec).
    hijacked = False
    #: The backpressure of a streamed answer (see L{start_stream}).
    flow: Optional[Flow] = None
    _uri: Optional[str] = None
    _body: Optional[bytes] = None

    def __init__(self, request: IRequest, variables: Dict[str, str], router: str = "") -> None:
        self.request = request
        self.vars = variables
        #: The name of the router whose route took the request.
        self.router = router
        self.method = request.method.decode("ascii", "replace")

    @property
    def uri(self) -> str:
        """The request's URI as text (asked for by logs and errors only)."""
        if self._uri is None:
            self._uri = self.request.uri.decode("utf-8", "replace")
        return self._uri

    @property
    def gone(self) -> bool:
        """Whether the client went away before the answer was finished.

        twisted.web marks the request disconnected before it tells any
        C{notifyFinish} listener, so every listener sees it: no listener of
        our own is needed (one Deferred fewer a request)."""
        return getattr(self.request, "_disconnected", False)

    # -- inputs ---------------------------------------------------------

    def query(self, name: str, default: Optional[str] = None) -> Optional[str]:
        values = self.request.args.get(name.encode("utf-8"))
        if not values:
            return default
        return values[0].decode("utf-8", "replace")

    def query_all(self, name: str) -> List[str]:
        return [
            v.decode("utf-8", "replace")
            for v in self.request.args.get(name.encode("utf-8"), [])
        ]

    def has_query(self, name: str) -> bool:
        return name.encode("utf-8") in self.request.args

    def bool_query(self, name: str, default: bool = False) -> bool:
        if not self.has_query(name):
            return default
        return bool_value(self.query(name))

    def int_query(self, name: str, default: int = 0) -> int:
        value = self.query(name)
        if value is None or value == "":
            return default
        try:
            return int(value, 10)
        except ValueError:
            raise InvalidParameter(
                'strconv.ParseInt: parsing "%s": invalid syntax' % (value,)
            )

    def filters(self) -> Filters:
        return Filters.from_json(self.query("filters"))

    def header(self, name: str) -> Optional[str]:
        value = self.request.getHeader(name)
        if value is None:
            return None
        return value.decode("latin-1") if isinstance(value, bytes) else value

    def body(self) -> bytes:
        if self._body is None:
            content = self.request.content
            if content is None:
                self._body = b""
            else:
                content.seek(0)
                self._body = content.read()
        return self._body

    def json_body(self, default: Any = None) -> Any:
        """The JSON body, checked as dockerd checks it; C{default} when empty."""
        body = self.body()
        content_type = self.header("Content-Type")
        if body.strip() == b"":
            return default
        if content_type is not None:
            media = content_type.split(";", 1)[0].strip().lower()
            if media != "application/json":
                raise InvalidParameter(
                    "unsupported Content-Type header (%s): must be 'application/json'"
                    % (content_type,)
                )
        try:
            decoder = json.JSONDecoder(parse_float=GoNumber)
            text = body.decode("utf-8")
            value, end = decoder.raw_decode(text.lstrip())
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidParameter("invalid JSON: %s" % (e,))
        if text.lstrip()[end:].strip():
            raise InvalidParameter("unexpected content after JSON")
        return value

    # -- outputs --------------------------------------------------------

    @property
    def started(self) -> bool:
        return bool(self.request.startedWriting)

    def set_header(self, name: str, value: str) -> None:
        set_header(self.request, name, value)

    def set_elapsed(self, name: str, since: Optional[float]) -> None:
        """Header C{name}: the seconds since C{since} (C{time.monotonic}),
        when given: how long a restored process has run, or a dumped one
        been frozen, when the answer is written (twistedock only: a
        migration's downtime measured from both ends without a shared
        clock)."""
        if since is not None:
            self.set_header(name, "%.6f" % (max(0.0, time.monotonic() - since),))

    def write_json(self, obj: Any, status: int = 200) -> None:
        data = encode_json(obj)
        request = self.request
        if request.code != status:
            request.setResponseCode(status)
        headers = raw_headers(request)
        headers[b"Content-Type"] = [b"application/json"]
        headers[b"Content-Length"] = [b"%d" % (len(data),)]
        request.write(data)

    def write_status(self, status: int) -> None:
        """An answer with no body (204, 201 or an empty 200)."""
        self.request.setResponseCode(status)
        if status not in (204, 304):
            raw_headers(self.request)[b"Content-Length"] = [b"0"]
        self.request.write(b"")

    def start_stream(self, content_type: Optional[str], status: int = 200) -> Flow:
        """Send the status and headers now; the body follows in chunks, at
        the pace the returned L{Flow} allows.  No C{content_type}: no
        Content-Type header at all."""
        self.request.setResponseCode(status)
        if content_type is None:
            self.request.defaultContentType = None
        else:
            self.request.setHeader("Content-Type", content_type)
        self.request.write(b"")
        self.flow = Flow()
        self.request.registerProducer(self.flow, True)
        return self.flow

    def write(self, data: bytes) -> None:
        self.request.write(data)


# -- Go's json.Decoder --------------------------------------------------------
#
# Some bodies dockerd decodes straight into a struct with Go's json.Decoder,
# and clients see its messages; these reproduce them, once for every router.

_SYNTAX = {
    "Expecting value": "looking for beginning of value",
    "Expecting ',' delimiter": None,  # depends on where: object or array
    "Expecting ':' delimiter": "after object key",
    "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
}


def go_syntax_error(text: str, error: json.JSONDecodeError) -> str:
    """Go's json.Decoder message for a document Python could not parse."""
    rest = text[error.pos :]
    if not rest.strip():
        return "unexpected EOF"
    char = rest[0]
    where = _SYNTAX.get(error.msg, "looking for beginning of value")
    if where is None:
        # Inside an object (after a value) or an array: look back.
        depth = []
        in_string = escape = False
        for ch in text[: error.pos]:
            if in_string:
                if escape:
                    escape = False
                elif ch == "\\":
                    escape = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "{[":
                depth.append(ch)
            elif ch in "}]" and depth:
                depth.pop()
        where = "after array element" if depth and depth[-1] == "[" else "after object key:value pair"
    shown = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char, char)
    if char == "'":
        shown = "\\'"
    return "invalid character '%s' %s" % (shown, where)


def decode_go_struct(value: Any, struct: str, fields: Dict[str, str]) -> Tuple[Dict[str, Any], Optional[str]]:
    """A decoded JSON document as Go's decoder fills the struct C{struct}
    (package-qualified: C{container.ExecOptions}) whose fields have the Go
    types C{fields} (names of L{godecode.BY_NAME}): the fields it sets, and
    the message of the first type error (None when there was none).  Field
    names match regardless of case; unknown fields and nulls are ignored, as
    in Go.  Whole bodies with nested types decode with L{godecode.decode}."""
    decoded, error = godecode.first_error(value, godecode.struct_of(struct, fields))
    if error is not None or decoded is None:
        return {}, error
    return {k: v for k, v in decoded.items() if k in fields and v is not None}, None
