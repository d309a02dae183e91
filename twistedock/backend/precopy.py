"""
The root filesystem's changes sent ahead of a migration's freeze.

A prepared import (L{CheckpointBackend.export} and C{import_checkpoint}
with C{prepare}) carries the container's upper directory as it is while
the container still runs; the target keeps it as the prepared container's
upper directory.  The export after the freeze must still be the frozen
state, but a regular file that did not change since it was sent is only
named: a hard link entry to C{rootfs-precopy/PATH}, which the target makes
a hard link to the file it already has.  Everything else (directories,
symbolic links, whiteouts, changed and new files) travels again, and what
is not in the final export is not in the restored container.

"Did not change" is decided by the file's inode number, size and ctime
(which every write, truncate, chmod, chown or xattr change moves, and no
one can set back), recorded when the file was sent: only for files whose
ctime was older than the pre-copy's start by more than the kernel's
timestamp granularity (L{SETTLE_NS}), and equal before and after the file
was read.  A file changed later gets a later ctime, so it is sent again.
What a daemon does not remember (it restarted between the two exports)
is simply sent in full.
"""

import os
import stat
import tarfile
import time
from typing import Dict, Optional, Tuple

from .. import golang
from ..tar.extract import Extractor
from ..tar.read import ArchiveError
from ..tar.write import TarWriter

#: Where the final export's unchanged files point (not an archive member:
#: the target's pre-copy).
EXPORT_PRECOPY = "rootfs-precopy"

#: Changes more recent than this before the pre-copy began are not
#: trusted to show in ctime (file times come from the coarse clock: up to a
#: tick behind), so such files are sent again after the freeze.
SETTLE_NS = 100 * 1000 * 1000

Identity = Tuple[int, int, int]


def identity(st) -> Identity:
    return (st.st_ino, st.st_size, st.st_ctime_ns)


class PrecopyWriter(TarWriter):
    """A L{TarWriter} for an export whose entries below C{prefix}/ are the
    upper directory: with C{record} (a dict, filled) the unchanged-since
    identity of each regular file it sends (the pre-copy); with C{sent}
    (a former C{record}) a hard link to L{EXPORT_PRECOPY} instead of the
    contents of each file still as it was sent."""

    def __init__(self, write, prefix: str, record: Optional[Dict[str, Identity]] = None,
                 sent: Optional[Dict[str, Identity]] = None) -> None:
        super().__init__(write)
        self.prefix = prefix.rstrip("/") + "/"
        self.record = record
        self.sent = sent or {}
        self.threshold = time.time_ns() - SETTLE_NS
        #: Files named instead of sent, and their bytes.
        self.linked = 0
        self.linked_bytes = 0

    def regular(self, dir_fd: int, name: str, arcname: str, st) -> None:
        relative = arcname[len(self.prefix):] if arcname.startswith(self.prefix) else None
        if relative is not None and self.sent.get(relative) == identity(st):
            info = self.info_for(arcname, st, tarfile.LNKTYPE)
            info.linkname = EXPORT_PRECOPY + "/" + relative
            self.header(info)
            self.linked += 1
            self.linked_bytes += st.st_size
            return
        super().regular(dir_fd, name, arcname, st)
        if self.record is None or relative is None or st.st_ctime_ns >= self.threshold:
            return
        try:
            after = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if identity(after) == identity(st):
            self.record[relative] = identity(st)


class PrecopyExtractor(Extractor):
    """An L{Extractor} that makes the hard links to L{EXPORT_PRECOPY} as
    links to the files below C{precopy_fd} (the prepared container's upper
    directory), resolved inside it: only regular files, never outside."""

    def __init__(self, root_fd: int, precopy_fd: Optional[int]) -> None:
        super().__init__(root_fd)
        self.precopy = Extractor(precopy_fd) if precopy_fd is not None else None

    def hardlink(self, member: tarfile.TarInfo, parent_fd: int, base: str, path: str) -> bool:
        prefix = EXPORT_PRECOPY + "/"
        if not member.linkname.startswith(prefix):
            return super().hardlink(member, parent_fd, base, path)
        target = golang.clean(member.linkname[len(prefix):].lstrip("/") or ".")
        if target in (".", "..") or target.startswith("../"):
            raise ArchiveError("invalid pre-copy link %s -> %s" % (golang.quote(path), golang.quote(member.linkname)))
        if self.precopy is None:
            raise ArchiveError("link %s: no pre-copy to link from" % (golang.quote(path),))
        parts = target.split("/")
        found = self.precopy.lookup(parts, shown=target)
        if found is None:
            raise ArchiveError("link /%s: not in the pre-copy" % (target,))
        source_parent, st = found
        try:
            if not stat.S_ISREG(st.st_mode):
                raise ArchiveError("link /%s: not a regular file in the pre-copy" % (target,))
            os.link(parts[-1], base, src_dir_fd=source_parent, dst_dir_fd=parent_fd, follow_symlinks=False)
        finally:
            os.close(source_parent)
        return False
