"""
A container's tmpfs mounts named external in a dump over CRIU's RPC
when what they hold can be made again from a listing, instead of saved
by CRIU with C{tar --create --gzip} while the process is frozen and
untarred at the restore (a fork and exec of tar and gzip each way, 4-7
ms a mount on a loaded machine; a default container has three: runc's
/dev, the private /dev/shm, and on cgroup v1 runc's /sys/fs/cgroup).

The dump: before the freeze, each tmpfs mount of the container (its
whole file system, private, one mount at its place, not already
external) whose entries are directories, symbolic links, device nodes
or empty files (one link each, no extended attributes) is listed (name,
type, mode, owner, device number, link target, modification time; the
places where other mounts cover it only as such), and named external
(C{ext_mnt}: its place, L{key}); the listings go beside the images
(L{RECORD}: exports carry them).  A file written between the listing
and the freeze is seen by L{changed}, called on CRIU's C{post-dump}
notification (the tasks are still frozen then; a failed answer makes
CRIU give the dump up and resume them): the dump is then taken again
with CRIU's tar.

The restore: a new tmpfs of the daemon's for each listed mount (its
file system options: size, mode...; nosuid, nodev, noexec), the listing
made again in it (L{make_sources}), given to CRIU as the external
mount's source (CRIU binds it and sets the dumped mount's flags, read-only
included); the daemon's mount goes once CRIU has answered
(L{release}: the container keeps its own), and what a crash left is
unmounted at the daemon's next start (L{sweep}).

Blocking (reads /proc, walks, mounts): call it in a thread.
"""

import json
import os
import re
import stat
import tempfile
from typing import Dict, Iterable, List, Optional

from .rootfs import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REMOUNT, detach, mount

#: The listings of a dump's external tmpfs mounts, beside its images.
RECORD = "tmpfs-mounts.json"

#: The external mount keys (one a mount: each restore has a source of its own).
KEY_PREFIX = "twistedock-tmpfs-"

#: The tmpfs options a restore may give its own mount (anything else, the
#: mount is not made external).
TMPFS_OPTIONS = ("size", "nr_blocks", "nr_inodes", "mode", "uid", "gid", "inode64", "inode32", "huge", "mpol",
                 "noswap")

#: Per-mount flags given to the daemon's mount too.
MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}

#: More entries than this, and a tmpfs is CRIU's to tar (its listing, made
#: twice, once with the tasks frozen, would cost more than the tar).
MAX_ENTRIES = 512

#: What a record read back may say (an imported checkpoint's is not ours):
#: its key (a line of CRIU's configuration file), its source name.
KEY_PATTERN = re.compile(r"^%s[0-9]+$" % (re.escape(KEY_PREFIX),))
SOURCE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


class NotRecreatable(Exception):
    """A tmpfs holds what a listing cannot make again."""


def key(index: int) -> str:
    return "%s%d" % (KEY_PREFIX, index)


def mountinfo(pid: int) -> List[dict]:
    """The mounts C{pid} sees, in its root: id, parent, mountpoint, root,
    per-mount options, optional fields (sharing), fstype, source, super
    options."""
    return read_mountinfo("/proc/%d/mountinfo" % (pid,))


def read_mountinfo(path: str) -> List[dict]:
    """A C{mountinfo} file's mounts (see L{mountinfo})."""
    found = []
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            try:
                dash = parts.index("-")
            except ValueError:
                continue
            found.append({
                "id": parts[0],
                "parent": parts[1],
                "root": _unescape(parts[3]),
                "mountpoint": _unescape(parts[4]),
                "options": parts[5].split(","),
                "optional": parts[6:dash],
                "fstype": parts[dash + 1],
                "source": _unescape(parts[dash + 2]) if len(parts) > dash + 2 else "",
                "super": parts[dash + 3].split(",") if len(parts) > dash + 3 else [],
            })
    return found


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def plan(pid: int, external: Iterable[str]) -> List[dict]:
    """The records of C{pid}'s tmpfs mounts a dump may name external (see
    the module), C{external} the places already named so; each: its
    L{key}, place, source name, file system options, flags and listing."""
    mounts = mountinfo(pid)
    taken = set(external)
    places = [m["mountpoint"] for m in mounts]
    records = []
    for m in mounts:
        place = m["mountpoint"]
        if (m["fstype"] != "tmpfs" or m["root"] != "/" or m["optional"] or place in taken
                or places.count(place) != 1 or place == "/"):
            continue
        options = [o for o in m["super"] if o not in ("rw", "ro")]
        if any(o.partition("=")[0] not in TMPFS_OPTIONS for o in options):
            continue
        covered = sorted(p for p in places if p.startswith(place.rstrip("/") + "/"))
        try:
            entries = listing(pid, place, covered)
        except (NotRecreatable, OSError):
            continue
        records.append({
            "key": key(len(records)),
            "mountpoint": place,
            "source": m["source"] or "tmpfs",
            "options": options,
            "read_only": "ro" in m["super"],
            "flags": [o for o in m["options"] if o in MOUNT_FLAGS],
            "entries": entries,
        })
    return records


def listing(pid: int, place: str, covered: Iterable[str]) -> List[list]:
    """The entries of the tmpfs at C{place} in C{pid}'s root, parents
    first: C{[path, kind, mode, uid, gid, rdev, target, mtime_ns]}, kind
    one of d (directory), l, c, b, f (an empty file), or m / M: another
    mount's place (a directory / a file), whose own content is its
    mount's.  L{NotRecreatable} when an entry is none of these."""
    top = "/proc/%d/root%s" % (pid, place)
    covered = {p[len(place.rstrip("/")):] for p in covered}
    device = os.lstat(top).st_dev
    entries = [_entry(".", os.lstat(top), "")]
    pending = [""]
    while pending:
        directory = pending.pop(0)
        for name in sorted(os.listdir(top + directory)):
            rel = directory + "/" + name
            st = os.lstat(top + rel)
            if rel in covered:
                entries.append([rel, "m" if stat.S_ISDIR(st.st_mode) else "M", 0, 0, 0, 0, "", 0])
                continue
            if st.st_dev != device:
                raise NotRecreatable("%s%s: another file system" % (place, rel))
            entries.append(_entry(rel, st, os.readlink(top + rel) if stat.S_ISLNK(st.st_mode) else ""))
            if os.listxattr(top + rel, follow_symlinks=False):
                raise NotRecreatable("%s%s: extended attributes" % (place, rel))
            if stat.S_ISDIR(st.st_mode):
                pending.append(rel)
            if len(entries) > MAX_ENTRIES:
                raise NotRecreatable("%s: more than %d entries" % (place, MAX_ENTRIES))
    return entries


def _entry(rel: str, st: os.stat_result, target: str) -> list:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        kind = "d"
    elif stat.S_ISLNK(mode):
        kind = "l"
    elif stat.S_ISCHR(mode):
        kind = "c"
    elif stat.S_ISBLK(mode):
        kind = "b"
    elif stat.S_ISREG(mode) and st.st_size == 0:
        kind = "f"
    else:
        raise NotRecreatable("%s: a file with content, a socket or a pipe" % (rel,))
    if kind != "d" and st.st_nlink != 1:
        raise NotRecreatable("%s: hard links" % (rel,))
    rdev = st.st_rdev if kind in ("c", "b") else 0
    return [rel, kind, stat.S_IMODE(mode), st.st_uid, st.st_gid, rdev, target, st.st_mtime_ns]


def changed(pid: int, records: List[dict]) -> List[str]:
    """The places of the C{records} whose content is not what was listed
    (or can no longer be listed)."""
    found = []
    for record in records:
        covered = [record["mountpoint"].rstrip("/") + e[0] for e in record["entries"] if e[1] in ("m", "M")]
        try:
            now = listing(pid, record["mountpoint"], covered)
        except (NotRecreatable, OSError):
            now = None
        if now != record["entries"]:
            found.append(record["mountpoint"])
    return found


def write_record(images_dir: str, records: List[dict]) -> None:
    with open(os.path.join(images_dir, RECORD), "w") as f:
        json.dump(records, f)


def read_record(images_dir: str) -> List[dict]:
    """The dump's records (none: it named no tmpfs external)."""
    try:
        with open(os.path.join(images_dir, RECORD)) as f:
            records = json.load(f)
    except FileNotFoundError:
        return []
    if not isinstance(records, list):
        raise ValueError("%s: not a list" % (RECORD,))
    return records


def make_sources(images_dir: str, base: str) -> Dict[str, str]:
    """For each tmpfs the dump named external, a new tmpfs of the
    daemon's below C{base} with the listing made again in it: {key: its
    path}.  Nothing left mounted when one fails."""
    records = read_record(images_dir)
    for record in records:
        check(record)
    sources: Dict[str, str] = {}
    if not records:
        return sources
    os.makedirs(base, mode=0o700, exist_ok=True)
    try:
        for record in records:
            target = tempfile.mkdtemp(prefix="", dir=base)
            sources[str(record["key"])] = target
            recreate(record, target)
    except BaseException:
        release(sources.values())
        raise
    return sources


def check(record: dict) -> None:
    """A ValueError unless C{record} makes a tmpfs and nothing else: a
    key and a source name of ours, tmpfs options only, each entry's
    parent a directory made before it (no way out through a symbolic
    link or C{..}), known kinds."""
    if not isinstance(record, dict) or not KEY_PATTERN.match(str(record.get("key"))):
        raise ValueError("%s: a record without a key of ours" % (RECORD,))
    if not SOURCE_PATTERN.match(str(record.get("source") or "tmpfs")):
        raise ValueError("%s: a bad source name" % (RECORD,))
    for option in record.get("options") or []:
        if not isinstance(option, str) or "," in option or option.partition("=")[0] not in TMPFS_OPTIONS:
            raise ValueError("%s: option %r" % (RECORD, option))
    directories = {""}
    entries = record.get("entries") or []
    if not entries or entries[0][:2] != [".", "d"] or len(entries) > MAX_ENTRIES:
        raise ValueError("%s: no root entry first, or too many" % (RECORD,))
    for entry in entries[1:]:
        if not isinstance(entry, list) or len(entry) != 8:
            raise ValueError("%s: entry %r" % (RECORD, entry))
        rel, kind = str(entry[0]), entry[1]
        parent, _, name = rel.rpartition("/")
        if parent not in directories or name in ("", ".", "..") or "\0" in name:
            raise ValueError("%s: entry %r outside the made directories" % (RECORD, rel))
        if kind not in ("d", "l", "c", "b", "f", "m", "M"):
            raise ValueError("%s: entry kind %r" % (RECORD, kind))
        if kind == "d":
            directories.add(rel)
        if not all(isinstance(n, int) for n in entry[2:6] + entry[7:]) or not isinstance(entry[6], str):
            raise ValueError("%s: entry %r" % (RECORD, entry))


def recreate(record: dict, target: str) -> None:
    """A tmpfs at C{target} as the record's: its options and flags, its
    entries, read-only at last if its file system was."""
    flags = 0
    for name in record.get("flags") or []:
        flags |= MOUNT_FLAGS.get(name, 0)
    data = ",".join(record.get("options") or [])
    source = record.get("source") or "tmpfs"
    mount(source, target, "tmpfs", flags, data)
    directories = []
    for rel, kind, mode, uid, gid, rdev, link, mtime in record["entries"]:
        path = target if rel == "." else target + rel
        if kind in ("d", "m"):
            if rel != ".":
                os.mkdir(path)
        elif kind == "l":
            os.symlink(link, path)
        elif kind in ("c", "b"):
            os.mknod(path, mode | (stat.S_IFCHR if kind == "c" else stat.S_IFBLK), rdev)
        elif kind in ("f", "M"):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        else:
            raise ValueError("%s: unknown entry kind %r" % (RECORD, kind))
        if kind in ("m", "M"):
            # (Another mount's place: what is under it is never seen.)
            os.chmod(path, 0o755 if kind == "m" else 0o644)
            continue
        os.lchown(path, uid, gid)
        if kind != "l":
            os.chmod(path, mode)
        if kind == "d":
            directories.append((path, mtime))
        else:
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
    # The directories' times last, deepest first: their entries made.
    for path, mtime in reversed(directories):
        os.utime(path, ns=(mtime, mtime))
    if record.get("read_only"):
        mount(source, target, "tmpfs", flags | MS_REMOUNT | MS_RDONLY, data)


def release(paths: Iterable[str]) -> None:
    """The daemon's mounts at C{paths} detached (a restored container
    keeps its own) and their directories removed; quietly."""
    for path in paths:
        try:
            detach(path)
            os.rmdir(path)
        except OSError:
            pass


def sweep(base: str) -> None:
    """What a crash left below C{base}: every source unmounted, removed."""
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return
    release(os.path.join(base, name) for name in names)
    try:
        os.rmdir(base)
    except OSError:
        pass


def names_external(records: List[dict]) -> List[dict]:
    """The dump's C{ext_mnt} entries for C{records}."""
    return [{"key": r["mountpoint"], "val": r["key"]} for r in records]


def restore_mounts(sources: Optional[Dict[str, str]]) -> List[dict]:
    """The restore's C{ext_mnt} entries for L{make_sources}'s C{sources}."""
    return [{"key": k, "val": v} for k, v in sorted((sources or {}).items())]
