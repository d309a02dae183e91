"""
dockerd's local volume driver: names and DriverOpts checked as it checks
them, a volume's directory laid out as it lays it out
(C{<data-root>/volumes/<name>/_data}, C{opts.json} when it has options), and
the mount(8) command line that mounts one with C{type}/C{device}/C{o}.

Pure but for L{Volume}'s directory reads and writes (blocking: run them in a
thread).
"""

import json
import os
import re
import shutil
import time
from typing import Dict, List, Optional

import attr

from ...atomic import write_atomic
from ...errors import InvalidParameter

DRIVER = "local"
#: The label moby 23+ gives a volume created without a name.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
DATA_DIR = "_data"
OPTS_FILE = "opts.json"
#: What dockerd keeps in its metadata database, kept beside the data here.
METADATA_FILE = "metadata.json"

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_VALID_OPTS = ("type", "o", "device", "size")
_MANDATORY_OPTS = {"device": ("type",), "type": ("device",), "o": ("device", "type")}


def validate_name(name: str) -> None:
    """The local driver's names: two characters at least, [a-zA-Z0-9_.-]."""
    if len(name) == 1:
        raise InvalidParameter(
            "volume name is too short, names should be at least two alphanumeric characters"
        )
    if not _NAME.match(name):
        raise InvalidParameter(
            '"%s" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path" % (name,)
        )


def validate_opts(opts: Optional[Dict[str, str]]) -> None:
    """The local driver's DriverOpts, refused in dockerd's words (in Go's
    map order, which is random: the first problem found is told)."""
    if not opts:
        return
    for key in opts:
        if key not in _VALID_OPTS:
            raise InvalidParameter('invalid option: "%s"' % (key,))
    if "size" in opts:
        # dockerd takes a size only on a data root with quota support
        # (xfs with pquota), which twistedock does not manage.
        raise InvalidParameter("quota size requested but no quota support")
    for key, required in _MANDATORY_OPTS.items():
        if key in opts:
            for needed in required:
                if needed not in opts:
                    raise InvalidParameter('missing required option: "%s"' % (needed,))


def mount_argv(opts: Dict[str, str], target: str) -> List[str]:
    """mount(8)'s command line for a volume with these options."""
    argv = ["mount", "-t", opts.get("type") or "none"]
    if opts.get("o"):
        argv += ["-o", opts["o"]]
    return argv + ["--", opts.get("device", ""), target]


def created_at(ns: int) -> str:
    """Go's time.RFC3339 of a local time (seconds, the zone's offset)."""
    seconds = ns // 1_000_000_000
    local = time.localtime(seconds)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", local)
    offset = local.tm_gmtoff
    if not offset:
        return text + "Z"
    sign = "+" if offset > 0 else "-"
    offset = abs(offset) // 60
    return text + "%s%02d:%02d" % (sign, offset // 60, offset % 60)


@attr.s(auto_attribs=True, eq=False)
class Volume:
    """One local volume: its directory, labels and options."""

    name: str
    root: str  # <data-root>/volumes/<name>
    labels: Optional[Dict[str, str]] = None
    options: Optional[Dict[str, str]] = None
    created: int = 0  # ns: the ctime of its directory, as dockerd reads it

    @property
    def path(self) -> str:
        return os.path.join(self.root, DATA_DIR)

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in (self.labels or {})

    @property
    def needs_mount(self) -> bool:
        opts = self.options or {}
        return bool(opts.get("device") or opts.get("type"))

    def to_api(self) -> dict:
        return {
            "CreatedAt": created_at(self.created),
            "Driver": DRIVER,
            "Labels": self.labels,
            "Mountpoint": self.path,
            "Name": self.name,
            "Options": self.options,
            "Scope": "local",
        }

    # -- on disk (blocking) ---------------------------------------------------

    def write(self) -> None:
        """Make the directories, write opts.json (dockerd's) and the
        metadata, atomically: a volume whose metadata is missing (a crash
        between the two) is still found, without labels."""
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        os.makedirs(self.path, mode=0o755, exist_ok=True)
        if self.options:
            opts = {
                "MountType": self.options.get("type", ""),
                "MountOpts": self.options.get("o", ""),
                "MountDevice": self.options.get("device", ""),
                "Quota": {"Size": 0},
            }
            write_atomic(os.path.join(self.root, OPTS_FILE), json.dumps(opts).encode(), 0o600)
        metadata = {"Name": self.name, "Driver": DRIVER, "Labels": self.labels,
                    "Options": self.options}
        write_atomic(os.path.join(self.root, METADATA_FILE), json.dumps(metadata).encode(), 0o600)
        self.created = os.stat(self.root).st_ctime_ns

    def remove(self) -> None:
        shutil.rmtree(self.root)


def load(root: str) -> Optional[Volume]:
    """The volume in the directory C{root}, or None: not a volume."""
    if not os.path.isdir(os.path.join(root, DATA_DIR)):
        return None
    volume = Volume(name=os.path.basename(root), root=root)
    try:
        with open(os.path.join(root, METADATA_FILE), "rb") as f:
            metadata = json.loads(f.read())
        volume.labels = metadata.get("Labels")
        volume.options = metadata.get("Options")
    except (OSError, ValueError):
        volume.options = _options_from_opts_file(root)
    volume.created = os.stat(root).st_ctime_ns
    return volume


def _options_from_opts_file(root: str) -> Optional[Dict[str, str]]:
    try:
        with open(os.path.join(root, OPTS_FILE), "rb") as f:
            opts = json.loads(f.read())
    except (OSError, ValueError):
        return None
    found = {"type": opts.get("MountType"), "o": opts.get("MountOpts"),
             "device": opts.get("MountDevice")}
    return {k: v for k, v in found.items() if v} or None


def load_all(directory: str) -> List[Volume]:
    """Every volume under C{<data-root>/volumes}."""
    os.makedirs(directory, mode=0o701, exist_ok=True)
    found = []
    for name in sorted(os.listdir(directory)):
        volume = load(os.path.join(directory, name))
        if volume is not None:
            found.append(volume)
    return found
