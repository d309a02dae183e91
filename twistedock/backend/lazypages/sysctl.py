"""
C{fs.pipe-max-size}: CRIU's page server asks for pipes of up to 4 MiB;
without CAP_SYS_RESOURCE, a larger size than this limit fails, CRIU ignores
the failure and splices into fd -1 (C{page-pipe: splice: -1: Bad file
descriptor}).  The daemon raises the limit at start, as dockerd sets the
sysctls it needs (C{--lazy-pages-sysctl=false}: leave it).
"""

from typing import Optional

PATH = "/proc/sys/fs/pipe-max-size"
#: What CRIU's page pipes need.
NEEDED = 4 * 1024 * 1024


def read_limit(path: str = PATH) -> Optional[int]:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def raise_limit(path: str = PATH, needed: int = NEEDED) -> str:
    """Raise the limit to C{needed} if it is lower; what was done, for the log."""
    current = read_limit(path)
    if current is not None and current >= needed:
        return "fs.pipe-max-size is %d" % (current,)
    try:
        with open(path, "w") as f:
            f.write("%d\n" % (needed,))
    except OSError as e:
        return "cannot raise fs.pipe-max-size to %d: %s" % (needed, e.strerror or e)
    return "fs.pipe-max-size raised from %s to %d" % (current, needed)


def problem(path: str = PATH, needed: int = NEEDED) -> str:
    """Why lazy pages cannot work here, or "" when they can."""
    current = read_limit(path)
    if current is None or current >= needed:
        return ""
    return (
        "fs.pipe-max-size is %d, lazy-pages checkpoints need %d (the daemon raises it at start "
        "unless --lazy-pages-sysctl=false)" % (current, needed)
    )
