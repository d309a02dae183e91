"""
moby's container.Config as encoding/json writes it: its fields in Go's
order, each with the value Go writes when it is unset, or omitted when empty
(omitempty).  One table for the image store (image configs), the container
backend (inspect, commit, defaults) and the image router (an image's Config
as API < 1.50 shows it); L{twistedock.routers.types} has the same fields'
Go types, for decoding request bodies.
"""

#: Marks the fields Go omits when empty (omitempty).
OMIT = object()

#: container.Config's fields in Go's order, with Go's zero value (or OMIT).
FIELDS = (
    ("Hostname", ""),
    ("Domainname", ""),
    ("User", ""),
    ("AttachStdin", False),
    ("AttachStdout", False),
    ("AttachStderr", False),
    ("ExposedPorts", OMIT),
    ("Tty", False),
    ("OpenStdin", False),
    ("StdinOnce", False),
    ("Env", None),
    ("Cmd", None),
    ("Healthcheck", OMIT),
    ("ArgsEscaped", OMIT),
    ("Image", ""),
    ("Volumes", None),
    ("WorkingDir", ""),
    ("Entrypoint", None),
    ("NetworkDisabled", OMIT),
    ("MacAddress", OMIT),
    ("OnBuild", None),
    ("Labels", None),
    ("StopSignal", OMIT),
    ("StopTimeout", OMIT),
    ("Shell", OMIT),
)

#: The field names in Go's order.
ORDER = tuple(name for name, _ in FIELDS)

#: The fields Go omits when empty.
OMITEMPTY = frozenset(name for name, zero in FIELDS if zero is OMIT)


def empty() -> dict:
    """A container.Config with nothing set, as Go writes it."""
    return {name: zero for name, zero in FIELDS if zero is not OMIT}
