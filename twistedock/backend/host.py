"""
Facts about this host, read from /proc, /sys and the runtime binaries, for
/info and /version.  Reads are of small kernel files; the binaries are asked
for their versions through child processes, never on the reactor's time.
"""

import os
import platform
import re
import shutil
import socket
from typing import Dict, List, Optional

import attr
from twisted.internet.utils import getProcessOutputAndValue


def read_text(path: str) -> Optional[str]:
    """A small kernel or config file's text; None if it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def os_release(path: str = "/etc/os-release") -> Dict[str, str]:
    values: Dict[str, str] = {}
    for line in (read_text(path) or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def mem_total() -> int:
    match = re.search(r"^MemTotal:\s+(\d+) kB", read_text("/proc/meminfo") or "", re.M)
    return int(match.group(1)) * 1024 if match else 0


def ncpu() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def proc_flag(path: str) -> bool:
    return (read_text(path) or "").strip() == "1"


def seccomp_supported() -> bool:
    return re.search(r"^Seccomp:", read_text("/proc/self/status") or "", re.M) is not None


def storage_driver_status(data_root: str) -> List[List[str]]:
    """The overlay2 driver's status lines, as dockerd shows them."""
    backing = "<unknown>"
    fstype = _mount_fstype(data_root)
    if fstype:
        backing = {"ext4": "extfs", "ext3": "extfs", "ext2": "extfs"}.get(fstype, fstype)
    return [
        ["Backing Filesystem", backing],
        ["Supports d_type", "true"],
        ["Using metacopy", "false"],
        ["Native Overlay Diff", "true"],
        ["userxattr", "false"],
    ]


def _mount_fstype(path: str) -> Optional[str]:
    best, fstype = "", None
    path = os.path.abspath(path)
    for line in (read_text("/proc/self/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mountpoint = fields[1].replace("\\040", " ")
        if (path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")) and len(
            mountpoint
        ) >= len(best):
            best, fstype = mountpoint, fields[2]
    return fstype


@attr.s(frozen=True, auto_attribs=True)
class Component:
    """A binary the daemon runs, and what it says of its version."""

    name: str
    path: Optional[str]
    version: str = ""
    commit: str = ""

    @property
    def found(self) -> bool:
        return bool(self.path and self.version)


_VERSION_PATTERNS = {
    "runc": (r"runc version (\S+)", r"^commit: (\S+)"),
    "conmon": (r"conmon version (\S+)", r"^commit: (\S+)"),
    "criu": (r"Version: (\S+)", r"^GitID: (\S+)"),
}


async def probe_component(reactor, name: str, path: Optional[str]) -> Component:
    """Run C{path --version} (or find C{name} on PATH) and read its version."""
    resolved = path if path and os.path.sep in path else shutil.which(path or name)
    if not resolved or not os.access(resolved, os.X_OK):
        return Component(name, None)
    try:
        out, err, code = await getProcessOutputAndValue(
            resolved, ["--version"], env=dict(os.environ), reactor=reactor
        )
    except Exception:
        return Component(name, resolved)
    text = (out + err).decode("utf-8", "replace")
    version_re, commit_re = _VERSION_PATTERNS.get(name, (r"(\d+\.\d+\S*)", r"$^"))
    version = re.search(version_re, text, re.M)
    commit = re.search(commit_re, text, re.M)
    return Component(
        name,
        resolved,
        version.group(1) if version else "",
        commit.group(1) if commit else "",
    )


def hostname() -> str:
    return socket.gethostname()


def kernel_version() -> str:
    return platform.release()


def architecture() -> str:
    return platform.machine()
