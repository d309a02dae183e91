"""
A container's root filesystem: overlayfs with the image's layers as lower
directories and the container's own upper directory, and the /etc files the
daemon writes for it (hostname, hosts, resolv.conf).  Blocking calls: run
them in a thread.
"""

import ctypes
import ctypes.util
import errno
import os
import stat
from typing import List, Optional, Sequence

from zope.interface import implementer

from ...tar.layer import INIT_LAYER
from ..networks import resolvconf
from .interfaces import IOverlayMounts

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MNT_DETACH = 2
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32

HOSTS = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""



def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, "%s: %s" % (what, os.strerror(code)))


def is_mounted(target: str) -> bool:
    target = os.path.realpath(target)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split()[4] == target:
                return True
    return False


def overlay_mounted(target: str) -> bool:
    """Whether an overlay is mounted at C{target}: an overlay has a device
    of its own, so a stat of it and of its parent says (where
    L{is_mounted} reads the whole of /proc/self/mountinfo, milliseconds
    on a host with hundreds of mounts)."""
    return os.path.ismount(target)


def mount_overlay(lower_dirs: Sequence[str], upper: str, work: str, target: str) -> None:
    """Mount the overlay; C{lower_dirs} lowest layer first (as images list them)."""
    for directory in (upper, work, target):
        os.makedirs(directory, exist_ok=True)
    if overlay_mounted(target):
        return
    lower = list(reversed(lower_dirs))
    if not lower:
        empty = os.path.join(os.path.dirname(upper), "empty")
        os.makedirs(empty, exist_ok=True)
        lower = [empty]
    options = "lowerdir=%s,upperdir=%s,workdir=%s" % (":".join(lower), upper, work)
    _check(
        _libc.mount(b"overlay", target.encode(), b"overlay", 0, options.encode()),
        "mounting the container's root filesystem",
    )


def mount_shm(target: str, size: int) -> None:
    """A container's shareable /dev/shm: a tmpfs as dockerd mounts it
    (nosuid, nodev, noexec; mode 1777)."""
    os.makedirs(target, mode=0o700, exist_ok=True)
    if is_mounted(target):
        return
    _check(
        _libc.mount(b"shm", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    ("mode=1777,size=%d" % size).encode()),
        "mounting the container's /dev/shm",
    )


def mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    """mount(2), an OSError naming C{target} when it fails."""
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()),
           "mounting %s on %s" % (fstype, target))


def detach(target: str) -> None:
    """The mount at C{target} detached (MNT_DETACH); nothing when none is."""
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, "unmounting %s: %s" % (target, os.strerror(code)))


def mount_empty_readonly(target: str) -> None:
    """An empty read-only tmpfs at C{target}, as runc masks a directory
    (C{mount("tmpfs", dir, "tmpfs", MS_RDONLY, "")}: its root 1777, owned
    by root); nothing when one is mounted there already."""
    os.makedirs(target, mode=0o700, exist_ok=True)
    if os.path.ismount(target):
        return
    _check(_libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_RDONLY, b""), "mounting a tmpfs on " + target)


def make_init_layer(directory: str) -> None:
    """dockerd's init layer (daemon/initlayer): the mount points and files
    every container has (/.dockerenv, /etc/mtab -> /proc/mounts, /dev/pts,
    ...), as a layer between the image's and the container's own, so that
    diff, commit and checkpoint exports leave them out.  Idempotent."""
    for rel, kind in INIT_LAYER.items():
        path = os.path.join(directory, rel)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if os.path.lexists(path):
            continue
        if kind == "dir":
            os.mkdir(path)
            os.chmod(path, 0o755)
        elif kind == "file":
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o755))
            os.chmod(path, 0o755)
        else:
            os.symlink(kind, path)


def unmount(target: str) -> None:
    """Unmount the overlay at C{target}; nothing when none is mounted."""
    if not overlay_mounted(target):
        return
    if _libc.umount2(target.encode(), 0) != 0:
        code = ctypes.get_errno()
        if code in (errno.EBUSY,):
            _check(_libc.umount2(target.encode(), MNT_DETACH), "unmounting " + target)
        elif code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, "unmounting %s: %s" % (target, os.strerror(code)))



@implementer(IOverlayMounts)
class OverlayMounts:
    """The host's overlay mounts, given to the container backend when it is
    made (its tests give it a fake).  Blocking: call in a thread."""

    def mount(self, lower_dirs: Sequence[str], upper: str, work: str, target: str) -> None:
        mount_overlay(lower_dirs, upper, work, target)

    def unmount(self, target: str) -> None:
        unmount(target)

    def mount_shm(self, target: str, size: int) -> None:
        mount_shm(target, size)

    def mounted_under(self, prefix: str) -> List[str]:
        """The mount points below C{prefix} (what a crash may have left)."""
        return mounted_under(prefix)


def mounted_under(prefix: str) -> List[str]:
    """The mount points below C{prefix}, from /proc/self/mountinfo."""
    prefix = os.path.realpath(prefix).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4].startswith(prefix):
                found.append(fields[4].replace("\\040", " "))
    return found

def _write(path: str, text: str) -> None:
    """C{text} at C{path} (mode 0644), through a renamed file; nothing
    when it is there already (a restart's, or a restore's after its
    preparation: three new files each is what a start spent on them)."""
    try:
        with open(path) as f:
            if stat.S_IMODE(os.fstat(f.fileno()).st_mode) == 0o644 and f.read() == text:
                return
    except (OSError, UnicodeDecodeError):
        pass
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        # (The disk full: no half file left behind.)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_etc_files(
    directory: str,
    hostname: str,
    domainname: str,
    network_mode: str,
    extra_hosts: Optional[List[str]],
    dns: Optional[List[str]],
    dns_search: Optional[List[str]],
    dns_options: Optional[List[str]],
    host_resolv_conf: str = "/etc/resolv.conf",
    embedded_dns: bool = False,
) -> None:
    """hostname, hosts and resolv.conf in the container's directory;
    C{embedded_dns}: the container resolves through the embedded server
    (a user network's)."""
    _write(os.path.join(directory, "hostname"), hostname + "\n")
    if network_mode == "host":
        try:
            with open("/etc/hosts") as f:
                hosts = f.read()
        except OSError:
            hosts = HOSTS
    else:
        hosts = HOSTS
        for entry in extra_hosts or []:
            name, _, address = entry.partition(":")
            hosts += "%s\t%s\n" % (address, name)
    _write(os.path.join(directory, "hosts"), hosts)
    _write(os.path.join(directory, "resolv.conf"),
           resolv_conf(network_mode, dns, dns_search, dns_options, host_resolv_conf, embedded_dns))


def read_host_file(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def resolv_conf(network_mode, dns, dns_search, dns_options, host_path="/etc/resolv.conf",
                embedded_dns: bool = False) -> str:
    """The container's resolv.conf as dockerd 20.10 writes it."""
    host = read_host_file(host_path)
    if network_mode == "host" and not (dns or dns_search or dns_options):
        return host
    text = resolvconf.container_file(host, dns or (), dns_search or (), dns_options or ())
    return resolvconf.embedded_file(text) if embedded_dns else text


def rewrite_resolv_conf(path: str, text: str) -> None:
    """A running container's resolv.conf changed in place (it is bind
    mounted: a renamed file would not be seen)."""
    with open(path, "r+") as f:
        f.truncate(0)
        f.write(text)


def directory_size(path: str) -> int:
    """Bytes used by the files below C{path} (hard links once)."""
    total, seen = 0, set()
    for root, dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total
