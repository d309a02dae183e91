"""
Go's json.Decoder, typed: a request body checked against a declarative
table of the Go types dockerd decodes it into (L{Struct}, L{Slice},
L{Map}, ...), with the messages Go gives when a value does not fit
("json: cannot unmarshal string into Go struct field HostConfig.HostConfig.PidsLimit
of type int64").  Decoding returns the document as Go leaves it: struct
fields under their canonical names (Go matches keys regardless of case),
nulls inside lists and maps replaced by the element's zero value; unknown
fields are kept untouched (Go ignores them, and so do the handlers).
"""

from typing import Any, Dict, Optional, Tuple

import attr


class GoNumber(float):
    """A JSON number that is not an integer, with its text as written: Go
    quotes the text when the number does not fit an integer field."""

    text: str

    def __new__(cls, text: str) -> "GoNumber":
        number = super().__new__(cls, text)
        number.text = text
        return number


def go_kind(value: Any) -> str:
    """The JSON kind of C{value} as Go's decoder names it in a type error."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _number_text(value: Any) -> str:
    return value.text if isinstance(value, GoNumber) else repr(value) if isinstance(value, float) else str(value)


class DecodeError(Exception):
    """The first value that did not fit: Go's UnmarshalTypeError."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@attr.s(auto_attribs=True)
class _Context:
    """Go's errorContext: the innermost struct and the field path."""

    struct: str = ""
    path: Tuple[str, ...] = ()
    #: The first type error seen (Go keeps decoding after it).
    saved: Optional[str] = None

    def problem(self, seen: str, type_name: str) -> str:
        if self.struct or self.path:
            return "json: cannot unmarshal %s into Go struct field %s.%s of type %s" % (
                seen, self.struct, ".".join(self.path), type_name,
            )
        return "json: cannot unmarshal %s into Go value of type %s" % (seen, type_name)

    def save(self, seen: str, type_name: str) -> None:
        if self.saved is None:
            self.saved = self.problem(seen, type_name)


class GoType:
    """A Go type: its name as Go prints it, its zero value, and how a JSON
    value is decoded into it."""

    name = ""
    zero: Any = None

    def decode(self, value: Any, ctx: _Context) -> Any:  # pragma: no cover
        raise NotImplementedError


@attr.s(auto_attribs=True)
class Int(GoType):
    name: str
    low: int
    high: int
    zero: Any = 0

    def decode(self, value: Any, ctx: _Context) -> Any:
        if go_kind(value) != "number":
            ctx.save(go_kind(value), self.name)
            return self.zero
        if isinstance(value, float) or not self.low <= value <= self.high:
            ctx.save("number " + _number_text(value), self.name)
            return self.zero
        return value


@attr.s(auto_attribs=True)
class Scalar(GoType):
    """A string, bool or float64 (or a named type of one)."""

    name: str
    kind: str
    zero: Any = None

    def decode(self, value: Any, ctx: _Context) -> Any:
        if go_kind(value) != self.kind:
            ctx.save(go_kind(value), self.name)
            return self.zero
        return value


class _Any(GoType):
    name = "interface {}"

    def decode(self, value: Any, ctx: _Context) -> Any:
        return value


@attr.s(auto_attribs=True)
class Slice(GoType):
    element: GoType
    #: A fixed length: a Go array ([2]uint), padded or cut to it.
    length: Optional[int] = None
    type_name: Optional[str] = None

    @property
    def name(self) -> str:  # type: ignore[override]
        if self.type_name:
            return self.type_name
        return "[%s]%s" % ("" if self.length is None else self.length, self.element.name)

    @property
    def zero(self) -> Any:  # type: ignore[override]
        return None if self.length is None else [self.element.zero] * self.length

    def decode(self, value: Any, ctx: _Context) -> Any:
        if not isinstance(value, list):
            ctx.save(go_kind(value), self.name)
            return self.zero
        items = [_decode(self.element, item, ctx) for item in value]
        if self.length is not None:
            items = (items + [self.element.zero] * self.length)[: self.length]
        return items


@attr.s(auto_attribs=True)
class Map(GoType):
    """A map with string keys (JSON's keys are always strings)."""

    element: GoType
    type_name: Optional[str] = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.type_name or "map[string]%s" % (self.element.name,)

    def decode(self, value: Any, ctx: _Context) -> Any:
        if not isinstance(value, dict):
            ctx.save(go_kind(value), self.name)
            return None
        return {key: _decode(self.element, item, ctx) for key, item in value.items()}


class StrSlice(GoType):
    """strslice.StrSlice: a list of strings, or one string."""

    name = "strslice.StrSlice"

    def decode(self, value: Any, ctx: _Context) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) or v is None for v in value):
            return [v or "" for v in value]
        # Its UnmarshalJSON fails as a string would, and stops the decoder.
        raise DecodeError(ctx.problem(go_kind(value), "string"))


@attr.s(auto_attribs=True)
class Struct(GoType):
    """A Go struct: C{name} package-qualified (C{container.HostConfig}), its
    fields by their JSON names (embedded structs' fields merged in)."""

    name: str
    fields: Dict[str, GoType]

    @property
    def zero(self) -> Any:  # type: ignore[override]
        return {}

    def field(self, key: str) -> Optional[str]:
        if key in self.fields:
            return key
        lowered = key.lower()
        return next((f for f in self.fields if f.lower() == lowered), None)

    def decode(self, value: Any, ctx: _Context) -> Any:
        if not isinstance(value, dict):
            ctx.save(go_kind(value), self.name)
            return {}
        decoded: Dict[str, Any] = {}
        outer = ctx.struct, ctx.path
        for key, item in value.items():
            name = self.field(key)
            if name is None:
                decoded[key] = item
                continue
            ctx.struct, ctx.path = self.name.split(".")[-1], outer[1] + (name,)
            decoded[name] = None if item is None else self.fields[name].decode(item, ctx)
            ctx.struct, ctx.path = outer
        return decoded


def _decode(go_type: GoType, value: Any, ctx: _Context) -> Any:
    """An element of a list or map: null is the element's zero value."""
    if value is None:
        return go_type.zero
    return go_type.decode(value, ctx)


def decode(value: Any, go_type: GoType) -> Any:
    """C{value} (a parsed JSON document) as Go decodes it into C{go_type};
    raises L{DecodeError} with Go's message for the first value that does
    not fit.  A null document stays None."""
    if value is None:
        return None
    ctx = _Context()
    decoded = go_type.decode(value, ctx)
    if ctx.saved is not None:
        raise DecodeError(ctx.saved)
    return decoded


def merged(*structs: Struct, **fields: GoType) -> Dict[str, GoType]:
    """The fields of embedded structs and more: Go promotes embedded fields."""
    table: Dict[str, GoType] = {}
    for struct in structs:
        table.update(struct.fields)
    table.update(fields)
    return table


# -- Go's basic types -----------------------------------------------------------

STRING = Scalar("string", "string", "")
BOOL = Scalar("bool", "bool", False)
FLOAT64 = Scalar("float64", "number", 0)
ANY = _Any()
INT = Int("int", -(2**63), 2**63 - 1)
INT64 = Int("int64", -(2**63), 2**63 - 1)
UINT = Int("uint", 0, 2**64 - 1)
UINT16 = Int("uint16", 0, 2**16 - 1)
UINT32 = Int("uint32", 0, 2**32 - 1)
UINT64 = Int("uint64", 0, 2**64 - 1)
STRINGS = Slice(STRING)
STRSLICE = StrSlice()
STRING_MAP = Map(STRING)
DURATION = Int("time.Duration", -(2**63), 2**63 - 1)


def named_string(name: str) -> Scalar:
    """A named string type (C{container.NetworkMode})."""
    return Scalar(name, "string", "")


#: The short type names the older field tables use, as types.
BY_NAME: Dict[str, GoType] = {
    "string": STRING, "bool": BOOL, "int": INT, "int64": INT64, "uint": UINT,
    "uint16": UINT16, "uint32": UINT32, "uint64": UINT64, "float64": FLOAT64,
    "[]string": STRINGS, "[2]uint": Slice(UINT, 2),
}  # fmt: skip


def struct_of(name: str, fields: Dict[str, str]) -> Struct:
    """A struct from a table of Go type names (C{{"Cmd": "[]string"}})."""
    return Struct(name, {key: BY_NAME[value] for key, value in fields.items()})


def first_error(value: Any, go_type: GoType) -> Tuple[Any, Optional[str]]:
    """L{decode} that reports rather than raises: (decoded, message)."""
    try:
        return decode(value, go_type), None
    except DecodeError as e:
        return None, e.message

