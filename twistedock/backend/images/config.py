"""
Image config JSON as dockerd writes it: the container config
(container.Config) with Go's field order and omitempty rules, and the whole
image config with its keys sorted.
"""

from typing import Any, Dict, Optional

from ... import golang

#: Marks the container.Config fields Go omits when empty (omitempty).
_OMIT = object()

#: container.Config's fields in Go's order, with Go's zero value.
CONTAINER_CONFIG_FIELDS = (
    ("Hostname", ""),
    ("Domainname", ""),
    ("User", ""),
    ("AttachStdin", False),
    ("AttachStdout", False),
    ("AttachStderr", False),
    ("ExposedPorts", _OMIT),
    ("Tty", False),
    ("OpenStdin", False),
    ("StdinOnce", False),
    ("Env", None),
    ("Cmd", None),
    ("Healthcheck", _OMIT),
    ("ArgsEscaped", _OMIT),
    ("Image", ""),
    ("Volumes", None),
    ("WorkingDir", ""),
    ("Entrypoint", None),
    ("NetworkDisabled", _OMIT),
    ("MacAddress", _OMIT),
    ("OnBuild", None),
    ("Labels", None),
    ("StopSignal", _OMIT),
    ("StopTimeout", _OMIT),
    ("Shell", _OMIT),
)
CONTAINER_CONFIG_ORDER = tuple(name for name, _ in CONTAINER_CONFIG_FIELDS)
CONTAINER_CONFIG_OMITEMPTY = frozenset(
    name for name, zero in CONTAINER_CONFIG_FIELDS if zero is _OMIT
)


def empty_container_config() -> dict:
    """A container.Config with nothing set, as dockerd writes it in images."""
    return {name: zero for name, zero in CONTAINER_CONFIG_FIELDS if zero is not _OMIT}


def ordered_container_config(config: Optional[dict]) -> dict:
    """C{config} in Go's field order, empty optional fields dropped, maps sorted."""
    config = config or {}
    out: Dict[str, Any] = {}
    for key in CONTAINER_CONFIG_ORDER:
        value = config.get(key, empty_container_config().get(key))
        if key in CONTAINER_CONFIG_OMITEMPTY and not value:
            continue
        out[key] = _sorted_map(value)
    for key, value in config.items():
        if key not in out and key not in CONTAINER_CONFIG_ORDER:
            out[key] = value
    return out


def _sorted_map(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: value[k] for k in sorted(value)}
    return value


def encode_image_config(config: dict) -> bytes:
    """The config JSON as dockerd writes it: top-level keys sorted (Go
    marshals the image through a map), the container config in Go's order."""
    doc: Dict[str, Any] = {}
    for key in sorted(config):
        value = config[key]
        if key in ("config", "container_config") and isinstance(value, dict):
            value = ordered_container_config(value)
        doc[key] = value
    return golang.json_marshal(doc)
