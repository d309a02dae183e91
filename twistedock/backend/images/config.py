"""
Image config JSON as dockerd writes it: the container config
(container.Config) with Go's field order and omitempty rules, and the whole
image config with its keys sorted.
"""

from typing import Any, Dict, Optional

from ... import containerconfig, golang

CONTAINER_CONFIG_ORDER = containerconfig.ORDER
CONTAINER_CONFIG_OMITEMPTY = containerconfig.OMITEMPTY
empty_container_config = containerconfig.empty


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
