"""
A container's Config merged with its image's as dockerd merges it, and what
the merge decides: the process's path, arguments and environment.
"""

import copy
from typing import Iterable, List, Optional, Tuple

from ...errors import InvalidParameter
from .fields import strslice


def merge_config(config: Optional[dict], image_config: Optional[dict]) -> dict:
    """
    dockerd's merge of the request's Config with the image's: a new dict.
    Raises L{InvalidParameter} "No command specified" as dockerd does.
    """
    user = copy.deepcopy(config or {})
    image = image_config or {}
    for key in ("Cmd", "Entrypoint"):
        if key in user:
            user[key] = strslice(user[key])
    if not user.get("User"):
        user["User"] = image.get("User") or ""
    if not user.get("ExposedPorts"):
        user["ExposedPorts"] = copy.deepcopy(image.get("ExposedPorts"))
    elif image.get("ExposedPorts"):
        for port, value in image["ExposedPorts"].items():
            user["ExposedPorts"].setdefault(port, value)
    if not user.get("Env"):
        user["Env"] = list(image.get("Env") or ())
    else:
        keys = {e.split("=", 1)[0] for e in user["Env"]}
        user["Env"] = list(user["Env"]) + [
            e for e in image.get("Env") or () if e.split("=", 1)[0] not in keys
        ]
    labels = dict(user.get("Labels") or {})
    for key, value in (image.get("Labels") or {}).items():
        labels.setdefault(key, value)
    user["Labels"] = labels
    if not user.get("Entrypoint"):
        if not user.get("Cmd"):
            user["Cmd"] = strslice(image.get("Cmd"))
            if "ArgsEscaped" in image:
                user["ArgsEscaped"] = image["ArgsEscaped"]
        if user.get("Entrypoint") is None:
            user["Entrypoint"] = strslice(image.get("Entrypoint"))
    if image.get("Healthcheck"):
        if not user.get("Healthcheck"):
            user["Healthcheck"] = copy.deepcopy(image["Healthcheck"])
        else:
            health = dict(user["Healthcheck"])
            for key in ("Test", "Interval", "Timeout", "StartPeriod", "Retries"):
                if not health.get(key):
                    health[key] = image["Healthcheck"].get(key)
            user["Healthcheck"] = health
    if not user.get("WorkingDir"):
        user["WorkingDir"] = image.get("WorkingDir") or ""
    if not user.get("Volumes"):
        user["Volumes"] = copy.deepcopy(image.get("Volumes"))
    else:
        user["Volumes"] = dict(user["Volumes"], **(image.get("Volumes") or {}))
    if not user.get("StopSignal"):
        user["StopSignal"] = image.get("StopSignal") or ""
    if user.get("Entrypoint") == [""]:
        user["Entrypoint"] = None
    if not user.get("Entrypoint") and not user.get("Cmd"):
        raise InvalidParameter("No command specified")
    return user


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
