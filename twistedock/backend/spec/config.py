"""
A container's Config merged with its image's as dockerd merges it, and what
the merge decides: the process's path, arguments and environment.
"""

import copy
from typing import Iterable, List, Optional, Tuple

from ...errors import InvalidParameter
from .fields import strslice


def merge(user: Optional[dict], base: Optional[dict]) -> dict:
    """
    moby's C{merge} (daemon/commit.go): C{user} completed from C{base}, as a
    new dict.  C{base} is the image's config when a container is created and
    the container's when it is committed: one merge serves both.
    """
    out = copy.deepcopy(user or {})
    base = base or {}
    if not out.get("User"):
        out["User"] = base.get("User") or ""
    if not out.get("ExposedPorts"):
        out["ExposedPorts"] = copy.deepcopy(base.get("ExposedPorts"))
    elif base.get("ExposedPorts"):
        ports = dict(out["ExposedPorts"])
        for port, value in base["ExposedPorts"].items():
            ports.setdefault(port, value)
        out["ExposedPorts"] = ports
    if not out.get("Env"):
        out["Env"] = copy.deepcopy(base.get("Env"))
    else:
        keys = {e.split("=", 1)[0] for e in out["Env"]}
        out["Env"] = list(out["Env"]) + [
            e for e in base.get("Env") or () if e.split("=", 1)[0] not in keys
        ]
    labels = dict(out.get("Labels") or {})
    for key, value in (base.get("Labels") or {}).items():
        labels.setdefault(key, value)
    out["Labels"] = labels
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = copy.deepcopy(base.get("Cmd"))
            if "ArgsEscaped" in base:
                out["ArgsEscaped"] = base["ArgsEscaped"]
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = copy.deepcopy(base.get("Entrypoint"))
    if base.get("Healthcheck"):
        if not out.get("Healthcheck"):
            out["Healthcheck"] = copy.deepcopy(base["Healthcheck"])
        else:
            health = dict(out["Healthcheck"])
            for key in ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
                if not health.get(key):
                    health[key] = base["Healthcheck"].get(key)
            out["Healthcheck"] = health
    if not out.get("WorkingDir"):
        out["WorkingDir"] = base.get("WorkingDir") or ""
    if not out.get("Volumes"):
        out["Volumes"] = copy.deepcopy(base.get("Volumes"))
    else:
        out["Volumes"] = dict(out["Volumes"], **(base.get("Volumes") or {}))
    if not out.get("StopSignal"):
        out["StopSignal"] = base.get("StopSignal") or ""
    return out


def merge_config(config: Optional[dict], image_config: Optional[dict]) -> dict:
    """
    A create request's Config merged with its image's (L{merge}), its
    command normalised; raises L{InvalidParameter} "No command specified"
    as dockerd does.
    """
    user = dict(config or {})
    for key in ("Cmd", "Entrypoint"):
        if key in user:
            user[key] = strslice(user[key])
    merged = merge(user, image_config)
    # The image's command may be a bare string too.
    for key in ("Cmd", "Entrypoint"):
        if key in merged:
            merged[key] = strslice(merged[key])
    if merged.get("Entrypoint") == [""]:
        merged["Entrypoint"] = None
    if not merged.get("Entrypoint") and not merged.get("Cmd"):
        raise InvalidParameter("No command specified")
    return merged


def entrypoint_and_args(config: dict) -> Tuple[str, List[str]]:
    """A merged config's Path and Args (as inspect shows them)."""
    entrypoint = strslice(config.get("Entrypoint")) or []
    cmd = strslice(config.get("Cmd")) or []
    if entrypoint:
        return entrypoint[0], entrypoint[1:] + cmd
    if not cmd:
        raise InvalidParameter("No command specified")
    return cmd[0], cmd[1:]


def replace_or_append_env(defaults: List[str], overrides: Iterable[str]) -> List[str]:
    """dockerd's ReplaceOrAppendEnvValues ("KEY" alone unsets KEY)."""
    env = list(defaults)
    index = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
    for value in overrides:
        if "=" not in value:
            if value in index:
                env[index[value]] = ""
            continue
        key = value.split("=", 1)[0]
        if key in index:
            env[index[key]] = value
        else:
            env.append(value)
    return [e for e in env if e != ""]
